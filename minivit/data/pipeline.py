"""The host-side input pipeline: augment, normalise and batch CIFAR-10 with NumPy.

Every step works on a whole batch at once (no Python loop over images), keeps images as
uint8 for as long as possible (crop and flip move 4x fewer bytes) and produces float32.

Randomness is a pure function of (seed, epoch, batch index): each batch gets its own
`np.random.default_rng([seed, epoch, 1, batch])`. So resuming at epoch k reproduces an
uninterrupted run's batches exactly, and a background thread can build the next batch
without changing any result.
"""
import math
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from numpy.lib.stride_tricks import sliding_window_view

CIFAR10_MEAN = (0.4914, 0.4822, 0.4465)
CIFAR10_STD = (0.2470, 0.2435, 0.2616)


# --- per-image operations, vectorised over the batch ----------------------------------------
def normalize(x, mean=CIFAR10_MEAN, std=CIFAR10_STD):
    """uint8 (B, C, H, W) -> float32 (x / 255 - mean) / std, per channel.

    Folded into one multiply-add (x * scale + shift) computed in place on the float32 copy,
    so no full-size float64 temporary is ever made.
    """
    std = np.asarray(std, dtype=np.float64).reshape(1, -1, 1, 1)
    mean = np.asarray(mean, dtype=np.float64).reshape(1, -1, 1, 1)
    out = x.astype(np.float32)
    out *= (1.0 / (255.0 * std)).astype(np.float32)
    out += (-mean / std).astype(np.float32)
    return out


def random_crop(x, pad, rng):
    """Zero-pad by `pad` on every side, then cut a random HxW window per image (torchvision's
    RandomCrop(32, padding=4) on uint8 images: the padding is black before normalising)."""
    if pad == 0:
        return x.copy()
    b, _, h, w = x.shape
    padded = np.pad(x, ((0, 0), (0, 0), (pad, pad), (pad, pad)))
    dy = rng.integers(0, 2 * pad + 1, size=b)
    dx = rng.integers(0, 2 * pad + 1, size=b)
    windows = sliding_window_view(padded, (h, w), axis=(2, 3))  # (B, C, 2p+1, 2p+1, H, W), a view
    return np.ascontiguousarray(windows[np.arange(b), :, dy, dx])  # -> (B, C, H, W)


def random_hflip(x, rng, p=0.5):
    """Mirror each image left-right with probability p."""
    flip = rng.random(len(x)) < p
    return np.where(flip[:, None, None, None], x[..., ::-1], x)


def _soft_targets(y, num_classes, label_smoothing):
    """int labels (B,) or targets (B, K) -> float32 (B, K), smoothed towards uniform."""
    y = np.asarray(y)
    if y.ndim == 1:
        t = np.zeros((len(y), num_classes), dtype=np.float32)
        t[np.arange(len(y)), y] = 1.0
    else:
        t = y.astype(np.float32)
    if label_smoothing:
        t = t * np.float32(1 - label_smoothing) + np.float32(label_smoothing / num_classes)
    return t


