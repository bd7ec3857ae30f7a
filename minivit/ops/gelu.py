"""GELU(x) = x * Phi(x), with Phi the standard normal CDF (Hendrycks & Gimpel, 2016).

Two forms, as in PyTorch's nn.GELU(approximate=...):
    'none' (exact, what timm and nn.GELU use):  Phi(x) = (1 + erf(x / sqrt 2)) / 2
    'tanh' (the BERT/GPT-2 approximation):      Phi(x) ~ (1 + tanh(u)) / 2,
                                                 u = sqrt(2/pi) (x + 0.044715 x^3)

The forward pass computes the derivative GELU'(x) alongside GELU(x), while Phi is at hand,
and caches it instead of x: the backward pass is then one multiplication (chain rule).
"""
import math

from ..backend import get_array_module
from .erf import erf

APPROXIMATIONS = ("none", "tanh")
_C = 0.044715


def normal_cdf(x):
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2"""
    return 0.5 * (1.0 + erf(x / math.sqrt(2.0)))


def check_approximate(approximate):
    if approximate not in APPROXIMATIONS:
        raise ValueError(f"approximate must be one of {APPROXIMATIONS}, got {approximate!r}")


# --- gelu: forward ---------------------------------------------------------------------
def gelu_forward(x, approximate="none"):
    """y = x Phi(x), elementwise; x: any shape -> y: same shape. Cache: GELU'(x).

    exact:  GELU'(x) = Phi(x) + x phi(x),   phi(x) = exp(-x^2 / 2) / sqrt(2 pi)
    tanh:   GELU'(x) = (1 + t) / 2 + x (1 - t^2) / 2 * du/dx,   t = tanh(u),
            du/dx = sqrt(2/pi) (1 + 3 * 0.044715 x^2)
    """
    check_approximate(approximate)
    ### BEGIN SOLUTION gelu
    ### HINT: both forms of the docstring (normal_cdf is given); return GELU(x) and its derivative
    xp = get_array_module(x)
    if approximate == "none":
        cdf = normal_cdf(x)
        pdf = xp.exp(-0.5 * x * x) / math.sqrt(2.0 * math.pi)
        return x * cdf, cdf + x * pdf
    k = math.sqrt(2.0 / math.pi)
    t = xp.tanh(k * (x + _C * x ** 3))
    du = k * (1.0 + 3.0 * _C * x * x)
    return 0.5 * x * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du
    ### END SOLUTION


# --- gelu: backward --------------------------------------------------------------------
def gelu_backward(dy, cache):
    """dx = dy * GELU'(x), the derivative cached by the forward pass."""
    ### BEGIN SOLUTION gelu
    ### HINT: the chain rule, with the derivative the forward pass cached
    dydx = cache
    return dy * dydx
    ### END SOLUTION
