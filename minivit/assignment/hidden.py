"""Hidden checks: they stay with the grader (not in the student copy, never in the part's
process) and show on Gradescope after the grades are published.

Each also has a case at the size of a real ViT (ViT-Tiny on CIFAR-10), where a backward
pass computed by finite differences of the forward pass would take hours. They are
"values" checks: the grader sends inputs made from their seeds, salted with a
secret of the grading (checks.SALT: new inputs every grading, so answers recorded in one
cannot be replayed), to the part's process and compares what comes back with the same check
computed on the reference solution, in its own process. Each value's name says which case it is ("logits near 100",
"axis 0", "Dh 16"), so the feedback says where an answer goes wrong. Inputs are chosen
where wrong-but-plausible answers differ: rows with large means (LayerNorm over the wrong
axis), logits near 100 in float32 (softmax without the max shift overflows), several
head sizes (attention without 1/sqrt(Dh)); diagnoses.py names those mistakes.
"""
import numpy as np

from .checks import Rng, check, randn, salted
from .checks import secret_rng as rng
from .public import (B, BLOCK, D, GELU, LAYERNORM, LINEAR, MHSA, MLP, N, SDPA, SOFTMAX, block_params,
                     mhsa_params, mlp_part)
from .public_model import ADAMW, CLS_POS, DRIVERS, EMBED, LOSS, PATCH, POOL, vit_config


# --- linear -------------------------------------------------------------------------------
@check("linear", "forward and backward equal the reference values (float32, float64, no bias)"
       "; and at the size of a real ViT",
       hidden=True, kind="values", weight=2)
def linear_values(run):
    g, out = rng(101), {}
    for dtype in (np.float64, np.float32):
        x, w, b, dy = (randn(g, *s, dtype=dtype) for s in ((3, 4, 6), (5, 6), (5,), (3, 4, 5)))
        t = np.dtype(dtype).name
        y, cache = run(LINEAR + "forward", x, w, b)
        out[f"y ({t})"] = y
        out[f"dx ({t})"], out[f"dw ({t})"], out[f"db ({t})"] = run(LINEAR + "backward", dy, cache)
    y, cache = run(LINEAR + "forward", x[0], w)
    out["y (2-D x, no bias)"] = y
    out["dx (2-D x, no bias)"], out["dw (2-D x, no bias)"], out["db (2-D x, no bias)"] = \
        run(LINEAR + "backward", dy[0], cache)
    y, cache = run(LINEAR + "forward", randn(g, B, N, D), randn(g, D, D, scale=D ** -0.5), randn(g, D))
    out["y (ViT size)"] = y
    out["dx (ViT size)"], out["dw (ViT size)"], out["db (ViT size)"] = \
        run(LINEAR + "backward", randn(g, B, N, D), cache)
    return out


# --- layernorm ----------------------------------------------------------------------------
@check("layernorm", "forward and backward equal the reference values (rows with large means; float32, float64)"
       "; and at the size of a real ViT",
       hidden=True, kind="values", weight=2)
def layernorm_values(run):
    g, out = rng(102), {}
    for dtype in (np.float64, np.float32):
        x = (randn(g, 3, 5, 12, scale=2.0) + 10 * randn(g, 3, 5, 1)).astype(dtype)
        gamma, beta, dy = randn(g, 12, dtype=dtype), randn(g, 12, dtype=dtype), randn(g, 3, 5, 12, dtype=dtype)
        t = np.dtype(dtype).name
        y, cache = run(LAYERNORM + "forward", x, gamma, beta)
        out[f"y ({t})"] = y
        out[f"dx ({t})"], out[f"dgamma ({t})"], out[f"dbeta ({t})"] = run(LAYERNORM + "backward", dy, cache)
    y, cache = run(LAYERNORM + "forward", randn(g, B, N, D, shift=1.0), 1 + randn(g, D, scale=0.1), randn(g, D))
    out["y (ViT size)"] = y
    out["dx (ViT size)"], out["dgamma (ViT size)"], out["dbeta (ViT size)"] = \
        run(LAYERNORM + "backward", randn(g, B, N, D), cache)
    return out


