"""resize_pos_embed: the patch-position grid interpolated in 2-D, [CLS] kept.

Against torch.nn.functional.interpolate (same mode, align_corners=False, antialias off and
on), float64: max |ours - torch| / max |torch| < 1e-12 (only the order of the sums differs).
"""
import numpy as np
import pytest

import minivit
from minivit.backend import to_numpy
from minivit.pos_embed import (adapt_state_dict, interpolation_matrix, resize_images, resize_model,
                               resize_pos_embed)

TOL = 1e-12

# (old grid, new grid): up, down, non-square, up in one axis and down in the other, 1 pixel
RESIZES = [((4, 4), (7, 7)), ((8, 8), (5, 5)), ((3, 5), (6, 4)), ((6, 4), (3, 9)),
           ((8, 8), (12, 12)), ((12, 12), (8, 8)), ((1, 3), (4, 1)), ((5, 5), (5, 5))]


def _pos(grid, D=6, prefix=1, seed=0):
    return np.random.default_rng(seed).standard_normal((1, prefix + grid[0] * grid[1], D))


@pytest.mark.parametrize("antialias", [False, True], ids=["plain", "antialias"])
@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
@pytest.mark.parametrize("old,new", RESIZES, ids=[f"{a[0]}x{a[1]}-{b[0]}x{b[1]}" for a, b in RESIZES])
def test_matches_torch_interpolate(old, new, mode, antialias):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    pos = _pos(old)
    ours = resize_pos_embed(pos, new, old, mode=mode, antialias=antialias)
    grid = torch.from_numpy(pos[:, 1:]).reshape(1, *old, -1).permute(0, 3, 1, 2)   # (1, D, gh, gw)
    want = F.interpolate(grid, size=new, mode=mode, align_corners=False, antialias=antialias)
    want = want.permute(0, 2, 3, 1).reshape(1, new[0] * new[1], -1).numpy()
    assert ours.shape == (1, 1 + new[0] * new[1], pos.shape[2])
    assert np.array_equal(ours[:, :1], pos[:, :1])                # [CLS] position kept
    err = np.abs(ours[:, 1:] - want).max() / np.abs(want).max()
    assert err < TOL, err


def test_interpolation_rows_sum_to_one_and_same_size_is_identity():
    """Every scheme reproduces a constant (rows sum to 1); a resize to the same size
    changes nothing, so adapting a state dict to its own model is exact."""
    for mode in ("bicubic", "bilinear"):
        for aa in (False, True):
            for n_in, n_out in ((4, 9), (9, 4), (5, 5), (1, 3)):
                M = interpolation_matrix(n_in, n_out, mode, aa)
                np.testing.assert_allclose(M.sum(1), 1.0, atol=1e-14)
            assert np.array_equal(interpolation_matrix(6, 6, mode, aa), np.eye(6))


def test_bicubic_uses_a_minus_075_and_clamps_at_the_border():
    """Hand-computed: doubling 4 pixels, output 0 sits at s = -0.25: taps -2..1 with t = 0.75,
    the two off-grid taps clamped onto pixel 0."""
    A = -0.75

    def k(x):
        x = abs(x)
        return ((A + 2) * x - (A + 3)) * x * x + 1 if x <= 1 else ((A * x - 5 * A) * x + 8 * A) * x - 4 * A
    w = [k(1.75), k(0.75), k(0.25), k(1.25)]             # pixels -2, -1, 0, 1
    row = interpolation_matrix(4, 8, "bicubic")[0]
    np.testing.assert_allclose(row, [w[0] + w[1] + w[2], w[3], 0, 0], atol=1e-15)


def test_keeps_prefix_tokens_and_dtype():
    pos = _pos((4, 4), prefix=2).astype(np.float32)
    out = resize_pos_embed(pos, 6, num_prefix_tokens=2)
    assert out.shape == (1, 2 + 36, 6) and out.dtype == np.float32
    assert np.array_equal(out[:, :2], pos[:, :2])
    out0 = resize_pos_embed(pos[:, 2:], (2, 3), (4, 4), num_prefix_tokens=0)
    assert out0.shape == (1, 6, 6)


