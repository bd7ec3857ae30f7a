"""Softmax along an axis: y_i = exp(x_i - max(x)) / sum_j exp(x_j - max(x)).

Subtracting the max changes nothing mathematically (it cancels) but keeps exp() from
overflowing: the largest exponent becomes exp(0) = 1. Along the last axis (attention),
the rows run in cache-sized chunks on every CPU core (`map_rows`, minivit/parallel.py).
"""
from ..backend import get_array_module
from ..parallel import map_rows, row_sum


def _softmax(x, axis=-1):
    e = x - x.max(axis=axis, keepdims=True)
    e = get_array_module(x).exp(e, out=e)
    e /= row_sum(e) if axis == -1 else e.sum(axis=axis, keepdims=True)
    return e


def _softmax_grad(dy, y, axis=-1):
    """The Jacobian is diag(y) - y y^T, so  dx = y * (dy - sum(dy * y))."""
    dx = dy - (row_sum(dy * y) if axis == -1 else (dy * y).sum(axis=axis, keepdims=True))
    dx *= y
    return dx


# --- softmax: forward ------------------------------------------------------------------
def softmax_forward(x, axis=-1):
    """x: any shape -> y: same shape, rows along `axis` are probabilities. Cache: y."""
    y = map_rows(_softmax, x) if axis in (-1, x.ndim - 1) else _softmax(x, axis)
    return y, (y, axis)


# --- softmax: backward -----------------------------------------------------------------
def softmax_backward(dy, cache):
    """dx = y * (dy - sum(dy * y)) along `axis` (see _softmax_grad)."""
    y, axis = cache
    return map_rows(_softmax_grad, dy, y) if axis in (-1, y.ndim - 1) else _softmax_grad(dy, y, axis)
