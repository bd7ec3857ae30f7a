"""Public checks of the model-level parts: the patch embedding, the [CLS] token with the
position embedding and the pooling, the loss, AdamW and the whole ViT (the ops are in
public.py). Shipped with the student copy; the grader runs them too."""
import math

import numpy as np

from .checks import as_array, check, directional_gradcheck, expect_array, gradcheck, randn, rng
from .public import AT_SIZE, VIT_SIZE, B, D, by_hand

PATCH = "minivit.ops.patch:"
EMBED = "minivit.ops.patch_embed:patch_embed_"
CLS_POS = "minivit.ops.embed:cls_pos_"
POOL = "minivit.ops.pool:pool_"
LOSS = "minivit.ops.loss:cross_entropy_"
DRIVERS = "minivit.assignment.drivers:"


# --- patch_embed --------------------------------------------------------------------------
@check("patch_embed", "shapes and dtypes of patchify, unpatchify and the patch embedding; a 4 x 4 image "
       "worked by hand")
def patch_embed_shapes(run):
    g = rng(30)
    for dtype in (np.float32, np.float64):
        x = randn(g, 2, 3, 8, 12, dtype=dtype)                   # a 2 x 3 grid of 4 x 4 patches
        patches, cache = run(PATCH + "patchify_forward", x, 4)
        expect_array("patches", patches, (2, 6, 48), dtype)
        expect_array("dx (patchify)", run(PATCH + "patchify_backward", patches, cache), x.shape, dtype)
        w, b = randn(g, 5, 3, 4, 4, dtype=dtype), randn(g, 5, dtype=dtype)
        y, cache = run(EMBED + "forward", x, w, b, 4)
        expect_array("tokens", y, (2, 6, 5), dtype)
        dx, dw, db = run(EMBED + "backward", randn(g, 2, 6, 5, dtype=dtype), cache)
        expect_array("dx", dx, x.shape, dtype)
        expect_array("dw", dw, w.shape, dtype)
        expect_array("db", db, b.shape, dtype)
    # by hand: the image 0..15 (4 x 4, one channel) in 2 x 2 patches, each summed (w = 1) plus 0.5
    x, w = np.arange(16.0).reshape(1, 1, 4, 4), np.ones((1, 1, 2, 2))
    where = "x = 0..15 as one 4 x 4 channel, P = 2, w = ones (1, 1, 2, 2), b = [0.5]"
    y, cache = run(EMBED + "forward", x, w, np.array([0.5]), 2)
    by_hand("tokens", y, [[[10.5], [18.5], [42.5], [50.5]]], where)
    dx, dw, db = run(EMBED + "backward", np.ones((1, 4, 1)), cache)
    for name, got, want in (("dx", dx, np.ones((1, 1, 4, 4))), ("dw", dw, [[[[20.0, 24.0], [36.0, 40.0]]]]),
                            ("db", db, [4.0])):
        by_hand(name, got, want, where + ", dy = ones (1, 4, 1)")


@check("patch_embed", "patch i is the image's i-th P x P square (grid row-major), flattened in (C, P, P) "
       "order; unpatchify undoes patchify")
def patchify_order(run):
    g = rng(31)
    x = randn(g, 2, 3, 8, 12)
    patches, _ = run(PATCH + "patchify_forward", x, 4)
    expect_array("patches", patches, (2, 6, 48), np.float64)
    for i in range(6):
        r, c = divmod(i, 3)
        square = x[:, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4].reshape(2, 48)
        if not np.array_equal(patches[:, i], square):
            found = [j for j in range(6) if np.allclose(np.sort(patches[:, j], axis=1), np.sort(square, axis=1))]
            hint = (f"patch {found[0]} holds its numbers in another order: flatten each patch in (C, P, P) "
                    f"order (channel first), the layout of a Conv2d weight") if found else \
                "no patch holds its numbers: split H into (H/P, P) and W into (W/P, P) before any transpose"
            raise AssertionError(f"patch {i} (grid row {r}, column {c}) is not x[:, :, {4 * r}:{4 * r + 4}, "
                                 f"{4 * c}:{4 * c + 4}] flattened; {hint}")
    back = run(PATCH + "unpatchify", patches, 3, 8, 12, 4)
    expect_array("unpatchify(patchify(x))", back, x.shape, np.float64)
    assert np.array_equal(back, x), "unpatchify(patchify(x)) should give back x exactly"


