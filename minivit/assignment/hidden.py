"""Hidden checks: they stay with the instructor (not in the student copy) and show on
Gradescope after the grades are published.

Most are "values" checks: the student's outputs on inputs made from fixed seeds, which
the grader compares with the same function computed on the reference solution (in the
grader's own process). Inputs are chosen where wrong-but-plausible answers differ:
rows with large means (LayerNorm over the wrong axis), logits of 100 in float32 (softmax
without the max shift overflows), several head sizes (attention without 1/sqrt(Dh)).
"""
import numpy as np

from .checks import check, randn, rng
from .public import _P, _block_params, _mhsa_params, tiny_vit


# --- linear -------------------------------------------------------------------------------
@check("linear", "forward and backward equal the reference values (fixed seed; float32, float64, no bias)",
       hidden=True, kind="values", weight=2)
def linear_values():
    from minivit.ops.linear import linear_backward, linear_forward
    g, out = rng(101), {}
    for dtype in (np.float64, np.float32):
        x, w, b, dy = (randn(g, *s, dtype=dtype) for s in ((3, 4, 6), (5, 6), (5,), (3, 4, 5)))
        t = np.dtype(dtype).name
        y, cache = linear_forward(x, w, b)
        out[f"y {t}"] = y
        out[f"dx {t}"], out[f"dw {t}"], out[f"db {t}"] = linear_backward(dy, cache)
    y, cache = linear_forward(x[0], w)
    out["y 2-D no bias"] = y
    out["dx 2-D no bias"], out["dw 2-D no bias"], out["db 2-D no bias"] = linear_backward(dy[0], cache)
    return out


# --- layernorm ----------------------------------------------------------------------------
@check("layernorm", "forward and backward equal the reference values (rows with large means; float32, float64)",
       hidden=True, kind="values", weight=2)
def layernorm_values():
    from minivit.ops.layernorm import layernorm_backward, layernorm_forward
    g, out = rng(102), {}
    for dtype in (np.float64, np.float32):
        x = (randn(g, 3, 5, 12, scale=2.0) + 10 * randn(g, 3, 5, 1)).astype(dtype)
        gamma, beta, dy = randn(g, 12, dtype=dtype), randn(g, 12, dtype=dtype), randn(g, 3, 5, 12, dtype=dtype)
        t = np.dtype(dtype).name
        y, cache = layernorm_forward(x, gamma, beta)
        out[f"y {t}"] = y
        out[f"dx {t}"], out[f"dgamma {t}"], out[f"dbeta {t}"] = layernorm_backward(dy, cache)
    return out


# --- gelu ---------------------------------------------------------------------------------
@check("gelu", "both forms equal the reference values on [-10, 10] (float32, float64)",
       hidden=True, kind="values", weight=2)
def gelu_values():
    from minivit.ops.gelu import gelu_backward, gelu_forward
    g, out = rng(103), {}
    x64 = np.concatenate([np.linspace(-10, 10, 81), randn(g, 40, scale=3.0)]).reshape(11, 11)
    dy64 = randn(g, 11, 11)
    for dtype in (np.float64, np.float32):
        x, dy = x64.astype(dtype), dy64.astype(dtype)
        for approximate in ("none", "tanh"):
            y, cache = gelu_forward(x, approximate)
            key = f"{approximate} {np.dtype(dtype).name}"
            out[f"y {key}"], out[f"dx {key}"] = y, gelu_backward(dy, cache)
    return out


# --- softmax ------------------------------------------------------------------------------
@check("softmax", "forward and backward equal the reference values, logits up to 100 in float32, axis 1 and -1",
       hidden=True, kind="values", weight=2)
def softmax_values():
    from minivit.ops.softmax import softmax_backward, softmax_forward
    g, out = rng(104), {}
    for dtype in (np.float64, np.float32):
        x = (randn(g, 2, 6, 7, scale=3.0) + 95 * (g.random((2, 6, 1)) > 0.5)).astype(dtype)
        dy = randn(g, 2, 6, 7, dtype=dtype)
        for axis in (-1, 1):
            y, cache = softmax_forward(x, axis=axis)
            key = f"axis {axis} {np.dtype(dtype).name}"
            out[f"y {key}"], out[f"dx {key}"] = y, softmax_backward(dy, cache)
    return out


