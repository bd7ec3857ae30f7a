"""Thin layer classes: they hold parameters (and their gradients), remember the cache of
their last forward pass, and call the functional ops to do the math: those of the kernel
set passed in (`kernels`, minivit.ops.reference unless given; see minivit/kernels.py).

Parameters are named as in timm by walking attributes: `self.attn.qkv.weight` in
`blocks[3]` is 'blocks.3.attn.qkv.weight'.
"""
import numpy as np

from . import ops
from .ops import reference
from .backend import get_array_module, to_device
from .init import trunc_normal, uniform_fan_in


class Parameter:
    """An array and its gradient (None until a backward pass fills it)."""
    __slots__ = ("data", "grad")

    def __init__(self, data):
        self.data = data
        self.grad = None

    def accumulate(self, g):
        if self.grad is None:
            self.grad = g
        else:
            self.grad += g

    def __repr__(self):
        return f"Parameter(shape={self.data.shape}, dtype={self.data.dtype})"


class Module:
    training = True

    def __call__(self, *args, **kwargs):
        return self.forward(*args, **kwargs)

    def children(self):
        """(name, module) for every direct sub-module; lists of modules count as 0, 1, ..."""
        for name, v in vars(self).items():
            if isinstance(v, Module):
                yield name, v
            elif isinstance(v, (list, tuple)) and v and all(isinstance(m, Module) for m in v):
                for i, m in enumerate(v):
                    yield f"{name}.{i}", m

    def named_parameters(self, prefix=""):
        for name, v in vars(self).items():
            if isinstance(v, Parameter):
                yield prefix + name, v
        for name, m in self.children():
            yield from m.named_parameters(f"{prefix}{name}.")

    def modules(self):
        yield self
        for _, m in self.children():
            yield from m.modules()

    def arrays(self):
        """{name: array}: the parameters in the form the functional ops take."""
        return {name: p.data for name, p in self.named_parameters()}

    def accumulate_grads(self, grads):
        """Add a {name: gradient} dict (as the *_backward ops return it) into .grad."""
        params = dict(self.named_parameters())
        for name, g in grads.items():
            params[name].accumulate(g)

    def zero_grad(self):
        for _, p in self.named_parameters():
            p.grad = None

    def train(self, mode=True):
        for m in self.modules():
            m.training = mode
        return self

    def eval(self):
        return self.train(False)

    def to(self, device, dtype=None):
        """Move (and optionally cast) every parameter to `device` ('cpu' or 'cuda')."""
        for _, p in self.named_parameters():
            p.data = to_device(p.data, device, dtype or p.data.dtype)
            p.grad = None
        return self

    def num_params(self):
        return sum(int(p.data.size) for _, p in self.named_parameters())


class Linear(Module):
    """y = x W^T + b, weight (out, in) initialised N(0, 0.02^2) truncated, bias zeros."""

    def __init__(self, d_in, d_out, rng, dtype, bias=True):
        self.weight = Parameter(trunc_normal(rng, (d_out, d_in)).astype(dtype))
        if bias:
            self.bias = Parameter(np.zeros(d_out, dtype))

    def forward(self, x, kernels=reference):
        b = self.bias.data if hasattr(self, "bias") else None
        y, cache = kernels.linear_forward(x, self.weight.data, b)
        self.cache = (kernels, cache)
        return y

    def backward(self, dy):
        kernels, cache = self.cache
        dx, dw, db = kernels.linear_backward(dy, cache)
        self.accumulate_grads({"weight": dw, "bias": db} if db is not None else {"weight": dw})
        return dx


class LayerNorm(Module):
    def __init__(self, dim, dtype):
        self.weight = Parameter(np.ones(dim, dtype))
        self.bias = Parameter(np.zeros(dim, dtype))

    def forward(self, x, kernels=reference):
        y, cache = kernels.layernorm_forward(x, self.weight.data, self.bias.data)
        self.cache = (kernels, cache)
        return y

    def backward(self, dy):
        kernels, cache = self.cache
        dx, dg, db = kernels.layernorm_backward(dy, cache)
        self.accumulate_grads({"weight": dg, "bias": db})
        return dx


