"""Public checks: they ship with the student copy (run them with `python -m pytest tests/`)
and the grader runs them too. They need no reference values: shapes and dtypes, float64
gradient checks against central differences, and properties any correct answer has.

Each check imports the op it checks when it runs, so a part that does not import (a
syntax error, say) fails its own checks and nothing else.
"""
import math

import numpy as np

from .checks import check, expect_array, gradcheck, randn, rng


# --- linear -------------------------------------------------------------------------------
@check("linear", "shapes and dtypes (float32 in, float32 out; with and without a bias)")
def linear_shapes():
    from minivit.ops.linear import linear_backward, linear_forward
    g = rng(1)
    for dtype in (np.float32, np.float64):
        x, w, b = randn(g, 2, 3, 5, dtype=dtype), randn(g, 4, 5, dtype=dtype), randn(g, 4, dtype=dtype)
        y, cache = linear_forward(x, w, b)
        expect_array("y", y, (2, 3, 4), dtype)
        dx, dw, db = linear_backward(randn(g, 2, 3, 4, dtype=dtype), cache)
        expect_array("dx", dx, x.shape, dtype)
        expect_array("dw", dw, w.shape, dtype)
        expect_array("db", db, b.shape, dtype)
        y, cache = linear_forward(x, w)
        expect_array("y (no bias)", y, (2, 3, 4), dtype)
        assert linear_backward(randn(g, 2, 3, 4, dtype=dtype), cache)[2] is None, \
            "db should be None when there is no bias"


@check("linear", "gradient check in float64 (x of shape (2, 3, 5): dW sums over both leading axes)",
       weight=2)
def linear_gradcheck():
    from minivit.ops.linear import linear_backward, linear_forward
    g = rng(2)
    x, w, b, dy = randn(g, 2, 3, 5), randn(g, 4, 5), randn(g, 4), randn(g, 2, 3, 4)
    dx, dw, db = linear_backward(dy, linear_forward(x, w, b)[1])
    return gradcheck(lambda: linear_forward(x, w, b)[0], {"x": x, "w": w, "b": b},
                     {"x": dx, "w": dw, "b": db}, dy)


# --- layernorm ----------------------------------------------------------------------------
@check("layernorm", "shapes and dtypes (float32 stays float32)")
def layernorm_shapes():
    from minivit.ops.layernorm import layernorm_backward, layernorm_forward
    g = rng(3)
    for dtype in (np.float32, np.float64):
        x, gamma, beta = randn(g, 2, 3, 8, dtype=dtype), randn(g, 8, dtype=dtype), randn(g, 8, dtype=dtype)
        y, cache = layernorm_forward(x, gamma, beta)
        expect_array("y", y, x.shape, dtype)
        dx, dgamma, dbeta = layernorm_backward(randn(g, 2, 3, 8, dtype=dtype), cache)
        expect_array("dx", dx, x.shape, dtype)
        expect_array("dgamma", dgamma, (8,), dtype)
        expect_array("dbeta", dbeta, (8,), dtype)


@check("layernorm", "each row (the last axis) has mean 0 and variance 1 when gamma = 1, beta = 0")
def layernorm_normalises_rows():
    from minivit.ops.layernorm import layernorm_forward
    g = rng(4)
    x = randn(g, 4, 5, 16, scale=3.0, shift=2.0) + np.arange(5.0)[None, :, None]
    y, _ = layernorm_forward(x, np.ones(16), np.zeros(16))
    mean, var = y.mean(axis=-1), y.var(axis=-1)
    assert np.allclose(mean, 0.0, atol=1e-10), f"row means should be 0, worst {np.abs(mean).max():.3g}"
    assert np.allclose(var, 1.0, atol=1e-4), f"row variances should be ~1, worst {np.abs(var - 1).max():.3g}"


