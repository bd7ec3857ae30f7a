"""Multi-head self-attention (Vaswani et al., 2017; ViT paper Eq. 5-8 of Appendix A).

    [q, k, v] = x W_qkv^T + b_qkv                    one fused projection, split into heads
    A = softmax(q k^T / sqrt(Dh))                    (B, H, N, N) attention probabilities
    out = concat_h(A_h v_h) W_proj^T + b_proj

All heads are computed at once as a batch of matrices (B, H, ...): there is no loop over
heads or tokens (`bmm` only splits that batch across CPU cores, minivit/parallel.py).
Parameter names follow timm: qkv.weight (3D, D), qkv.bias, proj.weight (D, D), proj.bias.
"""
from ..backend import get_array_module
from ..parallel import bmm
from .dropout import dropout_backward, dropout_forward
from .linear import linear_backward, linear_forward
from .softmax import softmax_backward, softmax_forward


# --- scaled dot-product attention: forward ---------------------------------------------
def sdpa_forward(q, k, v, attn_drop=0.0, train=False, rng=None):
    """q, k, v: (B, H, N, Dh) -> ctx: (B, H, N, Dh), probabilities A: (B, H, N, N).
    Returns ctx, A (before dropout), cache."""
    xp = get_array_module(q)
    scale = q.shape[-1] ** -0.5
    q = q * scale                                  # scaling q (N x Dh) is cheaper than s (N x N)
    kt = xp.ascontiguousarray(k.swapaxes(-1, -2))  # (B, H, N, Dh) -> (B, H, Dh, N), contiguous:
    v = xp.ascontiguousarray(v)                    # BLAS runs plain (untransposed) products fastest
    s = bmm(q, kt)                                 # (B, H, N, Dh) @ (B, H, Dh, N) -> (B, H, N, N)
    a, c_soft = softmax_forward(s, axis=-1)
    a_drop, c_drop = dropout_forward(a, attn_drop, train, rng)
    ctx = bmm(a_drop, v)                           # (B, H, N, N) @ (B, H, N, Dh) -> (B, H, N, Dh)
    return ctx, a, (q, kt, v, a_drop, c_soft, c_drop, scale)


# --- scaled dot-product attention: backward --------------------------------------------
def sdpa_backward(dctx, cache):
    """Through ctx = A v:  dA = dctx v^T, dv = A^T dctx;  then softmax and s = (q scale) k^T:
    dq = ds k * scale,  dk = ds^T (q scale).  Returns dq, dk, dv, each (B, H, N, Dh)."""
    qs, kt, v, a_drop, c_soft, c_drop, scale = cache
    xp = get_array_module(dctx)
    dv = bmm(a_drop.swapaxes(-1, -2), dctx)                   # (B, H, N, N) @ (B, H, N, Dh)
    # v^T and k as contiguous copies: BLAS multiplies these thin (K = Dh) matrices ~1.6x
    # faster than through transposed views, more than paying for the copies
    vt = xp.ascontiguousarray(v.swapaxes(-1, -2))             # (B, H, N, Dh) -> (B, H, Dh, N)
    da = dropout_backward(bmm(dctx, vt), c_drop)              # (B, H, N, Dh) @ (B, H, Dh, N)
    ds = softmax_backward(da, c_soft)
    k = xp.ascontiguousarray(kt.swapaxes(-1, -2))             # (B, H, Dh, N) -> (B, H, N, Dh)
    dq = bmm(ds, k)                                           # (B, H, N, N) @ (B, H, N, Dh)
    dq *= scale
    dk = bmm(ds.swapaxes(-1, -2), qs)
    return dq, dk, dv


# --- multi-head self-attention: forward ------------------------------------------------
def mhsa_forward(x, p, num_heads, attn_drop=0.0, proj_drop=0.0, train=False, rng=None,
                 return_attn=False):
    """x: (B, N, D), p: {'qkv.weight', 'qkv.bias', 'proj.weight', 'proj.bias'} -> (B, N, D).
    Returns out, cache  (or out, A, cache with return_attn=True; A: (B, H, N, N))."""
    B, N, D = x.shape
    H = num_heads
    qkv, c_qkv = linear_forward(x, p["qkv.weight"], p.get("qkv.bias"))   # (B, N, 3D)
    qkv = qkv.reshape(B, N, 3, H, D // H)        # (B, N, 3D) -> (B, N, 3, H, Dh)
    qkv = qkv.transpose(2, 0, 3, 1, 4)           # (B, N, 3, H, Dh) -> (3, B, H, N, Dh)
    ctx, a, c_sdpa = sdpa_forward(qkv[0], qkv[1], qkv[2], attn_drop, train, rng)
    ctx = ctx.transpose(0, 2, 1, 3).reshape(B, N, D)   # (B, H, N, Dh) -> (B, N, H, Dh) -> (B, N, D)
    out, c_proj = linear_forward(ctx, p["proj.weight"], p.get("proj.bias"))
    out, c_drop = dropout_forward(out, proj_drop, train, rng)
    cache = (c_qkv, c_sdpa, c_proj, c_drop, H)
    return (out, a, cache) if return_attn else (out, cache)


# --- multi-head self-attention: backward -----------------------------------------------
def mhsa_backward(dout, cache):
    """Returns dx (B, N, D) and the gradients {'qkv.weight', 'qkv.bias', 'proj.weight',
    'proj.bias'}: every step of the forward pass, in reverse."""
    c_qkv, c_sdpa, c_proj, c_drop, H = cache
    xp = get_array_module(dout)
    B, N, D = dout.shape
    dout = dropout_backward(dout, c_drop)
    dctx, dw_proj, db_proj = linear_backward(dout, c_proj)
    dctx = dctx.reshape(B, N, H, D // H).transpose(0, 2, 1, 3)  # (B, N, D) -> (B, H, N, Dh)
    dq, dk, dv = sdpa_backward(dctx, c_sdpa)
    dqkv = xp.empty((B, N, 3, H, D // H), dtype=dout.dtype)
    for i, d in enumerate((dq, dk, dv)):             # 3 slices, not a loop over heads
        dqkv[:, :, i] = d.transpose(0, 2, 1, 3)      # (B, H, N, Dh) -> (B, N, H, Dh)
    dqkv = dqkv.reshape(B, N, 3 * D)                 # (B, N, 3, H, Dh) -> (B, N, 3D)
    dx, dw_qkv, db_qkv = linear_backward(dqkv, c_qkv)
    grads = {"qkv.weight": dw_qkv, "qkv.bias": db_qkv, "proj.weight": dw_proj, "proj.bias": db_proj}
    return dx, {k: g for k, g in grads.items() if g is not None}
