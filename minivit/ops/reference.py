"""The reference kernel set: every primitive op of this package, by name.

The composite ops (the MLP, multi-head self-attention, the encoder block) and the model
call their primitives through a *kernel set* such as this module, so one composition runs
on either set: this one (the math as written here, NumPy or CuPy) or minivit.fast (the
same signatures, faster on the CPU). See minivit/kernels.py for choosing one.
"""
from .drop_path import drop_path_backward, drop_path_forward
from .dropout import dropout_backward, dropout_forward
from .embed import cls_pos_backward, cls_pos_forward
from .gelu import gelu_backward, gelu_forward
from .layernorm import layernorm_backward, layernorm_forward
from .linear import linear_backward, linear_forward
from .loss import cross_entropy_backward, cross_entropy_forward
from .patch import patchify_backward, patchify_forward
from .pool import pool_backward, pool_forward
from .sdpa import sdpa_backward, sdpa_forward
from .softmax import softmax_backward, softmax_forward
from .tanh import tanh_backward, tanh_forward

NAME = "reference"
PRIMITIVES = ("patchify", "linear", "layernorm", "gelu", "softmax", "sdpa", "dropout",
              "drop_path", "cross_entropy", "tanh", "pool", "cls_pos")