# --- attention ----------------------------------------------------------------------------
@check("attention", "sdpa equals the reference values (head sizes 4 and 16; float32, float64)",
       hidden=True, kind="values", weight=2)
def sdpa_values():
    from minivit.ops.sdpa import sdpa_backward, sdpa_forward
    g, out = rng(105), {}
    for dtype in (np.float64, np.float32):
        for dh in (4, 16):
            q, k, v, dy = (randn(g, 2, 3, 5, dh, dtype=dtype) for _ in range(4))
            ctx, a, cache = sdpa_forward(q, k, v)
            key = f"Dh {dh} {np.dtype(dtype).name}"
            out[f"ctx {key}"], out[f"A {key}"] = ctx, a
            out[f"dq {key}"], out[f"dk {key}"], out[f"dv {key}"] = sdpa_backward(dy, cache)
    return out


@check("attention", "multi-head self-attention equals the reference values (2 and 4 heads, no qkv bias)",
       hidden=True, kind="values", weight=2)
def mhsa_values():
    from minivit.ops.attention import mhsa_backward, mhsa_forward
    g, out = rng(106), {}
    for heads, bias in ((2, True), (4, False)):
        x, p, dy = randn(g, 2, 5, 16), _mhsa_params(g, 16, bias=bias), randn(g, 2, 5, 16)
        if not bias:
            p["proj.bias"] = randn(g, 16, scale=0.1)            # timm: qkv_bias=False keeps proj.bias
        y, a, cache = mhsa_forward(x, p, heads, return_attn=True)
        key = f"{heads} heads"
        out[f"out {key}"], out[f"A {key}"] = y, a
        dx, grads = mhsa_backward(dy, cache)
        out[f"dx {key}"] = dx
        out.update({f"d {n} {key}": grads.get(n) for n in ("qkv.weight", "qkv.bias", "proj.weight", "proj.bias")})
    return out


@check("attention", "with attention dropout 0.25 (training, fixed rng): equals the reference",
       hidden=True, kind="values")
def attention_dropout_values():
    from minivit.ops.attention import mhsa_backward, mhsa_forward
    g = rng(107)
    x, p, dy = randn(g, 2, 4, 8), _mhsa_params(g, 8), randn(g, 2, 4, 8)
    y, cache = mhsa_forward(x, p, 2, attn_drop=0.25, train=True, rng=np.random.default_rng(0))
    dx, grads = mhsa_backward(dy, cache)
    return {"out": y, "dx": dx, "d qkv.weight": grads.get("qkv.weight")}


# --- block --------------------------------------------------------------------------------
@check("block", "the MLP and the block equal the reference values (float32, float64; tanh GELU)",
       hidden=True, kind="values", weight=2)
def block_values():
    from minivit.ops.block import block_backward, block_forward
    from minivit.ops.mlp import mlp_backward, mlp_forward
    g, out = rng(108), {}
    for dtype in (np.float64, np.float32):
        t = np.dtype(dtype).name
        x, p, dy = randn(g, 2, 5, 8, dtype=dtype), _block_params(g, 8, 16, dtype), randn(g, 2, 5, 8, dtype=dtype)
        mp = {k[4:]: v for k, v in p.items() if k.startswith("mlp.")}
        y, cache = mlp_forward(x, mp)
        out[f"mlp y {t}"] = y
        dx, grads = mlp_backward(dy, cache)
        out[f"mlp dx {t}"] = dx
        out.update({f"mlp d {n} {t}": grads.get(n) for n in mp})
        for approximate in ("none", "tanh"):
            y, a, cache = block_forward(x, p, 2, approximate=approximate, return_attn=True)
            key = f"{approximate} {t}"
            out[f"block y {key}"], out[f"block A {key}"] = y, a
            dx, grads = block_backward(dy, cache)
            out[f"block dx {key}"] = dx
            out.update({f"block d {n} {key}": grads.get(n) for n in p})
    return out


@check("block", "with drop path 0.5 and dropout 0.1 (training, fixed rng): equals the reference",
       hidden=True, kind="values")