@check("layernorm", "gradient check in float64 (x, gamma, beta)", weight=2)
def layernorm_gradcheck():
    from minivit.ops.layernorm import layernorm_backward, layernorm_forward
    g = rng(5)
    x, gamma, beta, dy = randn(g, 2, 3, 8, shift=1.0), randn(g, 8), randn(g, 8), randn(g, 2, 3, 8)
    dx, dgamma, dbeta = layernorm_backward(dy, layernorm_forward(x, gamma, beta)[1])
    return gradcheck(lambda: layernorm_forward(x, gamma, beta)[0], {"x": x, "gamma": gamma, "beta": beta},
                     {"x": dx, "gamma": dgamma, "beta": dbeta}, dy)


# --- gelu ---------------------------------------------------------------------------------
@check("gelu", "shapes and dtypes, both forms; GELU(0) = 0, GELU(x) -> x and -> 0 at the tails")
def gelu_shapes_and_limits():
    from minivit.ops.gelu import gelu_backward, gelu_forward
    g = rng(6)
    for approximate in ("none", "tanh"):
        for dtype in (np.float32, np.float64):
            x = randn(g, 3, 7, dtype=dtype)
            y, cache = gelu_forward(x, approximate)
            expect_array(f"y ({approximate})", y, x.shape, dtype)
            expect_array(f"dx ({approximate})", gelu_backward(randn(g, 3, 7, dtype=dtype), cache), x.shape, dtype)
        y, _ = gelu_forward(np.array([0.0, 12.0, -12.0]), approximate)
        assert np.allclose(y, [0.0, 12.0, 0.0], atol=1e-12), f"GELU([0, 12, -12]) = {y} ({approximate})"


@check("gelu", "gradient check in float64, exact (erf) form", weight=1.5)
def gelu_gradcheck_exact():
    from minivit.ops.gelu import gelu_backward, gelu_forward
    g = rng(7)
    x, dy = randn(g, 4, 9, scale=2.0), randn(g, 4, 9)
    dx = gelu_backward(dy, gelu_forward(x, "none")[1])
    return gradcheck(lambda: gelu_forward(x, "none")[0], {"x": x}, {"x": dx}, dy)


@check("gelu", "gradient check in float64, tanh form", weight=1.5)
def gelu_gradcheck_tanh():
    from minivit.ops.gelu import gelu_backward, gelu_forward
    g = rng(8)
    x, dy = randn(g, 4, 9, scale=2.0), randn(g, 4, 9)
    dx = gelu_backward(dy, gelu_forward(x, "tanh")[1])
    return gradcheck(lambda: gelu_forward(x, "tanh")[0], {"x": x}, {"x": dx}, dy)


# --- softmax ------------------------------------------------------------------------------
@check("softmax", "shapes and dtypes; every slice along `axis` sums to 1 (axis -1 and axis 1)")
def softmax_shapes_and_sums():
    from minivit.ops.softmax import softmax_backward, softmax_forward
    g = rng(9)
    for dtype in (np.float32, np.float64):
        x = randn(g, 2, 3, 4, dtype=dtype)
        for axis in (-1, 1):
            y, cache = softmax_forward(x, axis=axis)
            expect_array("y", y, x.shape, dtype)
            assert np.allclose(y.sum(axis=axis), 1.0, atol=1e-6), f"sums along axis {axis} are not 1"
            assert (y > 0).all(), "probabilities must be positive"
            expect_array("dx", softmax_backward(randn(g, 2, 3, 4, dtype=dtype), cache), x.shape, dtype)


@check("softmax", "large logits (up to 1000, float32 and float64): finite, and unchanged by a shift")
def softmax_large_logits():
    from minivit.ops.softmax import softmax_forward
    g = rng(10)
    for dtype in (np.float32, np.float64):
        x = randn(g, 3, 6, dtype=dtype)
        y0, _ = softmax_forward(x)
        for shift in (100.0, 1000.0):
            y, _ = softmax_forward(x * 10 + dtype(shift))
            assert np.all(np.isfinite(y)), f"softmax(x + {shift:g}) has NaN or inf ({np.dtype(dtype).name})"
            y1, _ = softmax_forward(x + dtype(shift))
            assert np.allclose(y1, y0, atol=1e-5), f"softmax(x + {shift:g}) != softmax(x) ({np.dtype(dtype).name})"


