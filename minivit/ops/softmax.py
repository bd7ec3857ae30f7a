"""Softmax along an axis: y_i = exp(x_i - max(x)) / sum_j exp(x_j - max(x)).

Subtracting the max changes nothing mathematically (it cancels between numerator and
denominator) but keeps exp() from overflowing: the largest exponent becomes exp(0) = 1,
and the sum is at least 1, so it cannot underflow either.
"""
from ..backend import get_array_module


# --- softmax: forward ------------------------------------------------------------------
def softmax_forward(x, axis=-1):
    """x: any shape -> y: same shape, each slice along `axis` a probability vector.
    Cache: (y, axis) (the derivative is a function of the output)."""
    ### BEGIN SOLUTION softmax
    ### HINT: subtract the max along `axis` before exp (keepdims), divide by the sum along `axis`
    xp = get_array_module(x)
    e = xp.exp(x - x.max(axis=axis, keepdims=True))
    y = e / e.sum(axis=axis, keepdims=True)
    return y, (y, axis)
    ### END SOLUTION


# --- softmax: backward -----------------------------------------------------------------
def softmax_backward(dy, cache):
    """The Jacobian of one slice is diag(y) - y y^T, so  dx = y * (dy - sum(dy * y))."""
    ### BEGIN SOLUTION softmax
    ### HINT: the Jacobian-vector product of the docstring, without building the Jacobian
    y, axis = cache
    return y * (dy - (dy * y).sum(axis=axis, keepdims=True))
    ### END SOLUTION
