"""Affine (fully connected) layer: y = x W^T + b.

W is stored as (out, in), PyTorch's and timm's layout, so weights load unchanged.
`matmul` / `matmul_tn` are plain matrix products (minivit/parallel.py may split them
across CPU threads).
"""
from ..parallel import col_sum, matmul, matmul_tn


# --- linear: forward -------------------------------------------------------------------
def linear_forward(x, w, b=None):
    """y = x @ w.T + b

    x: (..., Din)   w: (Dout, Din)   b: (Dout,) or None   ->   y: (..., Dout)
    """
    # As ONE 2-D matmul: NumPy runs (B, N, Din) @ (Din, Dout) as B small matmuls.
    y = matmul(x.reshape(-1, x.shape[-1]), w.T)  # (..., Din) -> (M, Din) -> (M, Dout)
    if b is not None:
        y += b
    return y.reshape(*x.shape[:-1], w.shape[0]), (x, w, b is not None)   # -> (..., Dout)


# --- linear: backward ------------------------------------------------------------------
def linear_backward(dy, cache):
    """dx = dy W,   dW = dy^T x (summed over every leading axis),   db = sum of dy.

    dy: (..., Dout) -> dx: (..., Din), dw: (Dout, Din), db: (Dout,) or None
    """
    x, w, has_bias = cache
    # Flatten the leading axes: every product is ONE big matmul, dW needs no extra sum.
    dy2 = dy.reshape(-1, dy.shape[-1])  # (..., Dout) -> (M, Dout)
    x2 = x.reshape(-1, x.shape[-1])     # (..., Din)  -> (M, Din)
    dx = matmul(dy2, w).reshape(x.shape)  # (M, Din) -> (..., Din)
    dw = matmul_tn(dy2, x2)               # dy2^T x2: (Dout, M) @ (M, Din)
    db = col_sum(dy2) if has_bias else None
    return dx, dw, db
