"""Softmax cross-entropy, with optional label smoothing (Szegedy et al., 2016).

    log p = z - logsumexp(z)           (shifted by max(z) so exp() cannot overflow)
    t     = (1 - eps) y + eps / K      y: one-hot labels, or soft targets (mixup/cutmix)
    L     = -(1/B) sum_b sum_k t_bk log p_bk
"""
from ..backend import get_array_module


# --- cross-entropy: forward ------------------------------------------------------------
def cross_entropy_forward(logits, y, label_smoothing=0.0):
    """logits: (B, K); y: (B,) integer labels or (B, K) target probabilities.
    Returns the mean loss (a 0-d array in logits' dtype) and a cache."""
    xp = get_array_module(logits)
    B, K = logits.shape
    if not 0.0 <= label_smoothing < 1.0:
        raise ValueError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
    if y.ndim == 1:
        if y.shape[0] != B or y.dtype.kind not in "iu":
            raise ValueError(f"labels must be integers of shape ({B},), got {y.dtype} {y.shape}")
        t = xp.zeros((B, K), dtype=logits.dtype)
        t[xp.arange(B), y] = 1.0
    elif y.shape == (B, K):
        t = y.astype(logits.dtype, copy=True)
    else:
        raise ValueError(f"targets must be labels ({B},) or probabilities ({B}, {K}), got {y.shape}")
    ### BEGIN SOLUTION loss
    ### HINT: smooth the targets towards uniform; log-softmax with the max shift; mean of -sum t log p
    if label_smoothing:
        t *= 1.0 - label_smoothing
        t += label_smoothing / K
    z = logits - logits.max(axis=1, keepdims=True)
    e = xp.exp(z)
    s = e.sum(axis=1, keepdims=True)
    logp = z - xp.log(s)
    loss = -(t * logp).sum() / B
    return loss, (e / s, t)
    ### END SOLUTION


# --- cross-entropy: backward -----------------------------------------------------------
def cross_entropy_backward(dloss, cache):
    """dL/dz = (softmax(z) - t) / B   (for targets t that sum to one per row)."""
    ### BEGIN SOLUTION loss
    ### HINT: the gradient of the mean loss w.r.t. the logits, times the upstream dloss
    probs, t = cache
    return (probs - t) * (dloss / probs.shape[0])
    ### END SOLUTION
