"""Looking inside a trained ViT: attention maps, attention rollout, mean attention distance
and the similarity of the learned position embeddings (the ViT paper's Figs. 6 and 7).

Shapes: L blocks, B images, H heads, T = 1 + N tokens ([CLS] first, then the N = gh * gw
patches in row-major order: patch (r, c) is token 1 + r * gw + c), D embedding dims.
Attention maps are row-stochastic: A[q, k] is how much query token q reads from key
token k, and every row sums to 1 (a softmax over the keys).

Everything here works on host NumPy arrays (CuPy inputs are copied over) and computes in
float64; nothing changes the model.
"""
import math

import numpy as np

from .backend import to_numpy


# --- attention maps --------------------------------------------------------------------
def attention_maps(model, x, batch_size=64, return_logits=False):
    """Every block's attention for a batch: (L, B, H, T, T) NumPy, in the model's dtype.

    The model runs in eval mode (no dropout, so each map is the softmax itself and its rows
    sum to 1) and is put back in the mode it was in. `batch_size` images at a time bound
    the memory of one pass; the result still holds L * B * H * T^2 numbers (CIFAR-10, CPU
    preset: 6 * 4 * 65^2 * 4 bytes = 0.4 MB per image).
    With return_logits=True: (logits (B, num_classes), maps).
    """
    was_training = model.training
    model.eval()
    maps, logits = [], []
    try:
        for i in range(0, len(x), batch_size):
            out, attn = model(x[i:i + batch_size], return_attn=True)   # L x (b, H, T, T)
            maps.append(np.stack([to_numpy(a) for a in attn]))      # (L, b, H, T, T)
            logits.append(to_numpy(out))
    finally:
        model.train(was_training)
    maps = np.concatenate(maps, axis=1)                              # (L, B, H, T, T)
    return (np.concatenate(logits), maps) if return_logits else maps


def _stack(attn):
    """A list of L (B, H, T, T) maps, or one (L, B, H, T, T) array -> float64 array."""
    a = np.stack([to_numpy(m) for m in attn]) if isinstance(attn, (list, tuple)) else to_numpy(attn)
    if a.ndim != 5 or a.shape[-1] != a.shape[-2]:
        raise ValueError(f"attention must be (L, B, H, T, T) or a list of (B, H, T, T), got {a.shape}")
    return a.astype(np.float64)


def _grid_of(num_tokens, grid, num_prefix_tokens=1):
    """(gh, gw) of the patch grid; None means square."""
    n = num_tokens - num_prefix_tokens
    if grid is None:
        side = math.isqrt(max(n, 0))
        if side * side != n:
            raise ValueError(f"{n} patch tokens are not a square grid: pass grid=(rows, cols)")
        return side, side
    gh, gw = (grid, grid) if np.ndim(grid) == 0 else tuple(grid)
    if gh * gw != n:
        raise ValueError(f"grid {gh}x{gw} has {gh * gw} patches, the maps have {n}")
    return int(gh), int(gw)


def cls_attention_map(attn, grid=None):
    """What [CLS] reads from each patch, on the patch grid: (..., T, T) -> (..., gh, gw).

    Row 0 (the [CLS] query), columns 1.. (the patch keys), reshaped row-major. Works on
    per-head maps, e.g. maps[l, b, h] from `attention_maps`, and on a rollout (B, T, T).
    The [CLS] -> [CLS] weight is left out, so a map need not sum to 1.
    """
    a = to_numpy(attn)
    gh, gw = _grid_of(a.shape[-1], grid)
    return a[..., 0, 1:].reshape(*a.shape[:-2], gh, gw)


# --- attention rollout -----------------------------------------------------------------
HEAD_FUSIONS = ("mean", "max", "min")