@check("patch_embed", "the patch embedding equals the convolution with kernel = stride = P (timm's "
       "patch_embed.proj)")
def patch_embed_is_the_convolution(run):
    g = rng(32)
    x, w, b = randn(g, 2, 3, 8, 8), randn(g, 5, 3, 4, 4), randn(g, 5)
    y, _ = run(EMBED + "forward", x, w, b, 4)
    expect_array("tokens", y, (2, 4, 5), np.float64)
    for i in range(4):
        r, c = divmod(i, 2)
        conv = np.einsum("bcpq,dcpq->bd", x[:, :, 4 * r:4 * r + 4, 4 * c:4 * c + 4], w) + b
        err = np.abs(y[:, i] - conv).max()
        assert err < 1e-10, f"token {i}: off from the convolution by up to {err:.3g}"


@check("patch_embed", "gradient check in float64 (x, w, b; images of 8 x 12 pixels)" + VIT_SIZE + " (32 x 32 "
       "images)", weight=2)
def patch_embed_gradcheck(run):
    g = rng(33)
    x, w, b, dy = randn(g, 2, 3, 8, 12), randn(g, 5, 3, 4, 4), randn(g, 5), randn(g, 2, 6, 5)
    dx, dw, db = run(EMBED + "backward", dy, run(EMBED + "forward", x, w, b, 4)[1])
    f = run.local(EMBED + "forward")
    report = gradcheck(lambda: f(x, w, b, 4)[0], {"x": x, "w": w, "b": b}, {"x": dx, "w": dw, "b": db}, dy,
                       num_checks=60, label=run.label)
    x, w, b, dy = randn(g, B, 3, 32, 32), randn(g, D, 3, 4, 4, scale=0.1), randn(g, D), randn(g, B, 64, D)
    dx, dw, db = run(EMBED + "backward", dy, run(EMBED + "forward", x, w, b, 4)[1])
    return report + AT_SIZE + directional_gradcheck(lambda: f(x, w, b, 4)[0], {"x": x, "w": w, "b": b},
                                                    {"x": dx, "w": dw, "b": db}, dy, seed=310, label=run.label)


# --- cls_pool -----------------------------------------------------------------------------
@check("cls_pool", "shapes and dtypes of cls_pos and both poolings, forward and backward; backward passes "
       "worked by hand")
def cls_pool_shapes(run):
    g = rng(34)
    for dtype in (np.float32, np.float64):
        tokens, cls, pos = randn(g, 3, 4, 6, dtype=dtype), randn(g, 1, 1, 6, dtype=dtype), randn(g, 1, 5, 6, dtype=dtype)
        z, cache = run(CLS_POS + "forward", tokens, cls, pos)
        expect_array("z", z, (3, 5, 6), dtype)
        dtokens, dcls, dpos = run(CLS_POS + "backward", randn(g, 3, 5, 6, dtype=dtype), cache)
        expect_array("dtokens", dtokens, tokens.shape, dtype)
        expect_array("dcls_token", dcls, cls.shape, dtype)
        expect_array("dpos_embed", dpos, pos.shape, dtype)
        for mode in ("token", "avg"):
            y, cache = run(POOL + "forward", z, mode)
            expect_array(f"pooled ({mode})", y, (3, 6), dtype)
            expect_array(f"dz ({mode})", run(POOL + "backward", randn(g, 3, 6, dtype=dtype), cache), z.shape, dtype)
    # by hand: one image of one token (D = 2); position 0 is the [CLS] token's
    z, cache = run(CLS_POS + "forward", np.array([[[1.0, 2.0]]]), np.array([[[10.0, 20.0]]]),
                   np.array([[[0.1, 0.2], [0.3, 0.4]]]))
    where = ("tokens = [[[1, 2]]], cls_token = [[[10, 20]]], pos_embed = [[[0.1, 0.2], [0.3, 0.4]]], "
             "dz = [[[1, 2], [3, 4]]]")
    dtokens, dcls, dpos = run(CLS_POS + "backward", np.array([[[1.0, 2.0], [3.0, 4.0]]]), cache)
    for name, got, want in (("dtokens", dtokens, [[[3.0, 4.0]]]), ("dcls_token", dcls, [[[1.0, 2.0]]]),
                            ("dpos_embed", dpos, [[[1.0, 2.0], [3.0, 4.0]]])):
        by_hand(name, got, want, where)
    z = np.array([[[1.0, 2.0], [3.0, 4.0], [5.0, 6.0]]])
    for mode, want in (("token", [[[1.0, 1.0], [0.0, 0.0], [0.0, 0.0]]]),
                       ("avg", [[[0.0, 0.0], [0.5, 0.5], [0.5, 0.5]]])):
        _, cache = run(POOL + "forward", z, mode)
        by_hand(f"dz ({mode} pooling)", run(POOL + "backward", np.ones((1, 2)), cache), want,
                "z of 1 + 2 tokens, dy = [[1, 1]]")