def test_bad_grids_are_clear_errors():
    with pytest.raises(ValueError, match="not a square grid: pass old_grid"):
        resize_pos_embed(_pos((3, 4)), (6, 8))
    with pytest.raises(ValueError, match="old_grid 3x3 has 9 positions, pos_embed has 12"):
        resize_pos_embed(_pos((3, 4)), (6, 8), old_grid=3)
    with pytest.raises(ValueError, match="mode must be one of"):
        resize_pos_embed(_pos((2, 2)), 4, mode="nearest")
    with pytest.raises(ValueError, match=r"shape \(1, tokens, D\)"):
        resize_pos_embed(np.zeros((5, 4)), 4)


def test_vit_for_48px_loads_the_resized_state_dict_and_runs(device, xp):
    """32 px, patch 4 (8x8 grid) -> 48 px (12x12 grid): the raw state dict does not fit,
    the adapted one does, and everything but pos_embed's patch positions is unchanged."""
    kw = dict(patch_size=4, embed_dim=16, depth=2, num_heads=2, global_pool="avg", fc_norm=True)
    small = minivit.ViT(img_size=32, **kw, seed=1).eval()
    big = minivit.ViT(img_size=48, **kw, seed=2).eval()
    sd = small.state_dict()
    with pytest.raises(ValueError, match=r"pos_embed: expected \(1, 145, 16\), got \(1, 65, 16\)"):
        big.load_state_dict(sd)
    big.load_state_dict(adapt_state_dict(sd, big))
    got = big.state_dict()
    assert all(np.array_equal(got[k], sd[k]) for k in sd if k != "pos_embed")
    assert np.array_equal(got["pos_embed"][:, 0], sd["pos_embed"][:, 0])
    np.testing.assert_allclose(got["pos_embed"], resize_pos_embed(sd["pos_embed"], 12), rtol=1e-6)
    x = xp.asarray(np.random.default_rng(0).standard_normal((2, 3, 48, 48)), dtype=np.float32)
    logits = big(x)
    assert logits.shape == (2, 10) and bool(xp.isfinite(logits).all())

    # the one-call path: same config, weights, dtype and mode; non-square sizes too
    again = resize_model(small, 48)
    assert again.config == {**small.config, "img_size": (48, 48)} and not again.training
    assert np.array_equal(to_numpy(again(x)), to_numpy(logits))
    wide = resize_model(small, (32, 48))
    assert wide.grid_size == (8, 12) and wide.state_dict()["pos_embed"].shape == (1, 97, 16)
    back = resize_model(wide, 32)       # 8x12 -> 8x8: the old grid comes from the model
    assert back.grid_size == (8, 8)


IMAGE_RESIZES = [((32, 32), (48, 48)), ((32, 32), (20, 20)), ((5, 7), (9, 4))]


@pytest.mark.parametrize("mode", ["bicubic", "bilinear"])
@pytest.mark.parametrize("old,new", IMAGE_RESIZES, ids=[f"{a[0]}x{a[1]}-{b[0]}x{b[1]}" for a, b in IMAGE_RESIZES])
def test_resize_images_matches_torch_interpolate(old, new, mode):
    torch = pytest.importorskip("torch")
    import torch.nn.functional as F
    x = np.random.default_rng(1).standard_normal((2, 3, *old))
    ours = resize_images(x, new, mode=mode)
    want = F.interpolate(torch.from_numpy(x), size=new, mode=mode, align_corners=False).numpy()
    assert ours.shape == (2, 3, *new) and ours.dtype == np.float64
    assert np.abs(ours - want).max() / np.abs(want).max() < TOL
    assert resize_images(x.astype(np.float32), new, mode).dtype == np.float32


def test_resize_images_uint8_rounds_and_clips():
    x = np.zeros((1, 1, 8, 8), np.uint8)
    x[..., 4:] = 255                          # a hard edge: bicubic overshoots both ways
    up = resize_images(x, 12)
    f = resize_images(x.astype(np.float64), 12)
    assert up.dtype == np.uint8 and f.min() < 0 and f.max() > 255
    assert np.array_equal(up, np.clip(np.rint(f), 0, 255).astype(np.uint8))
    assert np.array_equal(resize_images(x, 8), x)      # same size: identity
