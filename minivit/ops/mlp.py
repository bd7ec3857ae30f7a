"""The transformer's position-wise MLP: fc1 -> GELU -> dropout -> fc2 -> dropout.

timm names: fc1.weight (Dh, D), fc1.bias, fc2.weight (D, Dh), fc2.bias; Dh = mlp_ratio * D.
`kernels`: the primitive ops to call (minivit.ops.reference unless given).
"""
from . import reference


# --- mlp: forward ----------------------------------------------------------------------
def mlp_forward(x, p, *, drop=0.0, train=False, rng=None, approximate="none", kernels=None):
    """x: (B, N, D), p: {'fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias'} -> (B, N, D)"""
    ### BEGIN SOLUTION block
    ### HINT: fc1, GELU, dropout, fc2, dropout: each a primitive of the kernel set k
    k = kernels or reference
    h, c1 = k.linear_forward(x, p["fc1.weight"], p.get("fc1.bias"))   # (B, N, Dh)
    h, c_act = k.gelu_forward(h, approximate)
    h, c_d1 = k.dropout_forward(h, drop, train, rng)
    y, c2 = k.linear_forward(h, p["fc2.weight"], p.get("fc2.bias"))   # (B, N, D)
    y, c_d2 = k.dropout_forward(y, drop, train, rng)
    return y, (k, c1, c_act, c_d1, c2, c_d2)
    ### END SOLUTION


# --- mlp: backward ---------------------------------------------------------------------
def mlp_backward(dy, cache):
    """Returns dx (B, N, D) and {'fc1.weight', 'fc1.bias', 'fc2.weight', 'fc2.bias'}."""
    ### BEGIN SOLUTION block
    ### HINT: the forward pass in reverse; the gradients by parameter name, none that are None
    k, c1, c_act, c_d1, c2, c_d2 = cache
    dy = k.dropout_backward(dy, c_d2)
    dh, dw2, db2 = k.linear_backward(dy, c2)
    dh = k.gelu_backward(k.dropout_backward(dh, c_d1), c_act)
    dx, dw1, db1 = k.linear_backward(dh, c1)
    grads = {"fc1.weight": dw1, "fc1.bias": db1, "fc2.weight": dw2, "fc2.bias": db2}
    return dx, {name: g for name, g in grads.items() if g is not None}
    ### END SOLUTION
