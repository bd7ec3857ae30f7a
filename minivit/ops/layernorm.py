"""Layer normalisation over the last axis (Ba, Kiros & Hinton, 2016).

    mu = mean(x),  var = mean((x - mu)^2),  xhat = (x - mu) / sqrt(var + eps)
    y = gamma * xhat + beta

eps = 1e-6, as in timm's ViT (PyTorch's nn.LayerNorm default is 1e-5).
"""
from ..backend import get_array_module

EPS = 1e-6


# --- layernorm: forward ----------------------------------------------------------------
def layernorm_forward(x, gamma, beta, eps=EPS):
    """x: (..., D), gamma/beta: (D,) -> y: (..., D). Cache: (xhat, rstd, gamma)."""
    xp = get_array_module(x)
    mu = x.mean(axis=-1, keepdims=True)
    xc = x - mu
    var = (xc * xc).mean(axis=-1, keepdims=True)
    rstd = 1.0 / xp.sqrt(var + eps)          # (..., 1)
    xhat = xc * rstd
    return xhat * gamma + beta, (xhat, rstd, gamma)


# --- layernorm: backward ---------------------------------------------------------------
def layernorm_backward(dy, cache):
    """With g = dy * gamma (the gradient w.r.t. xhat), differentiating through mu and var:

        dx = rstd * (g - mean(g) - xhat * mean(g * xhat))
        dgamma = sum(dy * xhat),  dbeta = sum(dy)   (over every leading axis)
    """
    xhat, rstd, gamma = cache
    g = dy * gamma
    dx = rstd * (g - g.mean(axis=-1, keepdims=True) - xhat * (g * xhat).mean(axis=-1, keepdims=True))
    D = dy.shape[-1]
    dgamma = (dy * xhat).reshape(-1, D).sum(axis=0)   # (..., D) -> (M, D) -> (D,)
    dbeta = dy.reshape(-1, D).sum(axis=0)
    return dx, dgamma, dbeta