def mixup_cutmix(x, y, num_classes, rng, mixup_alpha=0.8, cutmix_alpha=1.0, prob=1.0,
                 switch_prob=0.5, label_smoothing=0.0):
    """Mixup or CutMix for a float batch, as timm's `Mixup(mode="batch")` does it.

    One lambda per batch; image i is mixed with image B-1-i (the batch flipped). With
    probability `prob` the batch is mixed at all; when both alphas are on, CutMix is picked
    with probability `switch_prob`. CutMix's lambda is corrected to the box's real area.
    Returns (images float32 (B, C, H, W), targets float32 (B, num_classes) summing to 1).
    """
    targets = _soft_targets(y, num_classes, label_smoothing)
    lam, use_cutmix = 1.0, False
    if (mixup_alpha > 0 or cutmix_alpha > 0) and rng.random() < prob:
        if mixup_alpha > 0 and cutmix_alpha > 0:
            use_cutmix = bool(rng.random() < switch_prob)
        else:
            use_cutmix = cutmix_alpha > 0
        alpha = cutmix_alpha if use_cutmix else mixup_alpha
        lam = float(rng.beta(alpha, alpha))
    x = np.array(x, dtype=np.float32)  # a copy: the caller's batch is left alone
    if lam == 1.0:
        return x, targets
    if use_cutmix:
        h, w = x.shape[-2:]
        cut_h, cut_w = int(h * math.sqrt(1 - lam)), int(w * math.sqrt(1 - lam))
        cy, cx = rng.integers(0, h), rng.integers(0, w)
        y0, y1 = np.clip([cy - cut_h // 2, cy + cut_h // 2], 0, h)
        x0, x1 = np.clip([cx - cut_w // 2, cx + cut_w // 2], 0, w)
        x[:, :, y0:y1, x0:x1] = x[::-1, :, y0:y1, x0:x1].copy()  # copy: both sides view x
        lam = 1.0 - (y1 - y0) * (x1 - x0) / (h * w)  # the box may be clipped at the border
    else:
        x = x * np.float32(lam) + x[::-1] * np.float32(1 - lam)
    targets = targets * np.float32(lam) + targets[::-1] * np.float32(1 - lam)
    return x, targets


# --- the loader ---------------------------------------------------------------------------
@dataclass(frozen=True)
class Augment:
    """Training augmentation settings; the defaults do nothing."""
    crop_pad: int = 0            # RandomCrop padding (4 for CIFAR)
    hflip: bool = False          # random horizontal flip
    mixup_alpha: float = 0.0     # > 0 turns Mixup on
    cutmix_alpha: float = 0.0    # > 0 turns CutMix on
    mix_prob: float = 1.0        # probability that a batch is mixed at all
    switch_prob: float = 0.5     # CutMix rather than Mixup, when both are on
    label_smoothing: float = 0.0

    @property
    def soft_targets(self):
        """Targets become float32 (B, K) when mixing or label smoothing is on."""
        return self.mixup_alpha > 0 or self.cutmix_alpha > 0 or self.label_smoothing > 0


class Loader:
    """Batches of (float32 normalised images (B, 3, H, W), labels) from uint8 arrays.

    Labels are int64 (B,), or float32 soft targets (B, num_classes) when `augment` mixes or
    smooths (see `Augment.soft_targets`). The epoch picks the shuffle and the augmentation;
    it advances by one after each complete pass, and `set_epoch(e)` sets it (call it every
    epoch, or once when resuming). `prefetch` builds the next batch in a background thread
    while the current one is used; results are identical either way.
    """

    def __init__(self, x, y, batch_size, shuffle=False, seed=0, augment=None,
                 drop_last=False, prefetch=True, num_classes=10,
                 mean=CIFAR10_MEAN, std=CIFAR10_STD):
        if x.dtype != np.uint8 or x.ndim != 4:
            raise ValueError(f"expected uint8 images (N, C, H, W), got {x.dtype} {x.shape}")
        if len(y) != len(x):
            raise ValueError(f"{len(x)} images but {len(y)} labels")
        if batch_size < 1:
            raise ValueError("batch_size must be >= 1")
        self.x, self.y = x, np.asarray(y, dtype=np.int64)
        self.batch_size, self.shuffle, self.seed = int(batch_size), bool(shuffle), int(seed)
        self.augment = Augment(**augment) if isinstance(augment, dict) else (augment or Augment())
        self.drop_last, self.prefetch, self.num_classes = drop_last, prefetch, num_classes
        self.mean, self.std = mean, std
        self.epoch = 0
        self.start = 0

    def set_epoch(self, epoch, start=0):
        """Next iteration yields epoch `epoch` from batch `start` on (to resume mid-epoch)."""
        self.epoch, self.start = int(epoch), int(start)

    def __len__(self):
        n, b = len(self.x), self.batch_size
        return n // b if self.drop_last else -(-n // b)

    def _indices(self, epoch):
        """The example indices of every batch of `epoch`."""
        n = len(self.x)
        order = (np.random.default_rng([self.seed, epoch, 0]).permutation(n)
                 if self.shuffle else np.arange(n))
        return [order[i * self.batch_size:(i + 1) * self.batch_size] for i in range(len(self))]

    def _batch(self, idx, epoch, i):
        a = self.augment
        rng = np.random.default_rng([self.seed, epoch, 1, i])
        xb, yb = self.x[idx], self.y[idx]
        if a.crop_pad:
            xb = random_crop(xb, a.crop_pad, rng)
        if a.hflip:
            xb = random_hflip(xb, rng)
        xb = normalize(xb, self.mean, self.std)
        if a.soft_targets:
            xb, yb = mixup_cutmix(xb, yb, self.num_classes, rng, a.mixup_alpha, a.cutmix_alpha,
                                  a.mix_prob, a.switch_prob, a.label_smoothing)
        return np.ascontiguousarray(xb), yb

    def __iter__(self):
        epoch, start = self.epoch, self.start
        batches = self._indices(epoch)
        n = len(batches)
        if not self.prefetch:
            for i in range(start, n):
                yield self._batch(batches[i], epoch, i)
        elif start < n:
            # Leaving the loop early closes this generator; the `with` then waits for the one
            # batch in flight, so no thread outlives the iteration.
            with ThreadPoolExecutor(max_workers=1, thread_name_prefix="minivit-data") as pool:
                nxt = pool.submit(self._batch, batches[start], epoch, start)
                for i in range(start, n):
                    batch = nxt.result()
                    if i + 1 < n:
                        nxt = pool.submit(self._batch, batches[i + 1], epoch, i + 1)
                    yield batch
        self.epoch, self.start = epoch + 1, 0