@check("cls_pool", "z[:, 0] is the [CLS] token, z[:, 1:] the tokens, each plus its position; 'token' "
       "pooling reads z[:, 0], 'avg' the mean of the patch tokens")
def cls_pool_layout(run):
    g = rng(35)
    tokens, cls, pos = randn(g, 3, 4, 6), randn(g, 1, 1, 6), randn(g, 1, 5, 6)
    z, _ = run(CLS_POS + "forward", tokens, cls, pos)
    expect_array("z", z, (3, 5, 6), np.float64)
    for b in range(3):
        assert np.allclose(z[b, 0], cls[0, 0] + pos[0, 0]), f"z[{b}, 0] should be cls_token + pos_embed[:, 0]"
        assert np.allclose(z[b, 1:], tokens[b] + pos[0, 1:]), f"z[{b}, 1:] should be tokens[{b}] + pos_embed[:, 1:]"
    y, _ = run(POOL + "forward", z, "token")
    expect_array("pooled ('token')", y, (3, 6), np.float64)
    assert np.array_equal(y, z[:, 0]), "'token' pooling should return the [CLS] token, z[:, 0]"
    y, _ = run(POOL + "forward", z, "avg")
    expect_array("pooled ('avg')", y, (3, 6), np.float64)
    if not np.allclose(y, z[:, 1:].mean(axis=1)):
        with_cls = " (yours includes the [CLS] token, z[:, 0]; timm's does not)" \
            if np.allclose(y, z.mean(axis=1)) else ""
        raise AssertionError("'avg' pooling should return the mean of the patch tokens, z[:, 1:]" + with_cls)


@check("cls_pool", "gradient check in float64 (tokens, cls token, position embedding; both poolings)",
       weight=2)
def cls_pool_gradcheck(run):
    g = rng(36)
    tokens, cls, pos, dz = randn(g, 3, 4, 6), randn(g, 1, 1, 6), randn(g, 1, 5, 6), randn(g, 3, 5, 6)
    dtokens, dcls, dpos = run(CLS_POS + "backward", dz, run(CLS_POS + "forward", tokens, cls, pos)[1])
    f = run.local(CLS_POS + "forward")
    reports = ["cls_pos:\n" + gradcheck(lambda: f(tokens, cls, pos)[0], {"tokens": tokens, "cls_token": cls,
                                                                        "pos_embed": pos},
                                        {"tokens": dtokens, "cls_token": dcls, "pos_embed": dpos}, dz,
                                        label=run.label)]
    pool = run.local(POOL + "forward")
    for mode in ("token", "avg"):
        z, dy = randn(g, 3, 5, 6), randn(g, 3, 6)
        dzp = run(POOL + "backward", dy, run(POOL + "forward", z, mode)[1])
        reports.append(f"pool ({mode}):\n" + gradcheck(lambda: pool(z, mode)[0], {"z": z}, {"z": dzp}, dy,
                                                       label=run.label))
    return "\n".join(reports)