# --- gelu ---------------------------------------------------------------------------------
@check("gelu", "both forms equal the reference values on [-10, 10] (float32, float64); and at the size of a real ViT",
       hidden=True, kind="values", weight=2)
def gelu_values(run):
    g, out = rng(103), {}
    x64 = np.concatenate([np.linspace(-10, 10, 81), randn(g, 40, scale=3.0)]).reshape(11, 11)
    dy64 = randn(g, 11, 11)
    for dtype in (np.float64, np.float32):
        x, dy = x64.astype(dtype), dy64.astype(dtype)
        for approximate in ("none", "tanh"):
            y, cache = run(GELU + "forward", x, approximate)
            key = f"{approximate} form, {np.dtype(dtype).name}"
            out[f"y ({key})"], out[f"dx ({key})"] = y, run(GELU + "backward", dy, cache)
    y, cache = run(GELU + "forward", randn(g, B, N, 4 * D, scale=2.0), "none")
    out["y (ViT size)"], out["dx (ViT size)"] = y, run(GELU + "backward", randn(g, B, N, 4 * D), cache)
    return out


# --- softmax ------------------------------------------------------------------------------
@check("softmax", "forward and backward equal the reference values (logits near 0 and near 100, "
       "float32 and float64, axis 1 and -1); and at the size of a real ViT", hidden=True, kind="values", weight=2)
def softmax_values(run):
    g, out = rng(104), {}
    for dtype in (np.float64, np.float32):
        for where, shift in (("logits near 0", 0.0), ("logits near 100", 95.0)):
            x = (randn(g, 2, 6, 7, scale=3.0) + shift).astype(dtype)
            dy = randn(g, 2, 6, 7, dtype=dtype)
            for axis in (-1, 1):
                y, cache = run(SOFTMAX + "forward", x, axis=axis)
                key = f"{where}, axis {axis}, {np.dtype(dtype).name}"
                out[f"y ({key})"], out[f"dx ({key})"] = y, run(SOFTMAX + "backward", dy, cache)
    y, cache = run(SOFTMAX + "forward", randn(g, B, 3, N, N, scale=3.0))
    out["y (ViT size)"], out["dx (ViT size)"] = y, run(SOFTMAX + "backward", randn(g, B, 3, N, N), cache)
    return out


# --- attention ----------------------------------------------------------------------------
@check("attention", "sdpa equals the reference values (head sizes 4 and 16; float32, float64)"
       "; and at the size of a real ViT",
       hidden=True, kind="values", weight=2)
