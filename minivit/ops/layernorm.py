"""Layer normalisation over the last axis (Ba, Kiros & Hinton, 2016).

    mu = mean(x),  var = mean((x - mu)^2),  xhat = (x - mu) / sqrt(var + eps)
    y = gamma * xhat + beta

eps = 1e-6, as in timm's ViT (PyTorch's nn.LayerNorm default is 1e-5). The cache keeps
xhat and the per-row 1/sqrt(var + eps), which is all the backward pass needs. Keeping
xhat rather than x costs no memory: x (the residual stream) is not needed by anything
else in backward, so it is freed instead. The row formulas below run in cache-sized
chunks on every CPU core (`map_rows`, minivit/parallel.py).
"""
from ..backend import get_array_module
from ..parallel import col_sum, map_rows, row_sum

EPS = 1e-6


def row_mean(x):
    """Mean over the last axis, keeping it: (R, D) -> (R, 1) (a BLAS row sum, see row_sum)."""
    return row_sum(x) * (1.0 / x.shape[-1])


def _normalize(x, gamma, beta, eps):
    """Rows of x (R, D) -> y, xhat (R, D) and rstd (R, 1)."""
    xp = get_array_module(x)
    mu = row_mean(x)
    xhat = x - mu
    var = row_mean(xhat * xhat)
    rstd = 1.0 / xp.sqrt(var + eps)
    xhat *= rstd
    y = xhat * gamma
    y += beta
    return y, xhat, rstd


def _normalize_grad(dy, xhat, rstd, gamma):
    """Rows (R, D) -> dx, and this chunk's sums for dgamma and dbeta.

    With g = dy * gamma (the gradient w.r.t. xhat), differentiating through mu and var:
        dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
    The two means are products with gamma, mean(g) = dy . gamma / D and
    mean(g * xhat) = (dy * xhat) . gamma / D, so dy * xhat is formed once, for both
    mean(g * xhat) and dgamma.
    """
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
    """x: (..., D), gamma/beta: (D,) -> y: (..., D). Cache: (xhat, rstd, gamma)."""
    y, xhat, rstd = map_rows(lambda x, g, b: _normalize(x, g, b, eps), x, gamma, beta, n_out=3)
    return y, (xhat, rstd, gamma)


# --- layernorm: backward ---------------------------------------------------------------
def layernorm_backward(dy, cache):
    """dx as in _normalize_grad; dgamma = sum(dy * xhat), dbeta = sum(dy) over every
    leading axis. Returns dx (..., D), dgamma (D,), dbeta (D,)."""
    xhat, rstd, gamma = cache
    return map_rows(_normalize_grad, dy, xhat, rstd, gamma, n_out=1, n_sums=2)
