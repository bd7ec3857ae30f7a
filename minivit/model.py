"""The Vision Transformer (Dosovitskiy et al., 2021, "An Image is Worth 16x16 Words").

    z0  = [x_class; x_p^1 E; ...; x_p^N E] + E_pos               (Eq. 1)
    z'_l = z_{l-1} + MSA(LN(z_{l-1})),  z_l = z'_l + MLP(LN(z'_l))  (Eqs. 2-3), l = 1..L
    y   = head(pool(LN(z_L)))                                     (Eq. 4)

or, with fc_norm=True (timm's layout for global_pool='avg'), the LayerNorm after pooling:

    y   = head(LN(pool(z_L)))

Parameter names and layouts are timm's, so `state_dict()` / `load_state_dict()` exchange
weights with timm / PyTorch unchanged.
"""
from collections.abc import Mapping

import numpy as np

from . import ops
from .backend import get_array_module, get_device, to_device, to_numpy
from .init import trunc_normal
from .kernels import check_kernels, select
from .nn import Block, LayerNorm, Linear, Module, Parameter, PatchEmbed, device_rng

HEADS = ("linear", "mlp")


class PreLogits(Module):
    """The pre-training head's hidden layer (Eq. 4 with an MLP head): tanh(x W^T + b)."""

    def __init__(self, dim, rng, dtype):
        self.fc = Linear(dim, dim, rng, dtype)

    def forward(self, x, kernels=ops.reference):
        y, cache = kernels.tanh_forward(self.fc(x, kernels))
        self.cache = (kernels, cache)
        return y

    def backward(self, dy):
        kernels, cache = self.cache
        return self.fc.backward(kernels.tanh_backward(dy, cache))


def _pair(v):
    return (v, v) if isinstance(v, (int, np.integer)) else tuple(v)


