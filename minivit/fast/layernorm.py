"""LayerNorm on the CPU, faster: the same result as minivit/ops/layernorm.py.

What it does differently, and why:
- The row formulas run in cache-sized chunks on every core (`map_rows`): a formula of a
  dozen NumPy passes then reads its intermediates from L2 instead of memory.
- Row means are matrix-vector products with ones on BLAS (`row_sum`), and the column
  sums dgamma, dbeta are ones @ x (`col_sum`): both several times faster than NumPy's
  reductions along short axes.
- In backward, the two row means are products with gamma: mean(g) = dy . gamma / D and
  mean(g * xhat) = (dy * xhat) . gamma / D (g = dy * gamma), so dy * xhat is formed once,
  for that mean and for dgamma.
Cache: (xhat, rstd, gamma), as the reference's.
"""
import numpy as np

from ..ops.layernorm import EPS
from .parallel import col_sum, map_rows, row_sum


def _row_mean(x):
    """(R, D) -> (R, 1)"""
    return row_sum(x) * (1.0 / x.shape[-1])


def _normalize(x, gamma, beta, eps):
    """Rows of x (R, D) -> y, xhat (R, D) and rstd (R, 1)."""
    mu = _row_mean(x)
    xhat = x - mu
    var = _row_mean(xhat * xhat)
    rstd = 1.0 / np.sqrt(var + eps)
    xhat *= rstd
    y = xhat * gamma
    y += beta
    return y, xhat, rstd


def _normalize_grad(dy, xhat, rstd, gamma):
    """Rows (R, D) -> dx, and this chunk's sums for dgamma and dbeta."""
    D = dy.shape[-1]
    gcol = gamma.reshape(-1, 1)                # (D,) or (1, D) -> (D, 1)
    dy_xhat = dy * xhat
    m1 = (dy @ gcol) * (1.0 / D)               # mean(g): (R, D) @ (D, 1) -> (R, 1)
    m2 = (dy_xhat @ gcol) * (1.0 / D)          # mean(g * xhat)
    g = dy * gamma
    g -= xhat * m2
    g -= m1
    g *= rstd
    return g, col_sum(dy_xhat), col_sum(dy)


# --- layernorm: forward ----------------------------------------------------------------
def layernorm_forward(x, gamma, beta, eps=EPS):
    """As minivit.ops.layernorm_forward. Cache: (xhat, rstd, gamma)."""
    y, xhat, rstd = map_rows(lambda x, g, b: _normalize(x, g, b, eps), x, gamma, beta, n_out=3)
    return y, (xhat, rstd, gamma)


# --- layernorm: backward ---------------------------------------------------------------
def layernorm_backward(dy, cache):
    """As minivit.ops.layernorm_backward: dx (..., D), dgamma (D,), dbeta (D,)."""
    xhat, rstd, gamma = cache
    return map_rows(_normalize_grad, dy, xhat, rstd, gamma, n_out=1, n_sums=2)
