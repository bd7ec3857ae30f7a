"""GELU(x) = x * Phi(x), with Phi the standard normal CDF (Hendrycks & Gimpel, 2016).

Two forms, as in PyTorch's nn.GELU(approximate=...):
    'none' (exact, what timm and nn.GELU use):  Phi(x) = (1 + erf(x / sqrt 2)) / 2
    'tanh' (the BERT/GPT-2 approximation):      Phi(x) ~ (1 + tanh(u)) / 2,
                                                 u = sqrt(2/pi) (x + 0.044715 x^3)

The forward pass computes the derivative GELU'(x) alongside GELU(x), while erf and exp
are at hand, and caches it instead of x: the backward pass is then one multiplication,
with no extra memory. `map_rows` runs each formula in cache-sized chunks on all CPU cores
(minivit/parallel.py); the math is what you read.
"""
import math

from ..backend import get_array_module
from ..parallel import map_rows
from .erf import erf

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_C = 0.044715
APPROXIMATIONS = ("none", "tanh")


def _gelu(x):
    """GELU(x) = x Phi(x) and its derivative Phi(x) + x phi(x), phi(x) = exp(-x^2/2)/sqrt(2 pi)."""
    cdf = 0.5 * (1.0 + erf(x * _SQRT_HALF))
    pdf = _INV_SQRT_2PI * get_array_module(x).exp(-0.5 * x * x)
    return x * cdf, cdf + x * pdf


def _gelu_tanh(x):
    """0.5 x (1 + t) and its derivative (1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3c x^2),
    t = tanh(u)."""
    t = get_array_module(x).tanh(_SQRT_2_OVER_PI * (x + _C * x * x * x))
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _C * x * x)
    return 0.5 * x * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du


def _check(approximate):
    if approximate not in APPROXIMATIONS:
        raise ValueError(f"approximate must be one of {APPROXIMATIONS}, got {approximate!r}")


# --- gelu: forward ---------------------------------------------------------------------
def gelu_forward(x, approximate="none"):
    """y = x Phi(x), elementwise; x: any shape -> y: same shape. Cache: GELU'(x)."""
    _check(approximate)
    y, dydx = map_rows(_gelu if approximate == "none" else _gelu_tanh, x, n_out=2)
    return y, dydx


# --- gelu: backward --------------------------------------------------------------------
def gelu_backward(dy, cache):
    """dx = dy * GELU'(x), the derivative cached by the forward pass (chain rule)."""
    dydx = cache
    return dy * dydx