class ViT(Module):
    """The model. `kernels` chooses which primitive ops compute it (minivit/kernels.py):
    'reference' (minivit/ops/, the math), 'fast' (minivit/fast/, CPU only) or 'auto'
    (fast on the CPU when available, else the reference). Both give the same results to
    float round-off; the choice is not part of the model's config or checkpoints.

    fc_norm: where the final LayerNorm sits. False (default): on every token, before the
    pooling (`norm.weight/bias`; timm's layout for the [CLS] token, and timm's
    `fc_norm=False`). True: on the pooled vector, after the pooling (`fc_norm.weight/bias`,
    and no `norm.*`), which is what timm's `VisionTransformer(global_pool='avg')` builds by
    default. For 'token' pooling the two compute the same function (LN acts on each token
    on its own), only the names differ; for 'avg' they differ, since the mean of normalised
    tokens is not the normalised mean."""

    def __init__(self, img_size=32, patch_size=4, in_chans=3, num_classes=10, embed_dim=128,
                 depth=6, num_heads=4, mlp_ratio=2.0, qkv_bias=True, drop_rate=0.0,
                 attn_drop_rate=0.0, drop_path_rate=0.0, global_pool="token", head="linear",
                 gelu="none", fc_norm=False, seed=0, dtype=np.float32, device=None,
                 kernels="auto"):
        H, W = self.img_size = _pair(img_size)
        D = embed_dim
        dtype = np.dtype(dtype)
        if dtype.kind != "f" or dtype.itemsize < 4:
            raise ValueError(f"dtype must be float32 or float64, got {dtype}")
        for name, v, low in (("img_size", H, 1), ("img_size", W, 1), ("patch_size", patch_size, 1),
                             ("in_chans", in_chans, 1), ("num_classes", num_classes, 1),
                             ("embed_dim", embed_dim, 1), ("depth", depth, 0),
                             ("num_heads", num_heads, 1)):
            if isinstance(v, bool) or not isinstance(v, (int, np.integer)) or v < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {v!r}")
        if not (isinstance(mlp_ratio, (int, float)) and mlp_ratio > 0 and int(D * mlp_ratio) >= 1):
            raise ValueError(f"mlp_ratio must be a number > 0 with embed_dim * mlp_ratio >= 1 "
                             f"(the MLP's hidden width), got {mlp_ratio!r}")
        if H % patch_size or W % patch_size:
            raise ValueError(f"img_size {H}x{W} must be divisible by patch_size {patch_size}")
        if D % num_heads:
            raise ValueError(f"embed_dim {D} must be divisible by num_heads {num_heads} "
                             f"(each head gets embed_dim / num_heads dimensions)")
        if global_pool not in ops.pool.POOLS:
            raise ValueError(f"global_pool must be one of {ops.pool.POOLS}, got {global_pool!r}")
        if not isinstance(fc_norm, (bool, np.bool_)):
            raise ValueError(f"fc_norm must be True or False, got {fc_norm!r}")
        if head not in HEADS:
            raise ValueError(f"head must be one of {HEADS}, got {head!r}")
        for name, p in (("drop_rate", drop_rate), ("attn_drop_rate", attn_drop_rate),
                        ("drop_path_rate", drop_path_rate)):
            if not 0.0 <= p < 1.0:
                raise ValueError(f"{name} must be in [0, 1), got {p}")
        self.patch_size, self.in_chans, self.num_classes = patch_size, in_chans, num_classes
        self.embed_dim, self.depth, self.num_heads = D, depth, num_heads
        self.drop_rate, self.global_pool, self.head_type = drop_rate, global_pool, head
        self.fc_norm_layout = fc_norm = bool(fc_norm)
        self.dtype = dtype
        self.kernels = check_kernels(kernels)
        self.grid_size = (H // patch_size, W // patch_size)      # (gh, gw) patches
        self.num_patches = self.grid_size[0] * self.grid_size[1]
        self.config = dict(img_size=self.img_size, patch_size=patch_size, in_chans=in_chans,
                           num_classes=num_classes, embed_dim=D, depth=depth, num_heads=num_heads,
                           mlp_ratio=mlp_ratio, qkv_bias=qkv_bias, drop_rate=drop_rate,
                           attn_drop_rate=attn_drop_rate, drop_path_rate=drop_path_rate,
                           global_pool=global_pool, head=head, gelu=gelu, fc_norm=fc_norm, seed=seed,
                           dtype=dtype.name)

        rng = np.random.default_rng(seed)
        self.patch_embed = PatchEmbed(patch_size, in_chans, D, rng, dtype)
        self.cls_token = Parameter((1e-6 * rng.standard_normal((1, 1, D))).astype(dtype))
        self.pos_embed = Parameter(trunc_normal(rng, (1, self.num_patches + 1, D)).astype(dtype))
        # stochastic depth grows linearly with depth, 0 for the first block (as in timm)
        dpr = np.linspace(0.0, drop_path_rate, depth) if depth else []
        hidden = int(D * mlp_ratio)
        self.blocks = [Block(D, num_heads, hidden, rng, dtype, qkv_bias, drop_rate,
                             attn_drop_rate, float(dpr[i]), gelu) for i in range(depth)]
        # one final LayerNorm, under timm's name for where it sits
        if fc_norm:
            self.fc_norm = LayerNorm(D, dtype)          # after pooling: (B, D)
        else:
            self.norm = LayerNorm(D, dtype)             # before pooling: (B, 1+N, D)
        if head == "mlp":
            self.pre_logits = PreLogits(D, rng, dtype)
        self.head = Linear(D, num_classes, rng, dtype)

        self.to(device or get_device())
        self.kernel_set()        # kernels='fast' on a GPU is an error now, not at the first step
        self.rng = device_rng(seed + 1, self.pos_embed.data)   # dropout masks, on the device

    def to(self, device, dtype=None):
        super().to(device, dtype)
        if dtype is not None:
            self.dtype = np.dtype(dtype)
        if hasattr(self, "rng"):
            self.rng = device_rng(self.config["seed"] + 1, self.pos_embed.data)
        return self

    @property
    def xp(self):
        return get_array_module(self.pos_embed.data)

    def kernel_set(self):
        """The module of primitive ops this model runs on, for its current device."""
        return select(self.kernels, self.xp)

    # --- input checks ------------------------------------------------------------------
    def _check_input(self, x):
        C, (H, W) = self.in_chans, self.img_size
        want = f"(B, {C}, {H}, {W})"
        if not isinstance(x, (np.ndarray, self.xp.ndarray)) and hasattr(x, "__array__"):
            try:                # e.g. a torch tensor on the CPU: its NumPy view, no copy
                x = np.asarray(x)
            except (TypeError, ValueError, RuntimeError) as e:
                raise ValueError(f"could not convert the {type(x).__name__} input to a NumPy "
                                 f"array ({e}); pass a NumPy/CuPy array, e.g. "
                                 "tensor.detach().cpu().numpy()") from None
        if not hasattr(x, "shape") or not hasattr(x, "dtype"):
            raise ValueError(f"expected an array of shape {want}, got {type(x).__name__}")
        if x.ndim != 4:
            raise ValueError(f"expected images of shape {want}, got shape {tuple(x.shape)}")
        if np.dtype(x.dtype).kind != "f":
            raise ValueError(f"expected floating-point images, got dtype {x.dtype}; convert and "
                             "normalise first (e.g. x.astype(np.float32) / 255)")
        if x.shape[1] != C:
            raise ValueError(f"expected {C} channels, i.e. shape {want}, got shape {tuple(x.shape)}")
        if x.shape[2] % self.patch_size or x.shape[3] % self.patch_size:
            raise ValueError(f"image size {x.shape[2]}x{x.shape[3]} is not divisible by patch "
                             f"size {self.patch_size}; this model expects {want}")
        if tuple(x.shape[2:]) != (H, W):
            raise ValueError(f"this model was built for {H}x{W} images, shape {want}, "
                             f"got shape {tuple(x.shape)}")
        x = to_device(x, self._device(), self.dtype)    # one transfer/cast, if any is needed
        if not bool(self.xp.isfinite(x).all()):
            raise ValueError("input contains NaN or inf values")
        return x

    def _device(self):
        return "cpu" if self.xp is np else "cuda"

    # --- forward -----------------------------------------------------------------------
    def forward(self, x, return_attn=False):
        """x: (B, C, H, W) floats -> logits (B, num_classes).
        With return_attn=True also a list of attention maps, one (B, heads, 1+N, 1+N) per block."""
        x = self._check_input(x)
        ### BEGIN SOLUTION vit
        ### HINT: Eqs. 1-4 with the layers of __init__ and kernels k; self.cache for backward; attn maps
        train, rng, k = self.training, self.rng, self.kernel_set()
        z = self.patch_embed(x, k)                                         # (B, N, D)
        z, c_pos = k.cls_pos_forward(z, self.cls_token.data, self.pos_embed.data)  # (B, 1+N, D)
        z, c_drop0 = k.dropout_forward(z, self.drop_rate, train, rng)
        attn_maps = []
        for blk in self.blocks:
            z = blk(z, rng=rng, return_attn=return_attn, kernels=k)
            if return_attn:
                z, a = z
                attn_maps.append(a)
        if self.fc_norm_layout:
            h, c_pool = k.pool_forward(z, self.global_pool)               # (B, D)
            h = self.fc_norm(h, k)                                         # (B, D)
        else:
            z = self.norm(z, k)                                            # (B, 1+N, D)
            h, c_pool = k.pool_forward(z, self.global_pool)               # (B, D)
        if self.head_type == "mlp":
            h = self.pre_logits(h, k)
        h, c_drop1 = k.dropout_forward(h, self.drop_rate, train, rng)
        logits = self.head(h, k)                                           # (B, K)
        self.cache = (k, c_pos, c_drop0, c_pool, c_drop1)
        return (logits, attn_maps) if return_attn else logits
        ### END SOLUTION

    # --- backward ----------------------------------------------------------------------
    def backward(self, dlogits):
        """Fills .grad of every parameter (accumulating, like PyTorch) and returns dL/dx."""
        if getattr(self, "cache", None) is None:
            raise RuntimeError("backward() needs the caches of a forward() pass: call "
                               "model(x) first, then model.backward(dlogits)")
        ### BEGIN SOLUTION vit
        ### HINT: forward in reverse: each layer's backward fills its .grad; accumulate cls/pos here
        k, c_pos, c_drop0, c_pool, c_drop1 = self.cache
        dh = k.dropout_backward(self.head.backward(dlogits), c_drop1)
        if self.head_type == "mlp":
            dh = self.pre_logits.backward(dh)
        if self.fc_norm_layout:
            dz = k.pool_backward(self.fc_norm.backward(dh), c_pool)       # (B, 1+N, D)
        else:
            dz = self.norm.backward(k.pool_backward(dh, c_pool))
        for blk in reversed(self.blocks):
            dz = blk.backward(dz)
        dz = k.dropout_backward(dz, c_drop0)
        dtokens, dcls, dpos = k.cls_pos_backward(dz, c_pos)
        self.cls_token.accumulate(dcls)
        self.pos_embed.accumulate(dpos)
        return self.patch_embed.backward(dtokens)
        ### END SOLUTION

    # --- weights -----------------------------------------------------------------------
    def state_dict(self):
        """{timm name: NumPy array (host copy)} for every parameter."""
        return {name: to_numpy(p.data).copy() for name, p in self.named_parameters()}

    def grads(self):
        """{timm name: gradient} (None where no backward pass has filled it yet)."""
        return {name: p.grad for name, p in self.named_parameters()}

    def load_state_dict(self, state):
        """Load {name: array} (NumPy, CuPy or anything with __array__, e.g. torch tensors
        via .numpy()). Everything is checked before anything is changed: names, shapes, and
        that every value is finite."""
        if not isinstance(state, Mapping):
            raise TypeError(f"load_state_dict expects a mapping {{name: array}} such as "
                            f"model.state_dict(), got {type(state).__name__}")
        params = dict(self.named_parameters())
        missing = [k for k in params if k not in state]
        unexpected = [k for k in state if k not in params]
        wrong = [f"{k}: expected {params[k].data.shape}, got {tuple(np.shape(state[k]))}"
                 for k in params if k in state and tuple(np.shape(state[k])) != params[k].data.shape]
        if missing or unexpected or wrong:
            lines = []
            if missing:
                lines.append("missing keys: " + ", ".join(missing))
            if unexpected:
                lines.append("unexpected keys: " + ", ".join(unexpected))
            if wrong:
                lines.append("shape mismatch: " + "; ".join(wrong))
            # the one difference between timm's two pooling layouts: say which to build
            if "fc_norm.weight" in unexpected and "norm.weight" in missing:
                lines.append("this state dict normalises after pooling (timm's fc_norm): "
                             "build the ViT with fc_norm=True")
            if "norm.weight" in unexpected and "fc_norm.weight" in missing:
                lines.append("this state dict normalises before pooling (norm.*): build the "
                             "ViT with fc_norm=False")
            raise ValueError("state dict does not match this model:\n  " + "\n  ".join(lines))
        device = self._device()
        new = {k: to_device(np.asarray(to_numpy(state[k])), device, self.dtype) for k in params}
        bad = [k for k, v in new.items() if not bool(self.xp.isfinite(v).all())]
        if bad:
            raise ValueError("state dict holds NaN or infinite values in " + ", ".join(bad)
                             + " (from a diverged run?); load a checkpoint with finite weights")
        for k, p in params.items():
            p.data, p.grad = new[k], None
