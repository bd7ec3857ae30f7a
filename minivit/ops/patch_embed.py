"""The linear patch embedding (ViT paper Eq. 1): x_p^i E for every patch i.

timm writes it as a Conv2d with kernel = stride = P; here it is what that convolution
computes: patchify (ops/patch.py), then one linear map of every patch, with the
convolution's weight (D, C, P, P) flattened to (D, C*P*P) in the patches' (C, P, P) order.
`kernels`: the primitive ops to call (minivit.ops.reference unless given).
"""
from . import reference


# --- patch embedding: forward ----------------------------------------------------------
def patch_embed_forward(x, w, b, patch_size, kernels=None):
    """x: (B, C, H, W), w: (D, C, P, P), b: (D,) -> tokens (B, N, D), N = (H/P) (W/P)."""
    ### BEGIN SOLUTION patch_embed
    ### HINT: patchify, then one linear map with w flattened to (D, C*P*P); cache w's shape
    k = kernels or reference
    patches, c_patch = k.patchify_forward(x, patch_size)        # (B, N, C*P*P)
    w2 = w.reshape(w.shape[0], -1)                              # (D, C, P, P) -> (D, C*P*P)
    y, c_lin = k.linear_forward(patches, w2, b)                 # (B, N, D)
    return y, (k, c_patch, c_lin, w.shape)
    ### END SOLUTION


# --- patch embedding: backward ---------------------------------------------------------
def patch_embed_backward(dy, cache):
    """dy: (B, N, D) -> dx (B, C, H, W), dw (D, C, P, P), db (D,): the linear map's
    backward pass, then patchify's."""
    ### BEGIN SOLUTION patch_embed
    ### HINT: the forward steps in reverse; dw back in the convolution's (D, C, P, P) shape
    k, c_patch, c_lin, w_shape = cache
    dpatches, dw2, db = k.linear_backward(dy, c_lin)
    return k.patchify_backward(dpatches, c_patch), dw2.reshape(w_shape), db
    ### END SOLUTION
