"""Multi-head self-attention (Vaswani et al., 2017; ViT paper Eqs. 5-8 of Appendix A).

    [q, k, v] = x W_qkv^T + b_qkv                    one fused projection, split into heads
    ctx_h = softmax(q_h k_h^T / sqrt(Dh)) v_h         every head at once (ops/sdpa.py)
    out = concat_h(ctx_h) W_proj^T + b_proj

Parameter names follow timm: qkv.weight (3D, D), qkv.bias, proj.weight (D, D), proj.bias.
`kernels` is the set of primitive ops to call (minivit.ops.reference unless given; see
minivit/kernels.py): the composition is the same whichever set computes the pieces.
"""
from ..backend import get_array_module
from . import reference


# --- multi-head self-attention: forward ------------------------------------------------
def mhsa_forward(x, p, num_heads, *, attn_drop=0.0, proj_drop=0.0, train=False, rng=None,
                 return_attn=False, kernels=None):
    """x: (B, N, D), p: {'qkv.weight', 'qkv.bias', 'proj.weight', 'proj.bias'} -> (B, N, D).
    Returns out, cache  (or out, A, cache with return_attn=True; A: (B, H, N, N))."""
    ### BEGIN SOLUTION attention
    ### HINT: fused qkv, split into (3, B, H, N, Dh) by reshape + transpose; primitives from k
    k = kernels or reference
    B, N, D = x.shape
    H = num_heads
    qkv, c_qkv = k.linear_forward(x, p["qkv.weight"], p.get("qkv.bias"))   # (B, N, 3D)
    qkv = qkv.reshape(B, N, 3, H, D // H)        # (B, N, 3D) -> (B, N, 3, H, Dh)
    qkv = qkv.transpose(2, 0, 3, 1, 4)           # (B, N, 3, H, Dh) -> (3, B, H, N, Dh)
    ctx, a, c_sdpa = k.sdpa_forward(qkv[0], qkv[1], qkv[2], attn_drop=attn_drop, train=train,
                                    rng=rng)
    ctx = ctx.transpose(0, 2, 1, 3).reshape(B, N, D)   # (B, H, N, Dh) -> (B, N, H, Dh) -> (B, N, D)
    out, c_proj = k.linear_forward(ctx, p["proj.weight"], p.get("proj.bias"))
    out, c_drop = k.dropout_forward(out, proj_drop, train, rng)
    cache = (k, c_qkv, c_sdpa, c_proj, c_drop, H)
    return (out, a, cache) if return_attn else (out, cache)
    ### END SOLUTION


# --- multi-head self-attention: backward -----------------------------------------------
def mhsa_backward(dout, cache):
    """Returns dx (B, N, D) and the gradients {'qkv.weight', 'qkv.bias', 'proj.weight',
    'proj.bias'}: every step of the forward pass, in reverse."""
    ### BEGIN SOLUTION attention
    ### HINT: the forward steps in reverse; dq, dk, dv back into one (B, N, 3D) array; no None
    k, c_qkv, c_sdpa, c_proj, c_drop, H = cache
    B, N, D = dout.shape
    dout = k.dropout_backward(dout, c_drop)
    dctx, dw_proj, db_proj = k.linear_backward(dout, c_proj)
    dctx = dctx.reshape(B, N, H, D // H).transpose(0, 2, 1, 3)   # (B, N, D) -> (B, H, N, Dh)
    dq, dk, dv = k.sdpa_backward(dctx, c_sdpa)
    dqkv = get_array_module(dout).empty((B, N, 3, H, D // H), dtype=dout.dtype)
    for i, d in enumerate((dq, dk, dv)):             # 3 slices, not a loop over heads
        dqkv[:, :, i] = d.transpose(0, 2, 1, 3)      # (B, H, N, Dh) -> (B, N, H, Dh)
    dqkv = dqkv.reshape(B, N, 3 * D)                 # (B, N, 3, H, Dh) -> (B, N, 3D)
    dx, dw_qkv, db_qkv = k.linear_backward(dqkv, c_qkv)
    grads = {"qkv.weight": dw_qkv, "qkv.bias": db_qkv, "proj.weight": dw_proj, "proj.bias": db_proj}
    return dx, {name: g for name, g in grads.items() if g is not None}
    ### END SOLUTION
