"""The reference ops: the math of a ViT, each op as a textbook writes it, in whole-array
NumPy/CuPy. Every one is a forward/backward pair with an explicit cache,

    out, cache = op_forward(x, ...)
    dx, ...    = op_backward(dout, cache)

each callable on its own (from a notebook, a test, or a grader). Faster CPU versions of
some primitives, with the same signatures, live beside this package in minivit/fast/.
"""
from .attention import mhsa_backward, mhsa_forward
from .block import block_backward, block_forward
from .drop_path import drop_path_backward, drop_path_forward
from .dropout import dropout_backward, dropout_forward
from .embed import cls_pos_backward, cls_pos_forward
from .erf import erf
from .gelu import gelu_backward, gelu_forward
from .layernorm import layernorm_backward, layernorm_forward
from .linear import linear_backward, linear_forward
from .loss import cross_entropy_backward, cross_entropy_forward
from .mlp import mlp_backward, mlp_forward
from .patch import patchify_backward, patchify_forward, unpatchify
from .patch_embed import patch_embed_backward, patch_embed_forward
from .pool import pool_backward, pool_forward
from .sdpa import sdpa_backward, sdpa_forward
from .softmax import softmax_backward, softmax_forward
from .tanh import tanh_backward, tanh_forward
