"""The input pipeline: normalisation, crop/flip, Mixup/CutMix and the Loader."""
import tracemalloc

import numpy as np
import pytest

from minivit.data.pipeline import (
    CIFAR10_MEAN, CIFAR10_STD, Augment, Loader, mixup_cutmix, normalize, random_crop,
    random_hflip,
)


def _images(n, seed=0, size=32):
    return np.random.default_rng(seed).integers(0, 256, (n, 3, size, size), dtype=np.uint8)


# --- normalize --------------------------------------------------------------------------
def test_normalize_matches_float64_reference():
    x = _images(16)
    out = normalize(x, CIFAR10_MEAN, CIFAR10_STD)
    mean = np.array(CIFAR10_MEAN).reshape(1, 3, 1, 1)
    std = np.array(CIFAR10_STD).reshape(1, 3, 1, 1)
    ref = (x / 255.0 - mean) / std
    assert out.dtype == np.float32 and out.shape == x.shape
    assert np.abs(out - ref).max() < 1e-6


def test_normalize_makes_no_float64_copy():
    x = _images(64)
    tracemalloc.start()
    try:
        out = normalize(x)
        _, peak = tracemalloc.get_traced_memory()
    finally:
        tracemalloc.stop()
    assert peak < out.nbytes * 1.25  # a float64 temporary alone would be 2x


# --- crop and flip ----------------------------------------------------------------------
def test_crop_pad_zero_is_identity():
    x = _images(4)
    np.testing.assert_array_equal(random_crop(x, 0, np.random.default_rng(0)), x)


def test_crop_is_a_window_of_the_zero_padded_image():
    x, pad = _images(8, size=12), 3
    out = random_crop(x, pad, np.random.default_rng(1))
    assert out.shape == x.shape and out.dtype == np.uint8 and out.flags.c_contiguous
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    for b in range(len(x)):
        assert any(np.array_equal(out[b], padded[b, :, dy:dy + 12, dx:dx + 12])
                   for dy in range(2 * pad + 1) for dx in range(2 * pad + 1))


def test_crop_is_random_per_image_and_reproducible():
    x = np.repeat(_images(1), 64, axis=0)  # 64 copies of one image
    a = random_crop(x, 4, np.random.default_rng(7))
    b = random_crop(x, 4, np.random.default_rng(7))
    c = random_crop(x, 4, np.random.default_rng(8))
    np.testing.assert_array_equal(a, b)
    assert not np.array_equal(a, c)
    assert len({img.tobytes() for img in a}) > 20  # per-image offsets, not one per batch


def test_flip():
    x = _images(64)
    once = random_hflip(x, np.random.default_rng(0), p=1.0)
    np.testing.assert_array_equal(once, x[..., ::-1])
    np.testing.assert_array_equal(random_hflip(once, np.random.default_rng(1), p=1.0), x)
    half = random_hflip(x, np.random.default_rng(2))
    flipped = np.array([np.array_equal(h, m) for h, m in zip(half, x[..., ::-1])])
    kept = np.array([np.array_equal(h, o) for h, o in zip(half, x)])
    assert np.all(flipped ^ kept) and 10 < flipped.sum() < 54
    np.testing.assert_array_equal(half, random_hflip(x, np.random.default_rng(2)))


# --- mixup / cutmix ---------------------------------------------------------------------
def _mix_inputs(b=8):
    x = np.broadcast_to(np.arange(b, dtype=np.float32)[:, None, None, None], (b, 3, 32, 32))
    y = np.arange(b) % 10  # y[i] != y[b-1-i] for every i
    return x, y


def _check_targets(t, b):
    assert t.shape == (b, 10) and t.dtype == np.float32
    np.testing.assert_allclose(t.sum(axis=1), 1.0, rtol=1e-6)


def test_mixup_blends_images_and_targets_alike():
    x, y = _mix_inputs()
    out, t = mixup_cutmix(x, y, 10, np.random.default_rng(0), mixup_alpha=0.8, cutmix_alpha=0)
    _check_targets(t, 8)
    lam = t[0, y[0]]
    assert 0 < lam < 1
    np.testing.assert_allclose(out, lam * x + (1 - lam) * x[::-1], rtol=1e-5)
    assert out.dtype == np.float32


