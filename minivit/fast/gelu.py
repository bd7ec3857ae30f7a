"""GELU on the CPU, faster: the same result as minivit/ops/gelu.py to round-off.

What it does differently, and why:
- Each formula runs in cache-sized chunks on every core (`map_rows`), with in-place
  updates, so its intermediates stay in L2.
- Phi in float32 (the exact form) is not computed through erf. Write Phi exactly as
      Phi(x) = (1 + tanh(x h(x^2))) / 2,    x h(x^2) = atanh(erf(x / sqrt 2)),
  then h is smooth, and the well-known tanh approximation is two terms of it:
  h(z) ~ sqrt(2/pi) (1 + 0.044715 z) (Taylor: 1 + 0.0455 z + ...). Five more terms (7 in
  all, fitted on |x| <= 6 by `gelu_fit.py`; beyond, Phi is 0 or 1 in float32) give Phi to
  float32 round-off (tests: |error| < 1.5e-7 against math.erfc) in about half the passes
  of erf's rational function: a polynomial, one multiply and NumPy's vectorised tanh.
  x^2 is shared between that polynomial and phi(x)'s exp. float64 keeps the erf form.
Cache: GELU'(x), as the reference's.
"""
import math

import numpy as np

from ..ops.erf import _polevl
from ..ops.gelu import check_approximate, normal_cdf
from .parallel import map_rows

_INV_SQRT_2PI = 1.0 / math.sqrt(2.0 * math.pi)
_SQRT_2_OVER_PI = math.sqrt(2.0 / math.pi)
_C = 0.044715

# h(z), highest power first, from gelu_fit.fit_h(): the last two are sqrt(2/pi) (0.0455, 1)
H32 = (1.75620629e-09, -1.32264509e-07, 3.96475775e-06, -5.53062590e-05, -3.25948379e-05,
       3.63330845e-02, 7.97884941e-01)
_CLIP32 = 36.0    # x^2 = 36 (|x| = 6): x h(x^2) >= 11.8 beyond, tanh is exactly +-1 in float32


def phi_tanh_form(x, z):
    """Phi(x) from float32 x and z = x^2: (1 + tanh(x h(z))) / 2.

    z is clipped at 36 only inside h, so h stays on its fitted range: h(36) = 1.97, so
    |x h| >= 11.8 for |x| >= 6, where tanh is +-1 and Phi 0 or 1 in float32."""
    u = _polevl(np.minimum(z, _CLIP32), H32)     # h(min(x^2, 36))
    u *= x
    cdf = np.tanh(u, out=u)
    cdf *= 0.5
    cdf += 0.5
    return cdf


def _gelu(x):
    """GELU(x) = x Phi(x) and its derivative Phi(x) + x phi(x), phi(x) = exp(-x^2/2)/sqrt(2 pi)."""
    xpdf = x * x                                # x^2, shared by Phi (float32) and phi
    cdf = phi_tanh_form(x, xpdf) if x.dtype == np.float32 else normal_cdf(x)
    xpdf *= -0.5
    xpdf = np.exp(xpdf, out=xpdf)
    xpdf *= x
    xpdf *= _INV_SQRT_2PI                       # x phi(x)
    xpdf += cdf
    return x * cdf, xpdf


def _gelu_tanh(x):
    """0.5 x (1 + t) and its derivative (1 + t)/2 + x/2 (1 - t^2) sqrt(2/pi) (1 + 3c x^2),
    t = tanh(u)."""
    t = np.tanh(_SQRT_2_OVER_PI * (x + _C * x * x * x))
    du = _SQRT_2_OVER_PI * (1.0 + 3.0 * _C * x * x)
    return 0.5 * x * (1.0 + t), 0.5 * (1.0 + t) + 0.5 * x * (1.0 - t * t) * du


# --- gelu: forward ---------------------------------------------------------------------
def gelu_forward(x, approximate="none"):
    """As minivit.ops.gelu_forward. Cache: GELU'(x)."""
    check_approximate(approximate)
    y, dydx = map_rows(_gelu if approximate == "none" else _gelu_tanh, x, n_out=2)
    return y, dydx


# --- gelu: backward --------------------------------------------------------------------
def gelu_backward(dy, cache):
    """dx = dy * GELU'(x)."""
    return dy * cache
