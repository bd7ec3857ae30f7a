"""Softmax along an axis: y_i = exp(x_i - max(x)) / sum_j exp(x_j - max(x)).

Subtracting the max changes nothing mathematically (it cancels) but keeps exp() from
overflowing: the largest exponent becomes exp(0) = 1.
"""
from ..backend import get_array_module


# --- softmax: forward ------------------------------------------------------------------
def softmax_forward(x, axis=-1):
    """x: any shape -> y: same shape, rows along `axis` are probabilities. Cache: y."""
    xp = get_array_module(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    e /= e.sum(axis=axis, keepdims=True)
    return e, (e, axis)


# --- softmax: backward -----------------------------------------------------------------
def softmax_backward(dy, cache):
    """The Jacobian is diag(y) - y y^T, so  dx = y * (dy - sum(dy * y)) along `axis`."""
    y, axis = cache
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))