@check("softmax", "gradient check in float64 (axis -1 and axis 0)", weight=2)
def softmax_gradcheck():
    from minivit.ops.softmax import softmax_backward, softmax_forward
    g = rng(11)
    reports = []
    for axis in (-1, 0):
        x, dy = randn(g, 3, 5), randn(g, 3, 5)
        dx = softmax_backward(dy, softmax_forward(x, axis=axis)[1])
        reports.append(f"axis {axis}:\n" + gradcheck(lambda: softmax_forward(x, axis=axis)[0],
                                                     {"x": x}, {"x": dx}, dy))
    return "\n".join(reports)


# --- attention ----------------------------------------------------------------------------
def _mhsa_params(g, D, dtype=np.float64, bias=True):
    p = {"qkv.weight": randn(g, 3 * D, D, dtype=dtype, scale=D ** -0.5),
         "proj.weight": randn(g, D, D, dtype=dtype, scale=D ** -0.5)}
    if bias:
        p["qkv.bias"] = randn(g, 3 * D, dtype=dtype, scale=0.1)
        p["proj.bias"] = randn(g, D, dtype=dtype, scale=0.1)
    return p


@check("attention", "shapes and dtypes of sdpa and mhsa; attention rows sum to 1")
def attention_shapes():
    from minivit.ops.attention import mhsa_backward, mhsa_forward
    from minivit.ops.sdpa import sdpa_backward, sdpa_forward
    g = rng(12)
    for dtype in (np.float32, np.float64):
        q, k, v = (randn(g, 2, 3, 5, 4, dtype=dtype) for _ in range(3))
        ctx, a, cache = sdpa_forward(q, k, v)
        expect_array("ctx", ctx, q.shape, dtype)
        expect_array("A", a, (2, 3, 5, 5), dtype)
        assert np.allclose(a.sum(axis=-1), 1.0, atol=1e-5), "rows of A should sum to 1"
        for name, d in zip(("dq", "dk", "dv"), sdpa_backward(randn(g, 2, 3, 5, 4, dtype=dtype), cache)):
            expect_array(name, d, q.shape, dtype)
        x, p = randn(g, 2, 5, 6, dtype=dtype), _mhsa_params(g, 6, dtype)
        out, a, cache = mhsa_forward(x, p, 2, return_attn=True)
        expect_array("mhsa out", out, x.shape, dtype)
        expect_array("mhsa A", a, (2, 2, 5, 5), dtype)
        out2, cache = mhsa_forward(x, p, 2)
        dx, grads = mhsa_backward(randn(g, 2, 5, 6, dtype=dtype), cache)
        expect_array("mhsa dx", dx, x.shape, dtype)
        assert set(grads) == set(p), f"mhsa gradients are for {sorted(grads)}, expected {sorted(p)}"
        for name in p:
            expect_array(f"d {name}", grads[name], p[name].shape, dtype)


@check("attention", "gradient check of sdpa in float64 (q, k, v)", weight=2)
def sdpa_gradcheck():
    from minivit.ops.sdpa import sdpa_backward, sdpa_forward
    g = rng(13)
    q, k, v, dy = (randn(g, 2, 2, 4, 3) for _ in range(4))
    dq, dk, dv = sdpa_backward(dy, sdpa_forward(q, k, v)[2])
    return gradcheck(lambda: sdpa_forward(q, k, v)[0], {"q": q, "k": k, "v": v},
                     {"q": dq, "k": dk, "v": dv}, dy)


@check("attention", "gradient check of multi-head self-attention in float64 (x and every parameter)",
       weight=2)
def mhsa_gradcheck():
    from minivit.ops.attention import mhsa_backward, mhsa_forward
    g = rng(14)
    x, p, dy = randn(g, 2, 4, 6), _mhsa_params(g, 6), randn(g, 2, 4, 6)
    dx, grads = mhsa_backward(dy, mhsa_forward(x, p, 3)[1])
    # the key bias has an exactly zero gradient (softmax ignores a constant per row)
    return gradcheck(lambda: mhsa_forward(x, p, 3)[0], {"x": x, **p}, {"x": dx, **grads}, dy,
                     num_checks=40, zero_atol=1e-9)


