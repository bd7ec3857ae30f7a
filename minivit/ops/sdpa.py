"""Scaled dot-product attention (Vaswani et al., 2017), for every head at once:

    A   = softmax(q k^T / sqrt(Dh))        (B, H, N, N): row i says where token i looks
    ctx = A v                              (B, H, N, Dh)

The heads are a batch axis (B, H, ...): there is no loop over heads or tokens.
Dividing by sqrt(Dh) keeps the scores' variance near 1 whatever the head size (q.k is a
sum of Dh products), so softmax does not saturate at initialisation.
"""
from .dropout import dropout_backward, dropout_forward
from .softmax import softmax_backward, softmax_forward


# --- scaled dot-product attention: forward ---------------------------------------------
def sdpa_forward(q, k, v, *, attn_drop=0.0, train=False, rng=None):
    """q, k, v: (B, H, N, Dh) -> ctx: (B, H, N, Dh).
    Returns ctx, the attention probabilities A (B, H, N, N; before dropout), cache."""
    ### BEGIN SOLUTION attention
    ### HINT: scores q k^T scaled by 1/sqrt(Dh), softmax over the keys, dropout on A, then A v
    scale = q.shape[-1] ** -0.5
    s = (q @ k.swapaxes(-1, -2)) * scale          # (B, H, N, Dh) @ (B, H, Dh, N) -> (B, H, N, N)
    a, c_soft = softmax_forward(s, axis=-1)
    a_drop, c_drop = dropout_forward(a, attn_drop, train, rng)
    ctx = a_drop @ v                              # (B, H, N, N) @ (B, H, N, Dh) -> (B, H, N, Dh)
    return ctx, a, (q, k, v, a_drop, c_soft, c_drop, scale)
    ### END SOLUTION


# --- scaled dot-product attention: backward --------------------------------------------
def sdpa_backward(dctx, cache):
    """Through ctx = A v:  dA = dctx v^T,  dv = A^T dctx;  then through softmax to ds, and
    through s = q k^T * scale:  dq = ds k * scale,  dk = ds^T q * scale.
    Returns dq, dk, dv, each (B, H, N, Dh)."""
    ### BEGIN SOLUTION attention
    ### HINT: through A v, dropout and softmax (their backward ops), then q k^T with its scale
    q, k, v, a_drop, c_soft, c_drop, scale = cache
    dv = a_drop.swapaxes(-1, -2) @ dctx           # (B, H, N, N) @ (B, H, N, Dh)
    da = dropout_backward(dctx @ v.swapaxes(-1, -2), c_drop)   # (B, H, N, Dh) @ (B, H, Dh, N)
    ds = softmax_backward(da, c_soft)             # (B, H, N, N)
    dq = (ds @ k) * scale                         # (B, H, N, N) @ (B, H, N, Dh)
    dk = (ds.swapaxes(-1, -2) @ q) * scale
    return dq, dk, dv
    ### END SOLUTION
