"""A ViT written with torch.nn ops and timm's parameter names: the test-only reference.

Only the tests and the benchmark (when PyTorch is installed) import this; minivit never
needs PyTorch to run.
"""
from collections import OrderedDict

import torch
import torch.nn as nn
import torch.nn.functional as F


class Attention(nn.Module):
    def __init__(self, dim, num_heads, qkv_bias):
        super().__init__()
        self.num_heads = num_heads
        self.qkv = nn.Linear(dim, 3 * dim, bias=qkv_bias)
        self.proj = nn.Linear(dim, dim)

    def forward(self, x):
        B, N, D = x.shape
        qkv = self.qkv(x).reshape(B, N, 3, self.num_heads, D // self.num_heads).permute(2, 0, 3, 1, 4)
        q, k, v = qkv.unbind(0)
        a = ((q * (q.shape[-1] ** -0.5)) @ k.transpose(-2, -1)).softmax(dim=-1)
        return self.proj((a @ v).transpose(1, 2).reshape(B, N, D))


class Mlp(nn.Module):
    def __init__(self, dim, hidden, approximate):
        super().__init__()
        self.fc1, self.act, self.fc2 = nn.Linear(dim, hidden), nn.GELU(approximate), nn.Linear(hidden, dim)

    def forward(self, x):
        return self.fc2(self.act(self.fc1(x)))


class Block(nn.Module):
    def __init__(self, dim, num_heads, hidden, qkv_bias, approximate):
        super().__init__()
        self.norm1 = nn.LayerNorm(dim, eps=1e-6)
        self.attn = Attention(dim, num_heads, qkv_bias)
        self.norm2 = nn.LayerNorm(dim, eps=1e-6)
        self.mlp = Mlp(dim, hidden, approximate)

    def forward(self, x):
        x = x + self.attn(self.norm1(x))
        return x + self.mlp(self.norm2(x))


class PatchEmbed(nn.Module):
    def __init__(self, in_chans, dim, patch_size):
        super().__init__()
        self.proj = nn.Conv2d(in_chans, dim, patch_size, stride=patch_size)

    def forward(self, x):
        return self.proj(x).flatten(2).transpose(1, 2)     # (B, D, Hp, Wp) -> (B, N, D)


class TorchViT(nn.Module):
    def __init__(self, cfg):
        super().__init__()
        H, W = cfg["img_size"]
        P, D = cfg["patch_size"], cfg["embed_dim"]
        n = (H // P) * (W // P)
        self.global_pool, self.head_type = cfg["global_pool"], cfg["head"]
        self.patch_embed = PatchEmbed(cfg["in_chans"], D, P)
        self.cls_token = nn.Parameter(torch.zeros(1, 1, D))
        self.pos_embed = nn.Parameter(torch.zeros(1, n + 1, D))
        self.blocks = nn.ModuleList([Block(D, cfg["num_heads"], int(D * cfg["mlp_ratio"]),
                                           cfg["qkv_bias"], cfg["gelu"]) for _ in range(cfg["depth"])])
        # timm: with fc_norm the final LayerNorm moves after the pooling, and `norm` becomes
        # an Identity (no parameters), so the state dict has fc_norm.* instead of norm.*
        self.use_fc_norm = cfg.get("fc_norm", False)
        self.norm = nn.Identity() if self.use_fc_norm else nn.LayerNorm(D, eps=1e-6)
        self.fc_norm = nn.LayerNorm(D, eps=1e-6) if self.use_fc_norm else nn.Identity()
        if self.head_type == "mlp":
            self.pre_logits = nn.Sequential(OrderedDict(fc=nn.Linear(D, D), act=nn.Tanh()))
        self.head = nn.Linear(D, cfg["num_classes"])

    def forward(self, x):
        x = self.patch_embed(x)
        x = torch.cat([self.cls_token.expand(x.shape[0], -1, -1), x], dim=1) + self.pos_embed
        for blk in self.blocks:
            x = blk(x)
        x = self.norm(x)
        x = x[:, 0] if self.global_pool == "token" else x[:, 1:].mean(dim=1)
        x = self.fc_norm(x)
        if self.head_type == "mlp":
            x = self.pre_logits(x)
        return self.head(x)


def from_minivit(model, dtype=torch.float64):
    """A TorchViT with the same config and weights as a minivit.ViT (strict load: names and
    shapes must match timm's exactly)."""
    ref = TorchViT(model.config).to(dtype)
    ref.load_state_dict({k: torch.from_numpy(v) for k, v in model.state_dict().items()}, strict=True)
    return ref


def cross_entropy(logits, y, label_smoothing=0.0):
    return F.cross_entropy(logits, y, label_smoothing=label_smoothing)