def attention_rollout(attn, head_fusion="mean", add_identity=True):
    """Attention rollout (Abnar & Zuidema, 2020, "Quantifying Attention Flow in
    Transformers"): how much each output token depends on each input token, through all
    layers, assuming attention alone mixes tokens. attn: (L, B, H, T, T) -> R: (B, T, T).

        A_l  = mean_h attn_l                      fuse the heads       (B, T, T)
        A'_l = (A_l + I) / rowsum(A_l + I)        the residual path: each token also
                                                  keeps itself; renormalise each ROW
        R    = A'_L A'_{L-1} ... A'_1             rows of R sum to 1

    R[q, k]: the share of input token k in output token q; R[0, 1:] is the [CLS] map
    (`cls_attention_map(R)`). A product of row-stochastic matrices is row-stochastic, but
    only if each A'_l is normalised along its rows (the keys, axis -1): dividing by the
    column sums instead (a bug in a known public implementation) goes unnoticed with mean
    fusion of softmax rows (every row of A + I sums to 2) and breaks with max/min fusion.

    head_fusion: 'mean' (the paper), 'max' or 'min' over the heads.
    add_identity: False skips the +I (the raw attention product, no residual).
    """
    a = _stack(attn)                                     # (L, B, H, T, T)
    if head_fusion not in HEAD_FUSIONS:
        raise ValueError(f"head_fusion must be one of {HEAD_FUSIONS}, got {head_fusion!r}")
    fused = getattr(a, head_fusion)(axis=2)              # (L, B, T, T)
    T = a.shape[-1]
    if add_identity:
        fused = fused + np.eye(T)                        # broadcast over (L, B)
    fused = fused / fused.sum(axis=-1, keepdims=True)    # each row (query) sums to 1
    R = np.broadcast_to(np.eye(T), fused.shape[1:]).copy()   # (B, T, T), no layer yet
    for A in fused:                                      # layer 1 first:
        R = A @ R                                        # R_l = A'_l R_{l-1}
    return R


# --- mean attention distance -----------------------------------------------------------
def patch_distances(grid, patch_size):
    """(N, N) Euclidean distances in pixels between patch centres, row-major patches:
    d[(r, c), (r', c')] = patch_size * sqrt((r - r')^2 + (c - c')^2)."""
    gh, gw = (grid, grid) if np.ndim(grid) == 0 else tuple(grid)
    r, c = np.divmod(np.arange(gh * gw), gw)             # (N,) row and column of each patch
    return patch_size * np.hypot(r[:, None] - r[None, :], c[:, None] - c[None, :])


def mean_attention_distance(attn, patch_size, grid=None, renormalize=True):
    """The ViT paper's Fig. 7 (right): per layer and head, the image distance (in pixels)
    across which attention gathers information. attn: (L, B, H, T, T) -> (L, H).

    For each query patch q (a patch-token row; the [CLS] query is left out: it has no
    place in the image), the attention-weighted mean distance to the key patches,

        d_q = sum_k a[q, k] dist(q, k) / sum_k a[q, k]        k over the N patch keys

    then the mean over the N queries and the B images. dist is between patch centres
    (`patch_distances`). The [CLS] key has no position either, so its weight a[q, 0] is
    left out and the patch weights are renormalised to sum to 1 (renormalize=True): a
    weighted mean over patches. renormalize=False divides by nothing, i.e. counts the
    attention to [CLS] as distance 0 (as some public implementations do); it is the same
    when a head ignores [CLS], and smaller otherwise.
    """
    a = _stack(attn)                                     # (L, B, H, T, T)
    gh, gw = _grid_of(a.shape[-1], grid)
    patches = a[..., 1:, 1:]                             # (L, B, H, N, N): patch q -> patch k
    dist = patch_distances((gh, gw), patch_size)         # (N, N)
    d = (patches * dist).sum(axis=-1)                    # (L, B, H, N): sum_k a[q, k] dist(q, k)
    if renormalize:
        d = d / patches.sum(axis=-1)                     # / sum_k a[q, k] over patch keys
    return d.mean(axis=(1, 3))                           # mean over images and queries: (L, H)


# --- position embeddings ---------------------------------------------------------------
def pos_embed_similarity(pos_embed, grid=None, num_prefix_tokens=1):
    """Cosine similarity of each patch's learned position embedding with every other's,
    on the grid (the ViT paper's Fig. 7, centre): (gh, gw, gh, gw).

        S[r, c, r', c'] = <E_(r,c), E_(r',c')> / (|E_(r,c)| |E_(r',c')|)

    S[r, c] is the small (gh, gw) map of patch (r, c): a model that learned the 2-D layout
    shows a bright spot at (r, c) fading with distance, and row/column stripes.
    pos_embed: (1, num_prefix_tokens + gh*gw, D) (the [CLS] position is left out), or a
    ViT (its pos_embed and grid_size). grid None: the ViT's, else square.
    """
    if hasattr(pos_embed, "pos_embed"):                  # a model
        grid = pos_embed.grid_size if grid is None else grid
        pos_embed = pos_embed.pos_embed.data
    e = to_numpy(pos_embed).astype(np.float64)
    if e.ndim == 3:
        e = e[0]                                         # (1, T, D) -> (T, D)
    gh, gw = _grid_of(e.shape[0], grid, num_prefix_tokens)
    e = e[num_prefix_tokens:]                            # (N, D): the patch positions
    e = e / np.linalg.norm(e, axis=-1, keepdims=True)    # unit rows
    return (e @ e.T).reshape(gh, gw, gh, gw)             # (N, N) -> (gh, gw, gh, gw)
