"""Layer normalisation over the last axis (Ba, Kiros & Hinton, 2016).

    mu = mean(x),  var = mean((x - mu)^2),  xhat = (x - mu) / sqrt(var + eps)
    y = gamma xhat + beta     (elementwise)

eps = 1e-6, as in timm's ViT (PyTorch's nn.LayerNorm default is 1e-5). The cache keeps
xhat and the per-row 1/sqrt(var + eps), which is all the backward pass needs.
"""
from ..backend import get_array_module

EPS = 1e-6


# --- layernorm: forward ----------------------------------------------------------------
def layernorm_forward(x, gamma, beta, eps=EPS):
    """x: (..., D), gamma/beta: (D,) -> y: (..., D). Cache: (xhat, rstd, gamma)."""
    ### BEGIN SOLUTION layernorm
    ### HINT: statistics over the last axis only (keepdims); the biased variance; eps inside the sqrt
    xp = get_array_module(x)
    mu = x.mean(axis=-1, keepdims=True)                      # (..., 1)
    xc = x - mu                                              # (..., D), centred
    var = (xc * xc).mean(axis=-1, keepdims=True)             # (..., 1), the biased variance
    rstd = 1.0 / xp.sqrt(var + eps)                          # (..., 1)
    xhat = xc * rstd                                         # (..., D): mean 0, variance ~1
    y = gamma * xhat + beta
    return y, (xhat, rstd, gamma)
    ### END SOLUTION


# --- layernorm: backward ---------------------------------------------------------------
def layernorm_backward(dy, cache):
    """With g = dy * gamma, the gradient w.r.t. xhat, and differentiating through mu and var:

        dx = rstd * (g - mean(g) - xhat * mean(g * xhat))        (means over the last axis)
        dgamma = sum(dy * xhat),  dbeta = sum(dy)                (sums over every leading axis)

    Returns dx (..., D), dgamma (D,), dbeta (D,)."""
    ### BEGIN SOLUTION layernorm
    ### HINT: the formula above (means over the last axis); dgamma, dbeta sum over the other axes
    xhat, rstd, gamma = cache
    g = dy * gamma                                           # (..., D)
    dx = rstd * (g - g.mean(axis=-1, keepdims=True)
                 - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    lead = tuple(range(dy.ndim - 1))                         # every axis but the last
    return dx, (dy * xhat).sum(axis=lead), dy.sum(axis=lead)
    ### END SOLUTION
