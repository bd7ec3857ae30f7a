"""From a token sequence to one vector per image.

'token': the final [CLS] token (the paper's y = LN(z_L^0));
'avg':   the mean of the patch tokens (the [CLS] token excluded, as in timm).
"""
from ..backend import get_array_module

POOLS = ("token", "avg")


# --- pool: forward ---------------------------------------------------------------------
def pool_forward(x, mode):
    """x: (B, 1+N, D) -> (B, D)"""
    if mode not in POOLS:
        raise ValueError(f"global_pool must be one of {POOLS}, got {mode!r}")
    ### BEGIN SOLUTION cls_pool
    ### HINT: 'token': the [CLS] token's row; 'avg': the mean over the patch tokens only
    if mode == "token":
        return x[:, 0], (x.shape, mode)
    return x[:, 1:].mean(axis=1), (x.shape, mode)
    ### END SOLUTION


# --- pool: backward --------------------------------------------------------------------
def pool_backward(dy, cache):
    """'token' routes the gradient to token 0; 'avg' spreads dy/N over the patch tokens."""
    shape, mode = cache
    xp = get_array_module(dy)
    ### BEGIN SOLUTION cls_pool
    ### HINT: zeros of the input's shape; the gradient goes to the tokens the forward pass read
    dx = xp.zeros(shape, dtype=dy.dtype)
    if mode == "token":
        dx[:, 0] = dy
    else:
        dx[:, 1:] = (dy / (shape[1] - 1))[:, None, :]   # (B, D) -> (B, 1, D), broadcast
    return dx
    ### END SOLUTION
