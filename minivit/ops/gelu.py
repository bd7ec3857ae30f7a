"""GELU(x) = x * Phi(x), with Phi the standard normal CDF (Hendrycks & Gimpel, 2016).

Two forms, as in PyTorch's nn.GELU(approximate=...):
    'none' (exact, what timm and nn.GELU use):  Phi(x) = (1 + erf(x / sqrt 2)) / 2
    'tanh' (the BERT/GPT-2 approximation):      Phi(x) ~ (1 + tanh(u)) / 2,
                                                 u = sqrt(2/pi) (x + 0.044715 x^3)
"""
import math

from ..backend import get_array_module
from .erf import erf

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_C = 0.044715
APPROXIMATIONS = ("none", "tanh")


def _check(approximate):
    if approximate not in APPROXIMATIONS:
        raise ValueError(f"approximate must be one of {APPROXIMATIONS}, got {approximate!r}")


# --- gelu: forward ---------------------------------------------------------------------
def gelu_forward(x, approximate="none"):
    """y = x Phi(x), elementwise; x: any shape -> y: same shape. Cache: (x, Phi or tanh)."""
    _check(approximate)
    if approximate == "none":
        phi_cdf = 0.5 * (1.0 + erf(x * _SQRT_HALF))
        return x * phi_cdf, (x, phi_cdf, approximate)
    xp = get_array_module(x)
    t = xp.tanh(_SQRT_2_OVER_PI * (x + _C * x * x * x))
    return 0.5 * x * (1.0 + t), (x, t, approximate)


# --- gelu: backward --------------------------------------------------------------------
def gelu_backward(dy, cache):
    """Exact:  dGELU/dx = Phi(x) + x phi(x),  phi(x) = exp(-x^2/2) / sqrt(2 pi)
    tanh:   d/dx = (1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3c x^2),  t = tanh(u)
    """
    x, s, approximate = cache
    xp = get_array_module(x)
    if approximate == "none":
        pdf = _INV_SQRT_2PI * xp.exp(-0.5 * x * x)
        return dy * (s + x * pdf)
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _C * x * x)
    return dy * (0.5 * (1.0 + s) + 0.5 * x * (1.0 - s * s) * du)
