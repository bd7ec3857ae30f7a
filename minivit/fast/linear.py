"""The linear layer on the CPU, faster: the same result as minivit/ops/linear.py.

What it does differently, and why:
- Every product is ONE 2-D matrix product over all rows (M = B * N): NumPy runs
  (B, N, Din) @ (Din, Dout) as B small products, which BLAS does more slowly.
- The bias is added in place, and db is ones @ dy (`col_sum`, BLAS), ~3x faster than
  dy.sum(axis=0), which adds up the rows one after another.
Cache: (x, w, whether there is a bias), as the reference's.
"""
from .parallel import col_sum


# --- linear: forward -------------------------------------------------------------------
def linear_forward(x, w, b=None):
    """As minivit.ops.linear_forward: (..., Din) -> (..., Dout)."""
    y = x.reshape(-1, x.shape[-1]) @ w.T          # (M, Din) @ (Din, Dout) -> (M, Dout)
    if b is not None:
        y += b
    return y.reshape(*x.shape[:-1], w.shape[0]), (x, w, b is not None)


# --- linear: backward ------------------------------------------------------------------
def linear_backward(dy, cache):
    """As minivit.ops.linear_backward: dx (..., Din), dw (Dout, Din), db (Dout,) or None."""
    x, w, has_bias = cache
    dy2 = dy.reshape(-1, dy.shape[-1])            # (..., Dout) -> (M, Dout)
    x2 = x.reshape(-1, x.shape[-1])               # (..., Din)  -> (M, Din)
    dx = (dy2 @ w).reshape(x.shape)               # (M, Din) -> (..., Din)
    dw = dy2.T @ x2                               # (Dout, M) @ (M, Din)
    db = col_sum(dy2) if has_bias else None
    return dx, dw, db