def test_cutmix_pastes_a_box_whose_area_matches_the_targets():
    x, y = _mix_inputs()
    for seed in range(5):
        out, t = mixup_cutmix(x, y, 10, np.random.default_rng(seed), mixup_alpha=0,
                              cutmix_alpha=1.0)
        _check_targets(t, 8)
        from_other = out[0] == x[-1, 0, 0, 0]
        assert np.all(from_other | (out[0] == x[0, 0, 0, 0]))
        np.testing.assert_allclose(from_other.mean(), 1 - t[0, y[0]], atol=1e-6)


def test_mix_switch_prob_and_smoothing():
    x, y = _mix_inputs()
    out, t = mixup_cutmix(x, y, 10, np.random.default_rng(0), prob=0.0, label_smoothing=0.1)
    np.testing.assert_array_equal(out, x)
    _check_targets(t, 8)
    np.testing.assert_allclose(t[np.arange(8), y], 0.91, rtol=1e-6)
    assert np.isclose(t.min(), 0.01)
    for seed in range(4):  # both alphas on: reproducible, targets valid either way
        a = mixup_cutmix(x, y, 10, np.random.default_rng(seed))
        b = mixup_cutmix(x, y, 10, np.random.default_rng(seed))
        _check_targets(a[1], 8)
        np.testing.assert_array_equal(a[0], b[0])
        np.testing.assert_array_equal(a[1], b[1])


# --- Loader -----------------------------------------------------------------------------
FULL = Augment(crop_pad=4, hflip=True, mixup_alpha=0.8, cutmix_alpha=1.0, label_smoothing=0.1)


def _epoch(loader):
    return [(x.copy(), y.copy()) for x, y in loader]


@pytest.mark.parametrize("prefetch", [True, False])
def test_loader_covers_every_example_once(prefetch):
    n = 103
    x, y = _images(n), np.arange(n)  # labels double as example ids here
    loader = Loader(x, y, batch_size=10, shuffle=True, seed=3, prefetch=prefetch)
    assert len(loader) == 11
    batches = _epoch(loader)
    assert len(batches) == 11 and [len(b[1]) for b in batches] == [10] * 10 + [3]
    seen = np.concatenate([b[1] for b in batches])
    assert sorted(seen.tolist()) == list(range(n)) and not np.array_equal(seen, np.arange(n))
    xb, yb = batches[0]
    assert xb.dtype == np.float32 and xb.flags.c_contiguous and yb.dtype == np.int64
    np.testing.assert_array_equal(xb, normalize(x[yb]))  # no augmentation by default


def test_loader_drop_last_and_sequential():
    x, y = _images(25), np.arange(25)
    loader = Loader(x, y, batch_size=10, drop_last=True)
    assert len(loader) == 2
    seen = np.concatenate([yb for _, yb in loader])
    np.testing.assert_array_equal(seen, np.arange(20))


def test_loader_is_deterministic_per_seed_and_epoch():
    x, y = _images(50), np.arange(50) % 10
    a = Loader(x, y, 16, shuffle=True, seed=1, augment=FULL, prefetch=True)
    b = Loader(x, y, 16, shuffle=True, seed=1, augment=FULL, prefetch=False)
    a.set_epoch(3)
    b.set_epoch(3)
    ea, eb = _epoch(a), _epoch(b)
    for (xa, ya), (xb, yb) in zip(ea, eb, strict=True):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert ea[0][0].shape == (16, 3, 32, 32) and ea[0][1].shape == (16, 10)
    assert ea[0][1].dtype == np.float32
    # The epoch advanced to 4 on both: an uninterrupted run and a resumed one agree.
    c = Loader(x, y, 16, shuffle=True, seed=1, augment=FULL)
    c.set_epoch(4)
    for (xa, _), (xc, _) in zip(_epoch(a), _epoch(c), strict=True):
        np.testing.assert_array_equal(xa, xc)
    # Different epochs and different seeds give different batches.
    assert not np.array_equal(_epoch(a)[0][0], ea[0][0])
    d = Loader(x, y, 16, shuffle=True, seed=2, augment=FULL)
    d.set_epoch(3)
    assert not np.array_equal(_epoch(d)[0][0], ea[0][0])


def test_loader_augment_as_dict_and_early_break():
    x, y = _images(40), np.arange(40) % 10
    loader = Loader(x, y, 8, augment={"crop_pad": 4, "hflip": True})
    for i, (xb, yb) in enumerate(loader):
        assert yb.dtype == np.int64  # crop and flip alone keep hard labels
        if i == 1:
            break
    assert loader.epoch == 0  # an unfinished pass does not count as an epoch
    with pytest.raises(TypeError):
        Loader(x, y, 8, augment={"crop": 4})