# --- block --------------------------------------------------------------------------------
def _block_params(g, D, hidden, dtype=np.float64):
    p = {"norm1.weight": 1 + randn(g, D, dtype=dtype, scale=0.1), "norm1.bias": randn(g, D, dtype=dtype, scale=0.1),
         "norm2.weight": 1 + randn(g, D, dtype=dtype, scale=0.1), "norm2.bias": randn(g, D, dtype=dtype, scale=0.1),
         "mlp.fc1.weight": randn(g, hidden, D, dtype=dtype, scale=D ** -0.5),
         "mlp.fc1.bias": randn(g, hidden, dtype=dtype, scale=0.1),
         "mlp.fc2.weight": randn(g, D, hidden, dtype=dtype, scale=hidden ** -0.5),
         "mlp.fc2.bias": randn(g, D, dtype=dtype, scale=0.1)}
    p.update({"attn." + k: v for k, v in _mhsa_params(g, D, dtype).items()})
    return p


@check("block", "shapes and dtypes of the MLP and the block; a gradient for every parameter")
def block_shapes():
    from minivit.ops.block import block_backward, block_forward
    from minivit.ops.mlp import mlp_backward, mlp_forward
    g = rng(15)
    for dtype in (np.float32, np.float64):
        x, p = randn(g, 2, 5, 8, dtype=dtype), _block_params(g, 8, 16, dtype)
        mp = {k[4:]: v for k, v in p.items() if k.startswith("mlp.")}
        y, cache = mlp_forward(x, mp)
        expect_array("mlp y", y, x.shape, dtype)
        dx, grads = mlp_backward(randn(g, 2, 5, 8, dtype=dtype), cache)
        expect_array("mlp dx", dx, x.shape, dtype)
        assert set(grads) == set(mp), f"mlp gradients are for {sorted(grads)}, expected {sorted(mp)}"
        y, a, cache = block_forward(x, p, 2, return_attn=True)
        expect_array("block y", y, x.shape, dtype)
        expect_array("block A", a, (2, 2, 5, 5), dtype)
        y, cache = block_forward(x, p, 2)
        dx, grads = block_backward(randn(g, 2, 5, 8, dtype=dtype), cache)
        expect_array("block dx", dx, x.shape, dtype)
        assert set(grads) == set(p), f"block gradients are for {sorted(grads)}, expected {sorted(p)}"
        for name in p:
            expect_array(f"d {name}", grads[name], p[name].shape, dtype)


@check("block", "with both branches' output layers zero the block is the identity, forward and backward")
def block_residual_identity():
    from minivit.ops.block import block_backward, block_forward
    g = rng(16)
    x, p, dy = randn(g, 2, 5, 8), _block_params(g, 8, 16), randn(g, 2, 5, 8)
    for name in ("attn.proj.weight", "attn.proj.bias", "mlp.fc2.weight", "mlp.fc2.bias"):
        p[name] = np.zeros_like(p[name])
    y, cache = block_forward(x, p, 2)
    assert np.allclose(y, x, atol=1e-12), "y should equal x: both branches add zero"
    dx, _ = block_backward(dy, cache)
    assert np.allclose(dx, dy, atol=1e-12), "dx should equal dy: the residual paths carry the gradient"


@check("block", "gradient check of the MLP in float64 (x and every parameter)")
def mlp_gradcheck():
    from minivit.ops.mlp import mlp_backward, mlp_forward
    g = rng(17)
    p = {k[4:]: v for k, v in _block_params(g, 6, 10).items() if k.startswith("mlp.")}
    x, dy = randn(g, 2, 3, 6), randn(g, 2, 3, 6)
    dx, grads = mlp_backward(dy, mlp_forward(x, p)[1])
    return gradcheck(lambda: mlp_forward(x, p)[0], {"x": x, **p}, {"x": dx, **grads}, dy, num_checks=30)


@check("block", "gradient check of the block in float64 (x and every parameter)", weight=2)
def block_gradcheck():
    from minivit.ops.block import block_backward, block_forward
    g = rng(18)
    x, p, dy = randn(g, 2, 4, 6), _block_params(g, 6, 12), randn(g, 2, 4, 6)
    dx, grads = block_backward(dy, block_forward(x, p, 2)[1])
    return gradcheck(lambda: block_forward(x, p, 2)[0], {"x": x, **p}, {"x": dx, **grads}, dy,
                     tol=1e-6, num_checks=20, zero_atol=1e-9)


