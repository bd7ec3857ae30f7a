"""Softmax along an axis: y_i = exp(x_i - max(x)) / sum_j exp(x_j - max(x)).

Subtracting the max changes nothing mathematically (it cancels) but keeps exp() from
overflowing: the largest exponent becomes exp(0) = 1. Along the last axis (attention),
the rows run in cache-sized chunks on every CPU core (`map_rows`, minivit/parallel.py).

The shift is only needed where exp would overflow or the sum underflow. On the CPU the
attention rows therefore take exp(x) directly, and only the rows whose sum is not a
comfortable normal number (inf, NaN or below 1e-30) are redone with the shift
(`_softmax_rows`): a row max and a subtraction are two of the five passes over memory
of the shifted formula, and unshifted exponents lose nothing in accuracy (exp(x_i) is
as exact as exp(x_i - max); the subtraction itself rounds).
"""
import numpy as np

from ..backend import get_array_module
from ..parallel import map_rows, row_sum


def _softmax(x, axis=-1):
    """The reference formula, shifted by the max."""
    e = x - x.max(axis=axis, keepdims=True)
    e = get_array_module(x).exp(e, out=e)
    e /= row_sum(e) if axis == -1 else e.sum(axis=axis, keepdims=True)
    return e


# Rows with a sum above 1e-30 keep their unshifted exponents: a term that underflowed to
# a subnormal number (below 1.2e-38 in float32, steps of 1.4e-45) is then off by at most
# 1.4e-45 / 1e-30 = 1.4e-15 in probability, far below the float32 round-off of the row's
# largest probability (>= 1/n).
_TINY = 1e-30


def _softmax_rows(x):
    """Rows (R, n) of a NumPy array: exp(x) unshifted, the shifted reference where needed."""
    with np.errstate(over="ignore"):              # exp or sum overflow -> inf: redone below
        e = np.exp(x)
        total = row_sum(e)                        # (R, 1)
    ok = (total > _TINY) & (total < float("inf"))  # False for NaN too
    if not ok.all():
        redo = ~ok[:, 0]
        e[redo] = _softmax(x[redo])               # overflowing, underflowing or NaN rows
        total[redo] = 1.0
    e /= total
    return e


def _softmax_grad(dy, y, axis=-1):
    """The Jacobian is diag(y) - y y^T, so  dx = y * (dy - sum(dy * y))."""
    dx = dy - (row_sum(dy * y) if axis == -1 else (dy * y).sum(axis=axis, keepdims=True))
    dx *= y
    return dx


# --- softmax: forward ------------------------------------------------------------------
def softmax_forward(x, axis=-1):
    """x: any shape -> y: same shape, rows along `axis` are probabilities. Cache: y."""
    if axis not in (-1, x.ndim - 1):
        y = _softmax(x, axis)
    else:       # CuPy keeps the reference: its `ok.all()` would wait for the GPU every call
        y = map_rows(_softmax_rows if get_array_module(x) is np else _softmax, x)
    return y, (y, axis)


# --- softmax: backward -----------------------------------------------------------------
def softmax_backward(dy, cache):
    """dx = y * (dy - sum(dy * y)) along `axis` (see _softmax_grad)."""
    y, axis = cache
    return map_rows(_softmax_grad, dy, y) if axis in (-1, y.ndim - 1) else _softmax_grad(dy, y, axis)