def block_drop_path_values():
    from minivit.ops.block import block_backward, block_forward
    g = rng(109)
    x, p, dy = randn(g, 6, 4, 8), _block_params(g, 8, 16), randn(g, 6, 4, 8)
    y, cache = block_forward(x, p, 2, drop=0.1, drop_path=0.5, train=True, rng=np.random.default_rng(1))
    dx, grads = block_backward(dy, cache)
    return {"y": y, "dx": dx, "d norm1.weight": grads.get("norm1.weight"),
            "d mlp.fc1.weight": grads.get("mlp.fc1.weight")}


# --- loss ---------------------------------------------------------------------------------
@check("loss", "loss and gradient equal the reference values (labels, smoothing 0.1, soft targets, logits 1000)",
       hidden=True, kind="values", weight=2)
def loss_values():
    from minivit.ops.loss import cross_entropy_backward, cross_entropy_forward
    g, out = rng(110), {}
    soft = g.random((6, 10))
    soft /= soft.sum(axis=1, keepdims=True)
    labels = g.integers(0, 10, 6)
    for dtype in (np.float64, np.float32):
        for what, y, eps, scale in (("labels", labels, 0.0, 3.0), ("smoothing", labels, 0.1, 3.0),
                                    ("soft", soft, 0.2, 3.0), ("large", labels, 0.1, 1000.0)):
            z = randn(g, 6, 10, dtype=dtype, scale=scale)
            loss, cache = cross_entropy_forward(z, y, eps)
            key = f"{what} {np.dtype(dtype).name}"
            out[f"loss {key}"] = np.asarray(loss)
            out[f"dlogits {key}"] = cross_entropy_backward(np.asarray(0.5, dtype), cache)
    return out


# --- adamw --------------------------------------------------------------------------------
@check("adamw", "5 steps on 3 parameters equal the reference (weight decay 0.1, betas (0.8, 0.99))",
       hidden=True, kind="values", weight=2)
def adamw_values():
    from minivit.optim import AdamW
    g = rng(111)
    params = [("blocks.0.w", _P(randn(g, 4, 3))), ("blocks.0.b", _P(randn(g, 3))),
              ("pos_embed", _P(randn(g, 1, 2, 3)))]
    opt = AdamW(params, lr=0.01, betas=(0.8, 0.99), eps=1e-6, weight_decay=0.1)
    grads = randn(g, 5, 4, 3), randn(g, 5, 3), randn(g, 5, 1, 2, 3)
    for step in range(5):
        for (_, p), gs in zip(params, grads):
            p.grad = gs[step].copy()
        opt.step()
    return {name: p.data for name, p in params}


@check("adamw", "float32 parameters stay float32 and equal the reference after 3 steps",
       hidden=True, kind="values")
def adamw_float32_values():
    from minivit.optim import AdamW
    g = rng(112)
    p = _P(randn(g, 5, 4, dtype=np.float32))
    opt = AdamW([("w", p)], lr=0.1, weight_decay=0.05)
    for _ in range(3):
        p.grad = randn(g, 5, 4, dtype=np.float32)
        opt.step()
    return {"w": p.data}


# --- vit ----------------------------------------------------------------------------------
def _vit_values(m, x, g, prefix):
    logits, maps = m(x, return_attn=True)
    m.zero_grad()
    dx = m.backward(randn(g, *logits.shape, dtype=logits.dtype))
    out = {f"{prefix} logits": logits, f"{prefix} dx": dx}
    out.update({f"{prefix} attention {i}": a for i, a in enumerate(maps)})
    out.update({f"{prefix} d {n}": p.grad for n, p in m.named_parameters()})
    return out


@check("vit", "logits, attention maps and every gradient equal the reference (float64; token and avg pooling, MLP head)",
       hidden=True, kind="values", weight=2)
def vit_values():
    g, out = rng(113), {}
    for prefix, kw in (("token", {}), ("avg mlp-head", {"global_pool": "avg", "head": "mlp"})):
        m = tiny_vit(dtype=np.float64, depth=2, **kw).eval()
        out.update(_vit_values(m, randn(g, 2, 3, 8, 8), g, prefix))
    return out


@check("vit", "in training mode with dropout and drop path (fixed seed, float32): equals the reference",
       hidden=True, kind="values")
def vit_train_mode_values():
    g = rng(114)
    m = tiny_vit(dtype=np.float32, depth=2, drop_rate=0.1, drop_path_rate=0.2, seed=3)
    return _vit_values(m, randn(g, 4, 3, 8, 8, dtype=np.float32), g, "train")
