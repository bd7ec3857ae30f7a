"""The pre-LN transformer encoder block (ViT paper Eqs. 2-3):

    x' = x  + DropPath(MSA(LN1(x)))
    y  = x' + DropPath(MLP(LN2(x')))

The residual connections carry the gradient straight through: dx = dy + (branch terms).
p holds the block's parameters under timm's names relative to the block
('norm1.weight', 'attn.qkv.weight', 'mlp.fc1.bias', ...).
`kernels`: the primitive ops to call (minivit.ops.reference unless given).
"""
from . import reference
from .attention import mhsa_backward, mhsa_forward
from .mlp import mlp_backward, mlp_forward


def sub(p, prefix):
    """{'attn.qkv.weight': w, ...}, 'attn.' -> {'qkv.weight': w, ...}"""
    return {k[len(prefix):]: v for k, v in p.items() if k.startswith(prefix)}


def prefixed(grads, prefix):
    return {prefix + k: v for k, v in grads.items()}


# --- encoder block: forward ------------------------------------------------------------
def block_forward(x, p, num_heads, *, drop=0.0, attn_drop=0.0, drop_path=0.0, train=False,
                  rng=None, approximate="none", return_attn=False, kernels=None):
    """x: (B, N, D) -> y: (B, N, D). Returns y, cache (y, A, cache with return_attn)."""
    ### BEGIN SOLUTION block
    ### HINT: Eqs. 2-3: LN, attention, drop path, residual add; then LN, MLP; sub() splits p
    k = kernels or reference
    h, c_n1 = k.layernorm_forward(x, p["norm1.weight"], p["norm1.bias"])
    h, *a, c_attn = mhsa_forward(h, sub(p, "attn."), num_heads, attn_drop=attn_drop,
                                 proj_drop=drop, train=train, rng=rng,
                                 return_attn=return_attn, kernels=k)
    h, c_dp1 = k.drop_path_forward(h, drop_path, train, rng)
    x = x + h
    h, c_n2 = k.layernorm_forward(x, p["norm2.weight"], p["norm2.bias"])
    h, c_mlp = mlp_forward(h, sub(p, "mlp."), drop=drop, train=train, rng=rng,
                           approximate=approximate, kernels=k)
    h, c_dp2 = k.drop_path_forward(h, drop_path, train, rng)
    y = x + h
    cache = (k, c_n1, c_attn, c_dp1, c_n2, c_mlp, c_dp2)
    return (y, a[0], cache) if return_attn else (y, cache)
    ### END SOLUTION


# --- encoder block: backward -----------------------------------------------------------
def block_backward(dy, cache):
    """Returns dx (B, N, D) and the gradients of every parameter in p, by the same names."""
    ### BEGIN SOLUTION block
    ### HINT: the forward pass in reverse: a residual adds its branch's gradient to the straight one
    k, c_n1, c_attn, c_dp1, c_n2, c_mlp, c_dp2 = cache
    dh, g_mlp = mlp_backward(k.drop_path_backward(dy, c_dp2), c_mlp)
    dh, dg2, db2 = k.layernorm_backward(dh, c_n2)
    dx = dy + dh                                   # residual: both paths add up
    dh, g_attn = mhsa_backward(k.drop_path_backward(dx, c_dp1), c_attn)
    dh, dg1, db1 = k.layernorm_backward(dh, c_n1)
    dx = dx + dh
    grads = {"norm1.weight": dg1, "norm1.bias": db1, "norm2.weight": dg2, "norm2.bias": db2,
             **prefixed(g_attn, "attn."), **prefixed(g_mlp, "mlp.")}
    return dx, grads
    ### END SOLUTION
