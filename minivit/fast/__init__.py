"""The fast CPU kernel set: minivit.ops.reference's primitives, by the same names and
signatures, with faster NumPy versions of the five that dominate a training step:

    linear     one 2-D GEMM over all rows, BLAS column sums       fast/linear.py
    layernorm  chunked over cores, BLAS row/column sums            fast/layernorm.py
    gelu       chunked; float32 Phi from a fitted tanh form        fast/gelu.py
    softmax    chunked; exp without the max shift where safe       fast/softmax.py
    sdpa       contiguous layouts, the batch of heads over cores   fast/sdpa.py

Every other primitive is the reference's. Each module's docstring says what it does
differently and why; tests/test_fast_kernels.py holds every one to its reference twin.
NumPy only: on CuPy the reference kernels run (minivit/kernels.py).
"""
from ..ops.reference import (cls_pos_backward, cls_pos_forward, cross_entropy_backward,
                             cross_entropy_forward, drop_path_backward, drop_path_forward,
                             dropout_backward, dropout_forward, patchify_backward,
                             patchify_forward, pool_backward, pool_forward, tanh_backward,
                             tanh_forward)
from .gelu import gelu_backward, gelu_forward
from .layernorm import layernorm_backward, layernorm_forward
from .linear import linear_backward, linear_forward
from .sdpa import sdpa_backward, sdpa_forward
from .softmax import softmax_backward, softmax_forward

NAME = "fast"