def sdpa_values(run):
    g, out = rng(105), {}
    for dtype in (np.float64, np.float32):
        for dh in (4, 16):
            q, k, v, dy = (randn(g, 2, 3, 5, dh, dtype=dtype) for _ in range(4))
            ctx, a, cache = run(SDPA + "forward", q, k, v)
            key = f"Dh {dh}, {np.dtype(dtype).name}"
            out[f"ctx ({key})"], out[f"A ({key})"] = ctx, a
            out[f"dq ({key})"], out[f"dk ({key})"], out[f"dv ({key})"] = run(SDPA + "backward", dy, cache)
    ctx, _, cache = run(SDPA + "forward", *(randn(g, B, 3, N, D // 3) for _ in range(3)))
    out["ctx (ViT size)"] = ctx
    out["dq (ViT size)"], out["dk (ViT size)"], out["dv (ViT size)"] = \
        run(SDPA + "backward", randn(g, B, 3, N, D // 3), cache)
    return out


@check("attention", "multi-head self-attention equals the reference values (2 and 4 heads, no qkv bias)"
       "; and at the size of a real ViT",
       hidden=True, kind="values", weight=2)
def mhsa_values(run):
    g, out = rng(106), {}
    for heads, bias in ((2, True), (4, False)):
        x, p, dy = randn(g, 2, 5, 16), mhsa_params(g, 16, bias=bias), randn(g, 2, 5, 16)
        if not bias:
            p["proj.bias"] = randn(g, 16, scale=0.1)            # timm: qkv_bias=False keeps proj.bias
        y, a, cache = run(MHSA + "forward", x, p, heads, return_attn=True)
        key = f"{heads} heads" + ("" if bias else ", no qkv bias")
        out[f"out ({key})"], out[f"A ({key})"] = y, a
        dx, grads = run(MHSA + "backward", dy, cache)
        out[f"dx ({key})"] = dx
        out.update({f"d {n} ({key})": grads.get(n) for n in ("qkv.weight", "qkv.bias", "proj.weight", "proj.bias")})
    y, cache = run(MHSA + "forward", randn(g, 1, N, D), mhsa_params(g, D), 3)
    dx, grads = run(MHSA + "backward", randn(g, 1, N, D), cache)
    out.update({"out (ViT size)": y, "dx (ViT size)": dx, "d qkv.weight (ViT size)": grads.get("qkv.weight")})
    return out


@check("attention", "with attention dropout 0.25 (training, a seeded rng): equals the reference",
       hidden=True, kind="values")
def attention_dropout_values(run):
    g = rng(107)
    x, p, dy = randn(g, 2, 4, 8), mhsa_params(g, 8), randn(g, 2, 4, 8)
    y, cache = run(MHSA + "forward", x, p, 2, attn_drop=0.25, train=True, rng=Rng(salted(0)))
    dx, grads = run(MHSA + "backward", dy, cache)
    return {"out (dropout 0.25)": y, "dx (dropout 0.25)": dx, "d qkv.weight (dropout 0.25)": grads.get("qkv.weight")}


# --- block --------------------------------------------------------------------------------
@check("block", "the MLP and the block equal the reference values (float32, float64; tanh GELU)"
       "; and at the size of a real ViT",
       hidden=True, kind="values", weight=2)
def block_values(run):
    g, out = rng(108), {}
    for dtype in (np.float64, np.float32):
        t = np.dtype(dtype).name
        x, p, dy = randn(g, 2, 5, 8, dtype=dtype), block_params(g, 8, 16, dtype), randn(g, 2, 5, 8, dtype=dtype)
        mp = mlp_part(p)
        y, cache = run(MLP + "forward", x, mp)
        out[f"mlp y ({t})"] = y
        dx, grads = run(MLP + "backward", dy, cache)
        out[f"mlp dx ({t})"] = dx
        out.update({f"mlp d {n} ({t})": grads.get(n) for n in mp})
        for approximate in ("none", "tanh"):
            y, a, cache = run(BLOCK + "forward", x, p, 2, approximate=approximate, return_attn=True)
            key = f"GELU {approximate}, {t}"
            out[f"block y ({key})"], out[f"block A ({key})"] = y, a
            dx, grads = run(BLOCK + "backward", dy, cache)
            out[f"block dx ({key})"] = dx
            out.update({f"block d {n} ({key})": grads.get(n) for n in p})
    y, cache = run(BLOCK + "forward", randn(g, 1, N, D), block_params(g, D, 4 * D), 3)
    dx, grads = run(BLOCK + "backward", randn(g, 1, N, D), cache)
    out.update({"block y (ViT size)": y, "block dx (ViT size)": dx,
                "block d mlp.fc1.weight (ViT size)": grads.get("mlp.fc1.weight"),
                "block d attn.qkv.weight (ViT size)": grads.get("attn.qkv.weight")})
    return out


@check("block", "with drop path 0.5 and dropout 0.1 (training, a seeded rng): equals the reference",
       hidden=True, kind="values")
def block_drop_path_values(run):
    g = rng(109)
    x, p, dy = randn(g, 6, 4, 8), block_params(g, 8, 16), randn(g, 6, 4, 8)
    y, cache = run(BLOCK + "forward", x, p, 2, drop=0.1, drop_path=0.5, train=True, rng=Rng(salted(1)))
    dx, grads = run(BLOCK + "backward", dy, cache)
    return {"y (training)": y, "dx (training)": dx, "d norm1.weight (training)": grads.get("norm1.weight"),
            "d mlp.fc1.weight (training)": grads.get("mlp.fc1.weight")}


# --- patch_embed --------------------------------------------------------------------------
@check("patch_embed", "patchify and the patch embedding equal the reference values (8 x 12 and 32 x 32 "
       "images, patch sizes 4 and 8; float32, float64)"
       "; and at the size of a real ViT", hidden=True, kind="values", weight=2)
def patch_embed_values(run):
    g, out = rng(115), {}
    for dtype in (np.float64, np.float32):
        for (H, W), P in (((8, 12), 4), ((32, 32), 8)):
            key = f"{H} x {W}, P {P}, {np.dtype(dtype).name}"
            x, D = randn(g, 2, 3, H, W, dtype=dtype), 6
            patches, cache = run(PATCH + "patchify_forward", x, P)
            out[f"patches ({key})"] = patches
            N = (H // P) * (W // P)          # (inputs never depend on what the code returned)
            out[f"dx of patchify ({key})"] = run(PATCH + "patchify_backward", randn(g, 2, N, 3 * P * P, dtype=dtype),
                                                 cache)
            w, b = randn(g, D, 3, P, P, dtype=dtype, scale=0.1), randn(g, D, dtype=dtype)
            y, cache = run(EMBED + "forward", x, w, b, P)
            out[f"tokens ({key})"] = y
            out[f"dx ({key})"], out[f"dw ({key})"], out[f"db ({key})"] = \
                run(EMBED + "backward", randn(g, 2, N, D, dtype=dtype), cache)
    y, cache = run(EMBED + "forward", randn(g, 8, 3, 32, 32), randn(g, 192, 3, 4, 4, scale=0.1), randn(g, 192), 4)
    out["tokens (ViT size)"] = y
    out["dx (ViT size)"], out["dw (ViT size)"], out["db (ViT size)"] = run(EMBED + "backward", randn(g, 8, 64, 192),
                                                                           cache)
    return out


# --- cls_pool -----------------------------------------------------------------------------
@check("cls_pool", "[CLS] + positions and both poolings equal the reference values (float32, float64)",
       hidden=True, kind="values", weight=2)
def cls_pool_values(run):
    g, out = rng(116), {}
    for dtype in (np.float64, np.float32):
        t = np.dtype(dtype).name
        tokens, cls, pos = randn(g, 4, 9, 8, dtype=dtype), randn(g, 1, 1, 8, dtype=dtype), randn(g, 1, 10, 8, dtype=dtype)
        z, cache = run(CLS_POS + "forward", tokens, cls, pos)
        out[f"z ({t})"] = z
        out[f"dtokens ({t})"], out[f"dcls_token ({t})"], out[f"dpos_embed ({t})"] = \
            run(CLS_POS + "backward", randn(g, 4, 10, 8, dtype=dtype), cache)
        for mode in ("token", "avg"):
            y, cache = run(POOL + "forward", z, mode)
            out[f"pooled ({mode}, {t})"] = y
            out[f"dz ({mode} pooling, {t})"] = run(POOL + "backward", randn(g, 4, 8, dtype=dtype), cache)
    return out


# --- loss ---------------------------------------------------------------------------------
@check("loss", "loss and gradient equal the reference values (labels, smoothing 0.1, soft targets, logits 1000)"
       "; and at the size of a real ViT",
       hidden=True, kind="values", weight=2)
def loss_values(run):
    g, out = rng(110), {}
    soft = g.random((6, 10))
    soft /= soft.sum(axis=1, keepdims=True)
    labels = g.integers(0, 10, 6)
    for dtype in (np.float64, np.float32):
        for what, y, eps, scale in (("labels", labels, 0.0, 3.0), ("smoothing 0.1", labels, 0.1, 3.0),
                                    ("soft targets, smoothing 0.2", soft, 0.2, 3.0),
                                    ("logits near 1000, smoothing 0.1", labels, 0.1, 1000.0)):
            z = randn(g, 6, 10, dtype=dtype, scale=scale)
            loss, cache = run(LOSS + "forward", z, y, eps)
            key = f"{what}, {np.dtype(dtype).name}"
            out[f"loss ({key})"] = loss
            out[f"dlogits ({key})"] = run(LOSS + "backward", np.asarray(0.5, dtype), cache)
    loss, cache = run(LOSS + "forward", randn(g, 1024, 100, scale=3.0), g.integers(0, 100, 1024), 0.1)
    out["loss (1024 x 100 logits, smoothing 0.1)"] = loss
    out["dlogits (1024 x 100 logits, smoothing 0.1)"] = run(LOSS + "backward", np.asarray(0.5), cache)
    return out


# --- adamw --------------------------------------------------------------------------------
@check("adamw", "5 steps on 3 parameters equal the reference (weight decay 0.1, betas (0.8, 0.99))",
       hidden=True, kind="values", weight=2)
def adamw_values(run):
    g = rng(111)
    params = {"blocks.0.w": randn(g, 4, 3), "blocks.0.b": randn(g, 3), "pos_embed": randn(g, 1, 2, 3)}
    grads = [{name: randn(g, *a.shape) for name, a in params.items()} for _ in range(5)]
    out = run(ADAMW, params, grads, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)
    return {f"{name} after 5 steps": out.get(name) for name in params}


@check("adamw", "float32 parameters stay float32 and equal the reference after 3 steps",
       hidden=True, kind="values")
def adamw_float32_values(run):
    g = rng(112)
    w = randn(g, 5, 4, dtype=np.float32)
    grads = [{"w": randn(g, 5, 4, dtype=np.float32)} for _ in range(3)]
    return {"w after 3 steps (float32)": run(ADAMW, {"w": w}, grads, lr=0.1, weight_decay=0.05).get("w")}


# --- vit ----------------------------------------------------------------------------------
def _vit_values(run, cfg, x, dlogits, prefix, train=False):
    m = run(DRIVERS + "vit", cfg)
    logits, maps = run(DRIVERS + "vit_forward", m, x, train, True)
    dx, grads = run(DRIVERS + "vit_backward", m, dlogits)
    out = {f"logits ({prefix})": logits, f"dx ({prefix})": dx}
    out.update({f"attention map {i} ({prefix})": a for i, a in enumerate(maps)})
    out.update({f"d {n} ({prefix})": grads.get(n) for n in sorted(grads)})
    return out


@check("vit", "logits, attention maps and every gradient equal the reference (float64; token and avg pooling, "
       "MLP head)", hidden=True, kind="values", weight=2)
def vit_values(run):
    g, out = rng(113), {}
    for prefix, kw in (("token pooling", {}), ("avg pooling, MLP head", {"global_pool": "avg", "head": "mlp"})):
        out.update(_vit_values(run, vit_config(dtype="float64", depth=2, **kw), randn(g, 2, 3, 8, 8),
                               randn(g, 2, 10), prefix))
    return out


@check("vit", "in training mode with dropout and drop path (a seeded model, float32): equals the reference",
       hidden=True, kind="values")
def vit_train_mode_values(run):
    g = rng(114)
    cfg = vit_config(dtype="float32", depth=2, drop_rate=0.1, drop_path_rate=0.2, seed=3)
    return _vit_values(run, cfg, randn(g, 4, 3, 8, 8, dtype=np.float32), randn(g, 4, 10, dtype=np.float32),
                       "training mode", train=True)