# --- loss ---------------------------------------------------------------------------------
@check("loss", "a 0-d loss in the logits' dtype; uniform logits give ln K; dlogits has their shape; a case "
       "worked by hand")
def loss_shapes_and_uniform(run):
    for dtype in (np.float32, np.float64):
        logits = np.zeros((4, 10), dtype)
        loss, cache = run(LOSS + "forward", logits, np.arange(4))
        loss = as_array("loss", loss)
        expect_array("loss", loss, (), dtype)
        assert abs(float(loss) - math.log(10)) < 1e-5, f"loss of uniform logits is {float(loss)}, not ln 10"
        expect_array("dlogits", run(LOSS + "backward", 1.0, cache), logits.shape, dtype)
    # by hand: logits [0, ln 3] give probabilities [1/4, 3/4]; label 1 costs -ln(3/4)
    loss, cache = run(LOSS + "forward", np.array([[0.0, math.log(3.0)]]), np.array([1]))
    by_hand("loss", as_array("loss", loss), -math.log(0.75), "logits [[0, ln 3]], label 1")
    by_hand("dlogits", run(LOSS + "backward", 1.0, cache), [[0.25, -0.25]],
            "logits [[0, ln 3]], label 1 (softmax minus one-hot, over B = 1)")


@check("loss", "gradient check in float64: labels, label smoothing 0.1, soft targets; and for 1024 x 100 "
       "logits", weight=2)
def loss_gradcheck(run):
    g = rng(19)
    f = run.local(LOSS + "forward")
    reports = []
    soft = g.random((5, 7))
    soft /= soft.sum(axis=1, keepdims=True)
    for what, y, eps in (("labels", g.integers(0, 7, 5), 0.0), ("labels, smoothing 0.1", g.integers(0, 7, 5), 0.1),
                         ("soft targets", soft, 0.0)):
        z = randn(g, 5, 7, scale=2.0)
        dz = run(LOSS + "backward", 1.0, run(LOSS + "forward", z, y, eps)[1])
        reports.append(f"{what}:\n" + gradcheck(lambda: np.asarray(f(z, y, eps)[0]), {"logits": z},
                                                {"logits": dz}, label=run.label))
    z, y = randn(g, 1024, 100, scale=2.0), g.integers(0, 100, 1024)
    dz = run(LOSS + "backward", 1.0, run(LOSS + "forward", z, y, 0.1)[1])
    return "\n".join(reports) + AT_SIZE.replace("a real ViT", "1024 x 100 logits") + directional_gradcheck(
        lambda: np.asarray(f(z, y, 0.1)[0]), {"logits": z}, {"logits": dz}, seed=311, h=1e-2, label=run.label)


@check("loss", "large logits (1000) give a finite loss and gradient; logits [1000, 0] worked by hand")
def loss_large_logits(run):
    g = rng(20)
    for dtype in (np.float32, np.float64):
        z = (randn(g, 4, 10) * 1000).astype(dtype)
        loss, cache = run(LOSS + "forward", z, np.arange(4), 0.1)
        assert np.isfinite(float(as_array("loss", loss))), (
            f"loss is {float(loss)} ({np.dtype(dtype).name}): exp(1000) overflows; work with log-softmax, "
            f"z - max(z) - log(sum(exp(z - max(z))))")
        dz = as_array("dlogits", run(LOSS + "backward", 1.0, cache))
        assert np.all(np.isfinite(dz)), "dlogits has NaN or inf"
        # by hand: probabilities [1, e^-1000] = [1, 0] to any precision; label 1 costs 1000
        loss, cache = run(LOSS + "forward", np.array([[1000.0, 0.0]], dtype), np.array([1]))
        by_hand(f"loss ({np.dtype(dtype).name})", as_array("loss", loss), 1000.0, "logits [[1000, 0]], label 1")
        by_hand(f"dlogits ({np.dtype(dtype).name})", run(LOSS + "backward", 1.0, cache), [[1.0, -1.0]],
                "logits [[1000, 0]], label 1")


