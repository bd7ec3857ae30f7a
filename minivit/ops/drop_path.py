"""Stochastic depth, "drop path" (Huang et al., 2016): in training, skip a residual branch
for a whole example with probability p (scaling kept branches by 1/(1-p)), so every block
learns to be useful on its own. The identity in evaluation.
"""


# --- drop path: forward ----------------------------------------------------------------
def drop_path_forward(x, p, train, rng):
    """x: (B, ...) -> same shape; one keep/drop decision per example. Cache: the mask."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"drop path probability must be in [0, 1), got {p}")
    if not train or p == 0.0:
        return x, None
    shape = (x.shape[0],) + (1,) * (x.ndim - 1)     # (B, 1, 1): broadcast over tokens
    mask = (rng.random(shape, dtype=x.dtype) >= p).astype(x.dtype)
    mask *= 1.0 / (1.0 - p)
    return x * mask, mask


# --- drop path: backward ---------------------------------------------------------------
def drop_path_backward(dy, cache):
    mask = cache
    return dy if mask is None else dy * mask
