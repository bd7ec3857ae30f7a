"""Affine (fully connected) layer: y = x W^T + b.

W is stored as (out, in), PyTorch's and timm's layout, so weights load unchanged.
"""


# --- linear: forward -------------------------------------------------------------------
def linear_forward(x, w, b=None):
    """y = x W^T + b

    x: (..., Din)   w: (Dout, Din)   b: (Dout,) or None   ->   y: (..., Dout)
    Cache: (x, w, whether there is a bias).
    """
    ### BEGIN SOLUTION linear
    ### HINT: one product with the transposed weight, plus the bias if any; cache what backward needs
    y = x @ w.T                                   # (..., Din) @ (Din, Dout) -> (..., Dout)
    if b is not None:
        y = y + b                                 # (Dout,) broadcast over every row
    return y, (x, w, b is not None)
    ### END SOLUTION


# --- linear: backward ------------------------------------------------------------------
def linear_backward(dy, cache):
    """dx = dy W,   dW = dy^T x (summed over every leading axis),   db = sum of dy.

    dy: (..., Dout) -> dx: (..., Din), dw: (Dout, Din), db: (Dout,) or None
    """
    ### BEGIN SOLUTION linear
    ### HINT: dW and db sum over every row of every leading axis: flatten those axes into one first
    x, w, has_bias = cache
    dx = dy @ w                                   # (..., Dout) @ (Dout, Din) -> (..., Din)
    dy2 = dy.reshape(-1, dy.shape[-1])            # (..., Dout) -> (M, Dout), M = all rows
    x2 = x.reshape(-1, x.shape[-1])               # (..., Din)  -> (M, Din)
    dw = dy2.T @ x2                               # (Dout, M) @ (M, Din): the sum over rows
    db = dy2.sum(axis=0) if has_bias else None    # (Dout,)
    return dx, dw, db
    ### END SOLUTION