# --- loss ---------------------------------------------------------------------------------
@check("loss", "a 0-d loss in the logits' dtype; uniform logits give ln K; dlogits has their shape")
def loss_shapes_and_uniform():
    from minivit.ops.loss import cross_entropy_backward, cross_entropy_forward
    for dtype in (np.float32, np.float64):
        logits = np.zeros((4, 10), dtype)
        loss, cache = cross_entropy_forward(logits, np.arange(4))
        expect_array("loss", np.asarray(loss), (), dtype)
        assert abs(float(loss) - math.log(10)) < 1e-5, f"loss of uniform logits is {float(loss)}, not ln 10"
        expect_array("dlogits", cross_entropy_backward(1.0, cache), logits.shape, dtype)


@check("loss", "gradient check in float64: labels, label smoothing 0.1, soft targets", weight=2)
def loss_gradcheck():
    from minivit.ops.loss import cross_entropy_backward, cross_entropy_forward
    g = rng(19)
    reports = []
    soft = g.random((5, 7))
    soft /= soft.sum(axis=1, keepdims=True)
    for what, y, eps in (("labels", g.integers(0, 7, 5), 0.0), ("labels, smoothing 0.1", g.integers(0, 7, 5), 0.1),
                         ("soft targets", soft, 0.0)):
        z = randn(g, 5, 7, scale=2.0)
        dz = cross_entropy_backward(1.0, cross_entropy_forward(z, y, eps)[1])
        reports.append(f"{what}:\n" + gradcheck(lambda: np.asarray(cross_entropy_forward(z, y, eps)[0]),
                                                {"logits": z}, {"logits": dz}))
    return "\n".join(reports)


@check("loss", "large logits (1000) give a finite loss and gradient")
def loss_large_logits():
    from minivit.ops.loss import cross_entropy_backward, cross_entropy_forward
    g = rng(20)
    for dtype in (np.float32, np.float64):
        z = (randn(g, 4, 10) * 1000).astype(dtype)
        loss, cache = cross_entropy_forward(z, np.arange(4), 0.1)
        assert np.isfinite(float(loss)), f"loss is {float(loss)} ({np.dtype(dtype).name})"
        assert np.all(np.isfinite(cross_entropy_backward(1.0, cache))), "dlogits has NaN or inf"


# --- adamw --------------------------------------------------------------------------------
class _P:
    """A stand-in for minivit.nn.Parameter."""

    def __init__(self, data, grad=None):
        self.data, self.grad = data, grad


@check("adamw", "the first step moves every weight by lr against its gradient's sign (no decay)")
def adamw_first_step():
    from minivit.optim import AdamW
    g = rng(21)
    w0 = randn(g, 4, 3)
    p = _P(w0.copy(), randn(g, 4, 3) * 10)
    AdamW([("w", p)], lr=0.01, weight_decay=0.0).step()
    assert np.allclose(p.data - w0, -0.01 * np.sign(p.grad), rtol=1e-5), \
        "after one step, w - w0 should be -lr * sign(g) (bias-corrected m / sqrt(v) = g / |g|)"


@check("adamw", "decoupled weight decay: w *= 1 - lr * wd where decayed, no decay for 1-D parameters")
def adamw_decay():
    from minivit.optim import AdamW
    g = rng(22)
    w, b = randn(g, 4, 3), randn(g, 3)
    pw, pb = _P(w.copy(), np.zeros_like(w)), _P(b.copy(), np.zeros_like(b))
    skipped = _P(w.copy())                                       # no gradient: untouched
    opt = AdamW([("w", pw), ("b", pb), ("s", skipped)], lr=0.1, weight_decay=0.5)
    opt.step()
    assert np.allclose(pw.data, w * (1 - 0.1 * 0.5), rtol=1e-12), "w should be scaled by 1 - lr * wd"
    assert np.allclose(pb.data, b, rtol=1e-12), "a 1-D parameter (a bias) is not decayed"
    assert np.array_equal(skipped.data, w), "a parameter without a gradient must not change"


