"""Cutting an image into non-overlapping P x P patches ("An image is worth 16x16 words").

Each patch is flattened in (C, P, P) order, the order of a Conv2d weight (D, C, P, P), so
a linear layer with weight W.reshape(D, C*P*P) applied to these rows is exactly timm's
`patch_embed.proj` convolution with kernel = stride = P.
"""


# --- patchify: forward -----------------------------------------------------------------
def patchify_forward(x, patch_size):
    """x: (B, C, H, W) -> patches: (B, N, C*P*P), N = (H/P) (W/P), row-major over the grid."""
    B, C, H, W = x.shape
    P = patch_size
    if H % P or W % P:
        raise ValueError(f"image size {H}x{W} is not divisible by the patch size {P}")
    ### BEGIN SOLUTION patch_embed
    ### HINT: one reshape splits H and W into (grid, within-patch), one transpose brings the grid
    ### HINT: first and (C, P, P) last, one reshape flattens: no loop over patches
    Hp, Wp = H // P, W // P
    x = x.reshape(B, C, Hp, P, Wp, P)    # split H and W into (grid, within-patch)
    x = x.transpose(0, 2, 4, 1, 3, 5)    # (B, C, Hp, P, Wp, P) -> (B, Hp, Wp, C, P, P)
    out = x.reshape(B, Hp * Wp, C * P * P)  # (B, Hp, Wp, C, P, P) -> (B, N, C*P*P), copies
    return out, (B, C, H, W, P)
    ### END SOLUTION


# --- patchify: backward ----------------------------------------------------------------
def patchify_backward(dout, cache):
    """Patchify only moves numbers around, so its backward moves them back: unpatchify."""
    B, C, H, W, P = cache
    return unpatchify(dout, C, H, W, P)


def unpatchify(patches, C, H, W, patch_size):
    """patches: (B, N, C*P*P) -> images (B, C, H, W); the exact inverse of patchify."""
    ### BEGIN SOLUTION patch_embed
    ### HINT: patchify's three steps undone in reverse order (the inverse transpose, then one reshape)
    P = patch_size
    B = patches.shape[0]
    Hp, Wp = H // P, W // P
    x = patches.reshape(B, Hp, Wp, C, P, P)  # (B, N, C*P*P) -> (B, Hp, Wp, C, P, P)
    x = x.transpose(0, 3, 1, 4, 2, 5)        # -> (B, C, Hp, P, Wp, P)
    return x.reshape(B, C, H, W)             # -> (B, C, H, W), copies
    ### END SOLUTION
