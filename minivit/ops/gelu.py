"""GELU(x) = x * Phi(x), with Phi the standard normal CDF (Hendrycks & Gimpel, 2016).

Two forms, as in PyTorch's nn.GELU(approximate=...):
    'none' (exact, what timm and nn.GELU use):  Phi(x) = (1 + erf(x / sqrt 2)) / 2
    'tanh' (the BERT/GPT-2 approximation):      Phi(x) ~ (1 + tanh(u)) / 2,
                                                 u = sqrt(2/pi) (x + 0.044715 x^3)

The forward pass computes the derivative GELU'(x) alongside GELU(x), while Phi and exp
are at hand, and caches it instead of x: the backward pass is then one multiplication,
with no extra memory. `map_rows` runs each formula in cache-sized chunks on all CPU cores
(minivit/parallel.py); the math is what you read.

Phi in float32: the two forms are closer than they look. Write Phi exactly as
    Phi(x) = (1 + tanh(x h(x^2))) / 2,    x h(x^2) = atanh(erf(x / sqrt 2)),
then h is smooth, and the tanh form is two terms of it: h(z) ~ sqrt(2/pi) (1 + 0.044715 z)
(Taylor: 1 + 0.0455 z + ...). Five more terms (7 in all, fitted on |x| <= 6 by
`gelu_fit.py`; beyond, Phi is 0 or 1 in float32) give Phi to float32 round-off (tests:
|error| < 1.5e-7 against math.erfc) in about half the passes of erf's rational function:
a polynomial, one multiply and NumPy's vectorised tanh. float64 uses erf (Cephes).
"""
import math

from ..backend import get_array_module
from ..parallel import map_rows
from .erf import _polevl, erf

_SQRT_HALF = math.sqrt(0.5)
_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_C = 0.044715
APPROXIMATIONS = ("none", "tanh")


# h(z), highest power first, from gelu_fit.fit_h(): the last two are sqrt(2/pi) (0.0455, 1)
_H32 = (1.75620629e-09, -1.32264509e-07, 3.96475775e-06, -5.53062590e-05, -3.25948379e-05,
        3.63330845e-02, 7.97884941e-01)
_CLIP32 = 36.0    # x^2 = 36 (|x| = 6): x h(x^2) >= 11.8 beyond, tanh is exactly +-1 in float32


def _phi_tanh_form(x, z):
    """Phi(x) from x and z = x^2 (float32): (1 + tanh(x h(z))) / 2.

    z is clipped at 36 only inside h, so h stays on its fitted range: h(36) = 1.97, so
    |x h| >= 11.8 for |x| >= 6, where tanh is +-1 and Phi 0 or 1 in float32."""
    xp = get_array_module(x)
    u = _polevl(xp.minimum(z, _CLIP32), _H32)   # h(min(x^2, 36))
    u *= x
    cdf = xp.tanh(u, out=u)
    cdf *= 0.5
    cdf += 0.5
    return cdf


def normal_cdf(x):
    """Phi(x) = (1 + erf(x / sqrt 2)) / 2 (float32: the tanh form above)."""
    if x.dtype != "float32":
        return 0.5 * (1.0 + erf(x * _SQRT_HALF))
    xc = get_array_module(x).clip(x, -6.0, 6.0)   # x^2 of |x| > 1.8e19 would overflow
    return _phi_tanh_form(x, xc * xc)


def _gelu(x):
    """GELU(x) = x Phi(x) and its derivative Phi(x) + x phi(x), phi(x) = exp(-x^2/2)/sqrt(2 pi)."""
    xp = get_array_module(x)
    xpdf = x * x                                # x^2, shared by Phi (float32) and phi
    cdf = _phi_tanh_form(x, xpdf) if x.dtype == "float32" else normal_cdf(x)
    xpdf *= -0.5
    xpdf = xp.exp(xpdf, out=xpdf)
    xpdf *= x
    xpdf *= _INV_SQRT_2PI                       # x phi(x)
    xpdf += cdf
    return x * cdf, xpdf


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