@check("adamw", "minimises a quadratic: 300 steps bring ||w|| from ~3 below 0.05")
def adamw_converges():
    from minivit.optim import AdamW
    g = rng(23)
    p = _P(randn(g, 10))
    opt = AdamW([("w", p)], lr=0.05, weight_decay=0.0)
    for _ in range(300):
        p.grad = 2 * p.data                                      # d/dw ||w||^2
        opt.step()
    norm = float(np.linalg.norm(p.data))
    assert norm < 0.05, f"||w|| = {norm:.3g} after 300 steps"


# --- vit ----------------------------------------------------------------------------------
def tiny_vit(**kw):
    import minivit
    cfg = dict(img_size=8, patch_size=4, num_classes=10, embed_dim=16, depth=1, num_heads=2,
               mlp_ratio=2.0, seed=0, kernels="reference")
    cfg.update(kw)
    return minivit.ViT(**cfg)


@check("vit", "logits of shape (B, 10) in float32 and float64; dx has the images' shape")
def vit_shapes():
    g = rng(24)
    for dtype in (np.float32, np.float64):
        m = tiny_vit(dtype=dtype)
        x = randn(g, 3, 3, 8, 8, dtype=dtype)
        logits = m(x)
        expect_array("logits", logits, (3, 10), dtype)
        dx = m.backward(np.ones((3, 10), dtype))
        expect_array("dx", dx, x.shape, dtype)
        missing = [n for n, p in m.named_parameters() if p.grad is None]
        assert not missing, f"no gradient for {', '.join(missing)}"


@check("vit", "initial loss is about ln 10 = 2.30 (10 classes, small random head)")
def vit_initial_loss():
    from minivit.ops.loss import cross_entropy_forward
    g = rng(25)
    m = tiny_vit(embed_dim=32, depth=2)
    loss, _ = cross_entropy_forward(m(randn(g, 32, 3, 8, 8, dtype=np.float32)), g.integers(0, 10, 32))
    assert abs(float(loss) - math.log(10)) < 0.25, f"initial loss {float(loss):.3f}, expected ~{math.log(10):.3f}"
    return f"initial loss {float(loss):.4f} (ln 10 = {math.log(10):.4f})"


@check("vit", "gradient check of the whole model in float64 (every parameter and the input)", weight=2)
def vit_gradcheck():
    from minivit.gradcheck import check_module
    g = rng(26)
    m = tiny_vit(dtype=np.float64, depth=2, global_pool="avg").eval()
    x = randn(g, 2, 3, 8, 8)
    errors, _ = check_module(m, x, num_checks=8, zero_atol=1e-9)
    bad = {k: v for k, v in errors.items() if not v < 1e-6}
    report = "\n".join(f"  {k}: {v:.2e}" for k, v in errors.items())
    assert not bad, f"wrong gradient(s): {', '.join(bad)}\n{report}"
    return report


@check("vit", "overfits a small batch: 16 images, 80 AdamW steps, 100% training accuracy", weight=2)
def vit_overfits():
    from minivit.ops.loss import cross_entropy_backward, cross_entropy_forward
    from minivit.optim import AdamW
    g = rng(27)
    m = tiny_vit(embed_dim=32)
    x, y = randn(g, 16, 3, 8, 8, dtype=np.float32), g.integers(0, 10, 16)
    opt = AdamW(m.named_parameters(), lr=3e-3, weight_decay=0.0)
    for step in range(80):
        logits = m(x)
        loss, cache = cross_entropy_forward(logits, y)
        m.zero_grad()
        m.backward(cross_entropy_backward(1.0, cache))
        opt.step()
    logits = m(x)
    acc = float((logits.argmax(axis=1) == y).mean())
    loss = float(cross_entropy_forward(logits, y)[0])
    assert acc == 1.0 and loss < 0.2, f"after 80 steps: accuracy {acc:.0%}, loss {loss:.3f}"
    return f"after 80 steps: accuracy {acc:.0%}, loss {loss:.4f}"