class Conv2dPatch(Module):
    """Holds a Conv2d-shaped weight (D, C, P, P) and bias, as timm's patch_embed.proj."""

    def __init__(self, in_chans, dim, patch_size, rng, dtype):
        fan_in = in_chans * patch_size * patch_size
        self.weight = Parameter(uniform_fan_in(rng, (dim, in_chans, patch_size, patch_size),
                                               fan_in).astype(dtype))
        self.bias = Parameter(uniform_fan_in(rng, (dim,), fan_in).astype(dtype))


class PatchEmbed(Module):
    """Patchify, then one linear map per patch (ops.patch_embed_forward): the convolution
    with kernel = stride = P, written as a matmul. (B, C, H, W) -> (B, N, D)."""

    def __init__(self, patch_size, in_chans, dim, rng, dtype):
        self.patch_size = patch_size
        self.proj = Conv2dPatch(in_chans, dim, patch_size, rng, dtype)

    def forward(self, x, kernels=reference):
        y, self.cache = ops.patch_embed_forward(x, self.proj.weight.data, self.proj.bias.data,
                                                self.patch_size, kernels)
        return y

    def backward(self, dy):
        dx, dw, db = ops.patch_embed_backward(dy, self.cache)
        self.accumulate_grads({"proj.weight": dw, "proj.bias": db})
        return dx


class Attention(Module):
    """The parameters of multi-head self-attention (qkv, proj); Block runs the math
    (ops.mhsa_forward / mhsa_backward)."""

    def __init__(self, dim, num_heads, rng, dtype, qkv_bias=True):
        self.qkv = Linear(dim, 3 * dim, rng, dtype, bias=qkv_bias)
        self.proj = Linear(dim, dim, rng, dtype)


class Mlp(Module):
    """The parameters of the MLP (fc1, fc2); Block runs the math (ops.mlp_forward / mlp_backward)."""

    def __init__(self, dim, hidden, rng, dtype):
        self.fc1 = Linear(dim, hidden, rng, dtype)
        self.fc2 = Linear(hidden, dim, rng, dtype)


class Block(Module):
    """Pre-LN encoder block; parameters named norm1, attn.qkv, attn.proj, norm2, mlp.fc1/fc2."""

    def __init__(self, dim, num_heads, mlp_hidden, rng, dtype, qkv_bias=True, drop=0.0,
                 attn_drop=0.0, drop_path=0.0, approximate="none"):
        self.num_heads, self.drop, self.attn_drop = num_heads, drop, attn_drop
        self.drop_path, self.approximate = drop_path, approximate
        self.norm1 = LayerNorm(dim, dtype)
        self.attn = Attention(dim, num_heads, rng, dtype, qkv_bias)
        self.norm2 = LayerNorm(dim, dtype)
        self.mlp = Mlp(dim, mlp_hidden, rng, dtype)

    def forward(self, x, rng=None, return_attn=False, kernels=reference):
        y, *a, self.cache = ops.block_forward(
            x, self.arrays(), self.num_heads, drop=self.drop, attn_drop=self.attn_drop,
            drop_path=self.drop_path, train=self.training, rng=rng,
            approximate=self.approximate, return_attn=return_attn, kernels=kernels)
        return (y, a[0]) if return_attn else y

    def backward(self, dy):
        dx, grads = ops.block_backward(dy, self.cache)
        self.accumulate_grads(grads)
        return dx


def device_rng(seed, like):
    """A random Generator on the device of array `like` (for dropout masks).

    `seed` may be an int or a sequence of ints such as (seed, epoch, step): it is hashed to
    one integer by NumPy's SeedSequence, since CuPy's generators take a single int."""
    xp = get_array_module(like)
    key = int(np.random.SeedSequence(seed).generate_state(1, np.uint64)[0] >> 1)
    return xp.random.default_rng(key)
