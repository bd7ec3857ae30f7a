"""Inverted dropout (Srivastava et al., 2014): in training, zero each element with
probability p and scale the survivors by 1/(1-p), so the expected value is unchanged and
evaluation needs no rescaling; in evaluation it is the identity.
"""


# --- dropout: forward ------------------------------------------------------------------
def dropout_forward(x, p, train, rng):
    """x: any shape -> y: same shape. rng: a Generator of x's array module (.random()).
    Cache: the scaled mask (None when dropout is inactive)."""
    if not 0.0 <= p < 1.0:
        raise ValueError(f"dropout probability must be in [0, 1), got {p}")
    if not train or p == 0.0:
        return x, None
    # keep with probability 1 - p; the mask holds 0 or 1/(1-p) in x's dtype
    mask = (rng.random(x.shape, dtype=x.dtype) >= p).astype(x.dtype)
    mask *= 1.0 / (1.0 - p)
    return x * mask, mask


# --- dropout: backward -----------------------------------------------------------------
def dropout_backward(dy, cache):
    """dx = dy * mask: the same elements are dropped and the same scale applied."""
    mask = cache
    return dy if mask is None else dy * mask
