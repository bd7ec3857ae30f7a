"""Position embeddings at another resolution: 2-D interpolation of the patch grid.

A ViT trained on 32x32 images with 4x4 patches learned an 8x8 grid of position
embeddings, plus one for [CLS]. The same weights at 48x48 need a 12x12 grid: the patch
embedding, the blocks and the head do not depend on the number of patches, only pos_embed
does. As the ViT paper (Sec. 3.2) and timm do it, the grid is treated as a (gh, gw) image
with D channels and resized by 2-D interpolation; the [CLS] position (and any other
prefix token) is kept as it is, since it has no place on the grid.

    pos_embed (1, 1 + gh*gw, D) -> [cls (1, 1, D)] + grid (gh, gw, D)
                                -> grid' (nh, nw, D) = M_h  grid  M_w^T    (per channel)
                                -> (1, 1 + nh*nw, D)

Interpolation is linear in the input, and PyTorch's bilinear and bicubic kernels are
products of a 1-D kernel along each axis, so a resize is one (n_out, n_in) matrix per axis
(`interpolation_matrix`): row i holds the weights output i gives to the input positions.
The matrices below reproduce torch.nn.functional.interpolate(..., align_corners=False):

    source position of output i:  s = (i + 0.5) * n_in / n_out - 0.5     (pixel centres)
    bilinear:  the 2 inputs around s, weights 1 - t and t (t = s - floor(s)); s < 0 clamps to 0
    bicubic:   the 4 inputs floor(s) - 1 .. floor(s) + 2, Keys' cubic kernel with A = -0.75;
               indices past a border are clamped to it (the edge value is repeated)

With antialias=True (what timm's `resample_abs_pos_embed` passes) PyTorch uses another
scheme: when shrinking, the kernel is stretched by n_in / n_out so that it averages over
every input it covers (no aliasing); taps outside the grid are dropped and the weights
renormalised instead of clamped; and its bicubic kernel has A = -0.5 (as PIL's). It differs
from antialias=False when downsampling, and near the borders even when upsampling.
"""
import math

import numpy as np

from .backend import to_numpy

MODES = ("bicubic", "bilinear")


def _cubic(x, A):
    """Keys' cubic convolution kernel at distance |x|: 1 at 0, 0 at the other integers."""
    x = abs(x)
    if x <= 1:
        return ((A + 2) * x - (A + 3)) * x * x + 1
    if x < 2:
        return ((A * x - 5 * A) * x + 8 * A) * x - 4 * A
    return 0.0


def _triangle(x):
    """The bilinear (hat) kernel."""
    return max(0.0, 1.0 - abs(x))


def interpolation_matrix(n_in, n_out, mode="bicubic", antialias=False):
    """(n_out, n_in) matrix M with  y = M @ x  the 1-D resize of x (n_in,) to (n_out,),
    as torch.nn.functional.interpolate(mode, align_corners=False, antialias) does it."""
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    M = np.zeros((n_out, n_in))
    scale = n_in / n_out                     # input pixels per output pixel
    if not antialias:
        for i in range(n_out):
            s = (i + 0.5) * scale - 0.5      # output pixel centre, in input coordinates
            if mode == "bilinear":
                s = max(s, 0.0)              # PyTorch clamps the linear source index at 0
                i0 = int(s)
                t = s - i0
                M[i, i0] += 1 - t
                M[i, min(i0 + 1, n_in - 1)] += t       # past the last pixel: the last pixel
            else:
                i0 = math.floor(s)
                t = s - i0
                for k in (-1, 0, 1, 2):      # the 4 taps around s, clamped to the grid
                    M[i, min(max(i0 + k, 0), n_in - 1)] += _cubic(k - t, -0.75)
        return M
    # antialias: a kernel stretched by `scale` when shrinking, taps inside the grid only
    kernel = _triangle if mode == "bilinear" else (lambda x: _cubic(x, -0.5))
    half = 1.0 if mode == "bilinear" else 2.0          # the kernel's half-width (support)
    stretch = max(scale, 1.0)
    support = half * stretch
    for i in range(n_out):
        centre = (i + 0.5) * scale           # in input coordinates, pixel j spans [j, j+1)
        lo = max(int(centre - support + 0.5), 0)
        hi = min(int(centre + support + 0.5), n_in)
        w = np.array([kernel((j + 0.5 - centre) / stretch) for j in range(lo, hi)])
        M[i, lo:hi] = w / w.sum()            # renormalised: the dropped taps' weight is shared
    return M


def interpolate_grid(grid, size, mode="bicubic", antialias=False):
    """grid (h, w, D) -> (nh, nw, D): each of the D channels resized as a 2-D image,
    out[i, j] = sum_{a, b} M_h[i, a] M_w[j, b] grid[a, b] (float64 inside)."""
    h, w, _ = grid.shape
    nh, nw = size
    Mh = interpolation_matrix(h, nh, mode, antialias)      # (nh, h)
    Mw = interpolation_matrix(w, nw, mode, antialias)      # (nw, w)
    return np.einsum("ia,jb,abd->ijd", Mh, Mw, grid.astype(np.float64))


