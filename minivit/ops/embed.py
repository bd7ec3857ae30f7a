"""Token sequence of the ViT (paper Eq. 1): z0 = [x_class; x_p^1 E; ...; x_p^N E] + E_pos.

A learned [CLS] token is prepended to the N patch embeddings and a learned position
embedding is added to all N + 1 tokens.
"""
from ..backend import get_array_module


# --- cls + pos: forward ----------------------------------------------------------------
def cls_pos_forward(tokens, cls_token, pos_embed):
    """tokens: (B, N, D), cls_token: (1, 1, D), pos_embed: (1, N+1, D) -> z: (B, N+1, D)"""
    xp = get_array_module(tokens)
    B, N, D = tokens.shape
    if pos_embed.shape[1] != N + 1:
        raise ValueError(f"pos_embed has {pos_embed.shape[1]} positions, need N + 1 = {N + 1}")
    ### BEGIN SOLUTION cls_pool
    ### HINT: one (B, N+1, D) array: the cls token (broadcast over the batch) at position 0, the
    ### HINT: tokens after it; then add the position embedding to all N + 1 positions
    z = xp.empty((B, N + 1, D), dtype=tokens.dtype)
    z[:, 0] = cls_token[0]          # (1, D) broadcast over the batch
    z[:, 1:] = tokens
    z += pos_embed
    return z, None
    ### END SOLUTION


# --- cls + pos: backward ---------------------------------------------------------------
def cls_pos_backward(dz, cache):
    """The sum splits: d tokens = dz[:, 1:]; the shared cls token and position embedding
    receive the sum over the batch. Returns (dtokens, dcls_token, dpos_embed)."""
    ### BEGIN SOLUTION cls_pool
    ### HINT: parameters shared by every image get the sum over the batch, in their own shapes
    dtokens = dz[:, 1:]
    dpos = dz.sum(axis=0, keepdims=True)         # (B, N+1, D) -> (1, N+1, D)
    dcls = dpos[:, :1].copy()                    # (1, 1, D): the same sum, at position 0
    return dtokens, dcls, dpos
    ### END SOLUTION
