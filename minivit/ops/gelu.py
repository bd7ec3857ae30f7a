"""GELU(x) = x * Phi(x), with Phi the standard normal CDF (Hendrycks & Gimpel, 2016).

Two forms, as in PyTorch's nn.GELU(approximate=...):
    'none' (exact, what timm and nn.GELU use):  Phi(x) = (1 + erf(x / sqrt 2)) / 2
    'tanh' (the BERT/GPT-2 approximation):      Phi(x) ~ (1 + tanh(u)) / 2,
                                                 u = sqrt(2/pi) (x + 0.044715 x^3)

Only x is cached: the backward pass recomputes Phi from it (as PyTorch does), which costs
less than storing a second activation-sized array. `elementwise` runs each formula in
cache-sized chunks on all CPU cores (see minivit/parallel.py); the math is what you read.
"""
import math

from ..backend import get_array_module
from ..parallel import elementwise
from .erf import erf

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_C = 0.044715
APPROXIMATIONS = ("none", "tanh")


def _gelu(x):
    return x * (0.5 * (1.0 + erf(x * _SQRT_HALF)))


def _gelu_grad(dy, x):
    """dGELU/dx = Phi(x) + x phi(x),  phi(x) = exp(-x^2/2) / sqrt(2 pi)"""
    xp = get_array_module(x)
    cdf = 0.5 * (1.0 + erf(x * _SQRT_HALF))
    pdf = _INV_SQRT_2PI * xp.exp(-0.5 * x * x)
    return dy * (cdf + x * pdf)


def _gelu_tanh(x):
    t = get_array_module(x).tanh(_SQRT_2_OVER_PI * (x + _C * x * x * x))
    return 0.5 * x * (1.0 + t)


def _gelu_tanh_grad(dy, x):
    """d/dx = (1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3c x^2),  t = tanh(u)"""
    t = get_array_module(x).tanh(_SQRT_2_OVER_PI * (x + _C * x * x * x))
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _C * x * x)
    return dy * (0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du)


def _check(approximate):
    if approximate not in APPROXIMATIONS:
        raise ValueError(f"approximate must be one of {APPROXIMATIONS}, got {approximate!r}")


# --- gelu: forward ---------------------------------------------------------------------
def gelu_forward(x, approximate="none"):
    """y = x Phi(x), elementwise; x: any shape -> y: same shape. Cache: x."""
    _check(approximate)
    y = elementwise(_gelu if approximate == "none" else _gelu_tanh, x)
    return y, (x, approximate)


# --- gelu: backward --------------------------------------------------------------------
def gelu_backward(dy, cache):
    """dx = dy * GELU'(x), with GELU' from _gelu_grad / _gelu_tanh_grad above."""
    x, approximate = cache
    return elementwise(_gelu_grad if approximate == "none" else _gelu_tanh_grad, dy, x)