# --- adamw --------------------------------------------------------------------------------
ADAMW = DRIVERS + "adamw_steps"


@check("adamw", "the first step moves every weight by lr against its gradient's sign (no decay)")
def adamw_first_step(run):
    g = rng(21)
    w0, grad = randn(g, 4, 3), randn(g, 4, 3) * 10
    w = as_array("w", run(ADAMW, {"w": w0}, [{"w": grad}], lr=0.01, weight_decay=0.0)["w"])
    assert w.shape == w0.shape and np.allclose(w - w0, -0.01 * np.sign(grad), rtol=1e-5), \
        "after one step, w - w0 should be -lr * sign(g) (bias-corrected m / sqrt(v) = g / |g|)"


@check("adamw", "decoupled weight decay: w *= 1 - lr * wd where decayed, no decay for 1-D parameters")
def adamw_decay(run):
    g = rng(22)
    w, b = randn(g, 4, 3), randn(g, 3)
    out = run(ADAMW, {"w": w, "b": b, "s": w}, [{"w": np.zeros_like(w), "b": np.zeros_like(b), "s": None}],
              lr=0.1, weight_decay=0.5)
    assert np.allclose(as_array("w", out["w"]), w * (1 - 0.1 * 0.5), rtol=1e-12), \
        "w should be scaled by 1 - lr * wd (decoupled: the decay does not go through the moments)"
    assert np.allclose(as_array("b", out["b"]), b, rtol=1e-12), "a 1-D parameter (a bias) is not decayed"
    assert np.array_equal(as_array("s", out["s"]), w), "a parameter without a gradient must not change"


@check("adamw", "minimises a quadratic: 300 steps bring w from ~5 away to within 0.05 of its minimum c")
def adamw_converges(run):
    g = rng(23)
    w0 = randn(g, 10)
    c = 1.0 + randn(g, 10, scale=0.5)             # not 0: zeroing the weights is no optimiser
    w = as_array("w", run(DRIVERS + "adamw_on_quadratic", w0, 300, c, lr=0.05, weight_decay=0.0))
    expect_array("w", w, w0.shape, np.float64)
    distance = float(np.linalg.norm(w - c))
    assert distance < 0.05, (f"||w - c|| = {distance:.3g} after 300 steps on ||w - c||^2 (from "
                             f"{float(np.linalg.norm(w0 - c)):.3g})")


# --- vit ----------------------------------------------------------------------------------
def vit_config(**kw):
    cfg = dict(img_size=8, patch_size=4, num_classes=10, embed_dim=16, depth=1, num_heads=2,
               mlp_ratio=2.0, seed=0)
    cfg.update(kw)
    return cfg


@check("vit", "logits of shape (B, 10) in float32 and float64; dx has the images' shape; a small step against "
       "the gradients lowers the loss")
def vit_shapes(run):
    g = rng(24)
    for dtype in ("float32", "float64"):
        m = run(DRIVERS + "vit", vit_config(dtype=dtype))
        x = randn(g, 3, 3, 8, 8, dtype=dtype)
        logits = run(DRIVERS + "vit_forward", m, x)
        expect_array("logits", logits, (3, 10), dtype)
        dx, grads = run(DRIVERS + "vit_backward", m, np.ones((3, 10), dtype))
        expect_array("dx", dx, x.shape, dtype)
        missing = [n for n, p in grads.items() if p is None]
        assert not missing, f"no gradient for {', '.join(missing)}"
    # the gradients point uphill: one step of gradient descent on every weight lowers the loss
    cfg, x, y = vit_config(dtype="float64"), randn(g, 4, 3, 8, 8), np.arange(4)
    loss = run.local(LOSS + "forward")
    before, cache = loss(run(DRIVERS + "vit_forward", run(DRIVERS + "vit", cfg), x), y)
    m = run(DRIVERS + "vit", cfg)
    run(DRIVERS + "vit_forward", m, x)
    _, grads = run(DRIVERS + "vit_backward", m, run.local(LOSS + "backward")(1.0, cache))
    state = run.local(DRIVERS + "vit")(cfg).state_dict()
    stepped = {n: w - 1e-3 * np.asarray(grads.get(n), np.float64) for n, w in state.items()}
    after, _ = loss(run(DRIVERS + "vit_forward", run(DRIVERS + "vit", cfg, stepped), x), y)
    assert float(after) < float(before), (f"a step of 1e-3 against the gradients did not lower the loss "
                                          f"({float(before):.6f} -> {float(after):.6f}): the forward pass should "
                                          f"depend on every weight and backward return the loss's gradients")