def _grid(v):
    return (int(v), int(v)) if np.ndim(v) == 0 else tuple(int(n) for n in v)


def resize_pos_embed(pos_embed, new_grid, old_grid=None, mode="bicubic", num_prefix_tokens=1,
                     antialias=False):
    """pos_embed (1, num_prefix_tokens + gh*gw, D) -> (1, num_prefix_tokens + nh*nw, D).

    new_grid, old_grid: (rows, cols) of patches, or one int for a square grid; old_grid None
    means square (as in timm), and a count that is no square is an error. The patch
    positions are in row-major order (minivit's and timm's patch order). The prefix tokens
    ([CLS]) come back unchanged; the result has pos_embed's dtype, as a NumPy array.
    """
    pos = np.asarray(to_numpy(pos_embed))
    if pos.ndim != 3 or pos.shape[0] != 1:
        raise ValueError(f"pos_embed must have shape (1, tokens, D), got {pos.shape}")
    n_grid = pos.shape[1] - num_prefix_tokens
    if old_grid is None:
        side = math.isqrt(max(n_grid, 0))
        if side * side != n_grid:
            raise ValueError(f"pos_embed has {n_grid} patch positions, not a square grid: "
                             "pass old_grid=(rows, cols)")
        old_grid = (side, side)
    (gh, gw), (nh, nw) = _grid(old_grid), _grid(new_grid)
    if gh * gw != n_grid:
        raise ValueError(f"old_grid {gh}x{gw} has {gh * gw} positions, pos_embed has {n_grid} "
                         f"(after {num_prefix_tokens} prefix token(s))")
    D = pos.shape[2]
    prefix = pos[:, :num_prefix_tokens]                    # (1, prefix, D), kept
    grid = pos[0, num_prefix_tokens:].reshape(gh, gw, D)   # row-major: token r*gw + c at (r, c)
    new = interpolate_grid(grid, (nh, nw), mode, antialias).reshape(1, nh * nw, D)
    return np.concatenate([prefix, new.astype(pos.dtype)], axis=1)


def adapt_state_dict(state, model, old_grid=None, mode="bicubic", antialias=False):
    """A copy of `state` that `model` (a minivit.ViT) loads: pos_embed resized to the
    model's patch grid (model.grid_size), everything else as it is. old_grid: the grid the
    state was trained on (None: square). See `resize_model` for the one-call path."""
    state = dict(state)
    pos = state["pos_embed"]
    if tuple(np.shape(pos)) != (1, model.num_patches + 1, model.embed_dim) or old_grid is not None:
        state["pos_embed"] = resize_pos_embed(pos, model.grid_size, old_grid, mode,
                                              num_prefix_tokens=1, antialias=antialias)
    return state


def resize_model(model, img_size, mode="bicubic", antialias=False):
    """A new ViT with `model`'s configuration (and dtype, device, kernels), built for
    `img_size` images, holding model's weights with the position grid interpolated.
    E.g. resize_model(vit32, 48): 8x8 patch grid -> 12x12, for fine-tuning at 48 px."""
    from .model import ViT
    new = ViT(**{**model.config, "img_size": img_size, "dtype": model.dtype}, device=model._device(),
              kernels=model.kernels)
    new.load_state_dict(adapt_state_dict(model.state_dict(), new, model.grid_size, mode, antialias))
    return new.train(model.training)


def resize_images(x, size, mode="bicubic", antialias=False):
    """Images (B, C, H, W) -> (B, C, nh, nw), each channel resized by the same separable
    matrices as the position grid: torch.nn.functional.interpolate(x, size, mode,
    align_corners=False, antialias). size: an int (square) or (nh, nw). Float input gives
    float output of its dtype (float64 inside); uint8 input is rounded and clipped back to
    uint8 (bicubic overshoots at edges), as torchvision does for uint8 images."""
    a = to_numpy(x)
    if a.ndim != 4:
        raise ValueError(f"images must have shape (B, C, H, W), got {a.shape}")
    (nh, nw), (h, w) = _grid(size), a.shape[2:]
    Mh = interpolation_matrix(h, nh, mode, antialias)      # (nh, h)
    Mw = interpolation_matrix(w, nw, mode, antialias)      # (nw, w)
    out = np.einsum("ia,jb,ncab->ncij", Mh, Mw, a.astype(np.float64), optimize=True)
    if a.dtype == np.uint8:
        return np.clip(np.rint(out), 0, 255).astype(np.uint8)
    return out.astype(a.dtype if a.dtype.kind == "f" else np.float64)
