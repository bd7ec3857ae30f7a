"""The transformer's position-wise MLP: fc1 -> GELU -> dropout -> fc2 -> dropout.

timm names: fc1.weight (Dh, D), fc1.bias, fc2.weight (D, Dh), fc2.bias; Dh = mlp_ratio * D.
"""
from .dropout import dropout_backward, dropout_forward
from .gelu import gelu_backward, gelu_forward
from .linear import linear_backward, linear_forward


# --- mlp: forward ----------------------------------------------------------------------
def mlp_forward(x, p, drop=0.0, train=False, rng=None, approximate="none"):
    """x: (B, N, D), p: {'fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias'} -> (B, N, D)"""
    h, c1 = linear_forward(x, p["fc1.weight"], p.get("fc1.bias"))   # (B, N, Dh)
    h, c_act = gelu_forward(h, approximate)
    h, c_d1 = dropout_forward(h, drop, train, rng)
    y, c2 = linear_forward(h, p["fc2.weight"], p.get("fc2.bias"))   # (B, N, D)
    y, c_d2 = dropout_forward(y, drop, train, rng)
    return y, (c1, c_act, c_d1, c2, c_d2)


# --- mlp: backward ---------------------------------------------------------------------
def mlp_backward(dy, cache):
    """Returns dx (B, N, D) and {'fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias'}."""
    c1, c_act, c_d1, c2, c_d2 = cache
    dy = dropout_backward(dy, c_d2)
    dh, dw2, db2 = linear_backward(dy, c2)
    dh = gelu_backward(dropout_backward(dh, c_d1), c_act)
    dx, dw1, db1 = linear_backward(dh, c1)
    grads = {"fc1.weight": dw1, "fc1.bias": db1, "fc2.weight": dw2, "fc2.bias": db2}
    return dx, {k: g for k, g in grads.items() if g is not None}
