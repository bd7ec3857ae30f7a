"""tanh, the non-linearity of the ViT's pre-training head (paper Eq. 4, 'MLP head')."""
from ..backend import get_array_module


# --- tanh: forward ---------------------------------------------------------------------
def tanh_forward(x):
    """y = tanh(x); cache: y (the derivative is a function of the output)."""
    y = get_array_module(x).tanh(x)
    return y, y


# --- tanh: backward --------------------------------------------------------------------
def tanh_backward(dy, cache):
    """d tanh(x)/dx = 1 - tanh(x)^2"""
    y = cache
    return dy * (1.0 - y * y)
