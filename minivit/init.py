"""Parameter initialisers, always on the host with a NumPy Generator (then moved to the
device), so CPU and GPU models built from the same seed start bit-identical."""
import numpy as np


def trunc_normal(rng, shape, std=0.02):
    """Normal(0, std^2) truncated at +-2 std (resampled), as timm's ViT init intends."""
    z = rng.standard_normal(shape)
    bad = np.abs(z) > 2.0
    while bad.any():
        z[bad] = rng.standard_normal(int(bad.sum()))
        bad = np.abs(z) > 2.0
    return z * std


def uniform_fan_in(rng, shape, fan_in):
    """U(-1/sqrt(fan_in), 1/sqrt(fan_in)): PyTorch's default for Conv2d (timm leaves
    patch_embed.proj at that default)."""
    bound = 1.0 / np.sqrt(fan_in)
    return rng.uniform(-bound, bound, shape)