@check("vit", "initial loss is about ln 10 = 2.30 (10 classes, small random head), with logits that differ "
       "between images")
def vit_initial_loss(run):
    g = rng(25)
    x, y = randn(g, 32, 3, 8, 8, dtype=np.float32), g.integers(0, 10, 32)
    logits = run(DRIVERS + "vit_forward", run(DRIVERS + "vit", vit_config(embed_dim=32, depth=2)), x)
    expect_array("logits", logits, (32, 10), np.float32)
    assert float(np.abs(logits - logits[:1]).max()) > 1e-6, \
        "every image got the same logits: the forward pass should compute them from the image"
    loss = float(run.local(LOSS + "forward")(logits, y)[0])
    assert abs(loss - math.log(10)) < 0.25, f"initial loss {loss:.3f}, expected ~{math.log(10):.3f}"
    return f"initial loss {loss:.4f} (ln 10 = {math.log(10):.4f})"


@check("vit", "gradient check of the whole model in float64 (every parameter and the input; sampled elements, "
       "and random directions drawn anew for each grading)", weight=2)
def vit_gradcheck(run):
    g = rng(26)
    cfg = vit_config(dtype="float64", depth=2, global_pool="avg")
    x = randn(g, 2, 3, 8, 8)
    m = run(DRIVERS + "vit", cfg)
    logits = run(DRIVERS + "vit_forward", m, x)
    expect_array("logits", logits, (2, 10), np.float64)
    dout = randn(g, 2, 10)
    dx, grads = run(DRIVERS + "vit_backward", m, dout)
    ref = run.local(DRIVERS + "vit")(cfg)                        # the model differentiated numerically
    forward = run.local(DRIVERS + "vit_forward")
    inputs = {"input": x, **{n: p.data for n, p in ref.named_parameters()}}
    report = gradcheck(lambda: forward(ref, x), inputs, {"input": dx, **grads}, dout, tol=1e-6, num_checks=8,
                       zero_atol=1e-9, label=run.label)
    return report + "\nalong random directions:\n" + directional_gradcheck(
        lambda: forward(ref, x), inputs, {"input": dx, **grads}, dout, seed=312, label=run.label)


@check("vit", "overfits a small batch: 16 images, 80 AdamW steps, 100% training accuracy", weight=2)
def vit_overfits(run):
    g = rng(27)
    cfg = vit_config(embed_dim=32)
    x, y = randn(g, 16, 3, 8, 8, dtype=np.float32), g.integers(0, 10, 16)
    state = run(DRIVERS + "vit_fit", cfg, x, y, 80, 3e-3)
    assert isinstance(state, dict), f"training returned {type(state).__name__}, not the model's weights"
    model = run.local(DRIVERS + "vit")(cfg, state)              # evaluated where the check runs
    logits = run.local(DRIVERS + "vit_forward")(model, x)
    acc = float((logits.argmax(axis=1) == y).mean())
    loss = float(run.local(LOSS + "forward")(logits, y)[0])
    assert acc == 1.0 and loss < 0.2, f"after 80 steps: accuracy {acc:.0%}, loss {loss:.3f}"
    return f"after 80 steps: accuracy {acc:.0%}, loss {loss:.4f}"
