"""Public checks of the ops: they ship with the student copy (`python -m pytest tests/`)
and the grader runs them too. They need no reference values: shapes and dtypes, float64
gradient checks against central differences, and properties any correct answer has.
The checks of the model-level parts are in public_model.py.

Each check calls the code under test through `run` (checks.py), so a part that does not
import (a syntax error, say) fails its own checks and nothing else.
"""
import numpy as np

from .checks import check, directional_gradcheck, expect_array, gradcheck, randn, rng

LINEAR = "minivit.ops.linear:linear_"
LAYERNORM = "minivit.ops.layernorm:layernorm_"
GELU = "minivit.ops.gelu:gelu_"
SOFTMAX = "minivit.ops.softmax:softmax_"
SDPA = "minivit.ops.sdpa:sdpa_"
MHSA = "minivit.ops.attention:mhsa_"
MLP = "minivit.ops.mlp:mlp_"
BLOCK = "minivit.ops.block:block_"


B, N, D = 8, 65, 192        # a batch of a real ViT: ViT-Tiny on CIFAR-10, 4 x 4 patches + [CLS]
AT_SIZE = "\nat the size of a real ViT, along random directions (drawn anew for each grading):\n"
VIT_SIZE = "; and at the size of a real ViT"


def by_hand(name, got, want, where):
    """`got` equals a small case worked out by hand (to 1e-6)."""
    want = np.asarray(want, np.float64)
    assert got is not None and np.shape(got) == want.shape, \
        f"{name}: expected shape {want.shape} for {where}, got {None if got is None else np.shape(got)}"
    assert np.allclose(np.asarray(got, np.float64), want, atol=1e-6), \
        (f"{name} for {where}: expected {np.round(want, 7).tolist()} (worked out by hand), got "
         f"{np.asarray(got).tolist()}")


def proportional_to_exp(name, scores, p, axis, what="x"):
    """Along `axis`, p_i / p_j = exp(s_i - s_j): p is softmax(s) (whatever its scale)."""
    with np.errstate(divide="ignore", invalid="ignore"):
        logp = np.log(np.asarray(p, np.float64))
    s = np.asarray(scores, np.float64)
    if not np.allclose(logp - logp.mean(axis=axis, keepdims=True), s - s.mean(axis=axis, keepdims=True), atol=1e-4):
        raise AssertionError(f"{name} along axis {axis} should be proportional to exp({what}): the ratio of two "
                             f"entries is exp of the difference of theirs (a uniform or merely normalised "
                             f"answer is not enough)")


def names_differ(got, want):
    """What is wrong with the names of a returned dict (its own names shown only briefly: the
    grader repeats no more than a few words of what a student's code returned)."""
    if not isinstance(got, dict):
        return f"expected a dict with {', '.join(sorted(want))}, got a {type(got).__name__}"
    missing, extra = sorted(set(want) - set(got)), sorted(map(str, set(got) - set(want)))
    shown = ", ".join(repr(n[:40]) for n in extra[:3]) + (f" and {len(extra) - 3} more" if len(extra) > 3 else "")
    return "; ".join(([f"missing {', '.join(missing)}"] if missing else []) +
                     ([f"unexpected {shown}"] if extra else []))


def identity_mlp(D, hidden, dtype=np.float64):
    """MLP parameters that pass the first D features through: fc2(GELU(fc1(x))) = GELU(x)."""
    eye = np.eye(hidden, D, dtype=dtype)
    return {"fc1.weight": eye, "fc1.bias": np.zeros(hidden, dtype), "fc2.weight": eye.T.copy(),
            "fc2.bias": np.zeros(D, dtype)}


# --- linear -------------------------------------------------------------------------------
@check("linear", "shapes and dtypes (float32 in, float32 out; with and without a bias); a case worked by hand")
def linear_shapes(run):
    g = rng(1)
    for dtype in (np.float32, np.float64):
        x, w, b = randn(g, 2, 3, 5, dtype=dtype), randn(g, 4, 5, dtype=dtype), randn(g, 4, dtype=dtype)
        y, cache = run(LINEAR + "forward", x, w, b)
        expect_array("y", y, (2, 3, 4), dtype)
        dx, dw, db = run(LINEAR + "backward", randn(g, 2, 3, 4, dtype=dtype), cache)
        expect_array("dx", dx, x.shape, dtype)
        expect_array("dw", dw, w.shape, dtype)
        expect_array("db", db, b.shape, dtype)
        y, cache = run(LINEAR + "forward", x, w)
        expect_array("y (no bias)", y, (2, 3, 4), dtype)
        assert run(LINEAR + "backward", randn(g, 2, 3, 4, dtype=dtype), cache)[2] is None, \
            "db should be None when there is no bias"
    # by hand: x = [1, 2], W = [[1, 0], [0.5, -1], [2, 1]], b = [0, 1, -1], dy = [1, 0, 2]
    y, cache = run(LINEAR + "forward", np.array([[1.0, 2.0]]), np.array([[1.0, 0.0], [0.5, -1.0], [2.0, 1.0]]),
                   np.array([0.0, 1.0, -1.0]))
    by_hand("y = x W^T + b", y, [[1.0, -0.5, 3.0]], "x = [[1, 2]], W = [[1, 0], [0.5, -1], [2, 1]], b = [0, 1, -1]")
    dx, dw, db = run(LINEAR + "backward", np.array([[1.0, 0.0, 2.0]]), cache)
    for name, got, want in (("dx = dy W", dx, [[5.0, 2.0]]), ("dW = dy^T x", dw, [[1.0, 2.0], [0.0, 0.0], [2.0, 4.0]]),
                            ("db", db, [1.0, 0.0, 2.0])):
        by_hand(name, got, want, "that x, W, b and dy = [[1, 0, 2]]")


@check("linear", "gradient check in float64 (x of shape (2, 3, 5): dW sums over both leading axes)" + VIT_SIZE,
       weight=2)
def linear_gradcheck(run):
    g = rng(2)
    x, w, b, dy = randn(g, 2, 3, 5), randn(g, 4, 5), randn(g, 4), randn(g, 2, 3, 4)
    dx, dw, db = run(LINEAR + "backward", dy, run(LINEAR + "forward", x, w, b)[1])
    f = run.local(LINEAR + "forward")
    report = gradcheck(lambda: f(x, w, b)[0], {"x": x, "w": w, "b": b}, {"x": dx, "w": dw, "b": db}, dy,
                       label=run.label)
    x, w, b, dy = randn(g, B, N, D), randn(g, D, D, scale=D ** -0.5), randn(g, D), randn(g, B, N, D)
    dx, dw, db = run(LINEAR + "backward", dy, run(LINEAR + "forward", x, w, b)[1])
    return report + AT_SIZE + directional_gradcheck(lambda: f(x, w, b)[0], {"x": x, "w": w, "b": b},
                                                    {"x": dx, "w": dw, "b": db}, dy, seed=301, label=run.label)


# --- layernorm ----------------------------------------------------------------------------
@check("layernorm", "shapes and dtypes (float32 stays float32); a row worked by hand")
def layernorm_shapes(run):
    g = rng(3)
    for dtype in (np.float32, np.float64):
        x, gamma, beta = randn(g, 2, 3, 8, dtype=dtype), randn(g, 8, dtype=dtype), randn(g, 8, dtype=dtype)
        y, cache = run(LAYERNORM + "forward", x, gamma, beta)
        expect_array("y", y, x.shape, dtype)
        dx, dgamma, dbeta = run(LAYERNORM + "backward", randn(g, 2, 3, 8, dtype=dtype), cache)
        expect_array("dx", dx, x.shape, dtype)
        expect_array("dgamma", dgamma, (8,), dtype)
        expect_array("dbeta", dbeta, (8,), dtype)
    # by hand: the row [-1, 0, 1] has mean 0 and variance 2/3, so xhat = [-1, 0, 1] / sqrt(2/3 + eps)
    y, cache = run(LAYERNORM + "forward", np.array([[-1.0, 0.0, 1.0]]), np.full(3, 2.0), np.ones(3))
    where = "x = [[-1, 0, 1]], gamma = [2, 2, 2], beta = [1, 1, 1]"
    by_hand("y = gamma * xhat + beta", y, [[-1.4494879, 1.0, 3.4494879]], where)
    dx, dgamma, dbeta = run(LAYERNORM + "backward", np.array([[1.0, 0.0, 0.0]]), cache)
    for name, got, want in (("dx", dx, [[0.4082498, -0.8164960, 0.4082461]]),
                            ("dgamma", dgamma, [-1.2247440, 0.0, 0.0]), ("dbeta", dbeta, [1.0, 0.0, 0.0])):
        by_hand(name, got, want, where + ", dy = [[1, 0, 0]]")


@check("layernorm", "each row (the last axis) has mean 0 and variance 1 when gamma = 1, beta = 0")
def layernorm_normalises_rows(run):
    g = rng(4)
    x = randn(g, 4, 5, 16, scale=3.0, shift=2.0) + np.arange(5.0)[None, :, None]
    y, _ = run(LAYERNORM + "forward", x, np.ones(16), np.zeros(16))
    expect_array("y", y, x.shape, np.float64)
    mean, var = y.mean(axis=-1), y.var(axis=-1)
    if not np.allclose(mean, 0.0, atol=1e-10):
        hint = ""
        for axis in (0, 1):
            if np.allclose(y.mean(axis=axis), 0.0, atol=1e-10):
                hint = (f"; the means along axis {axis} are 0 instead: LayerNorm's statistics are over "
                        f"the last axis (each token's own features, keepdims=True), not axis {axis}")
        raise AssertionError(f"row means should be 0, worst {np.abs(mean).max():.3g}{hint}")
    assert np.allclose(var, 1.0, atol=1e-4), \
        f"row variances should be ~1, worst {var.flat[np.abs(var - 1).argmax()]:.4g} (divide by sqrt(var + eps))"


@check("layernorm", "gradient check in float64 (x, gamma, beta)" + VIT_SIZE, weight=2)
def layernorm_gradcheck(run):
    g = rng(5)
    x, gamma, beta, dy = randn(g, 2, 3, 8, shift=1.0), randn(g, 8), randn(g, 8), randn(g, 2, 3, 8)
    dx, dgamma, dbeta = run(LAYERNORM + "backward", dy, run(LAYERNORM + "forward", x, gamma, beta)[1])
    f = run.local(LAYERNORM + "forward")
    report = gradcheck(lambda: f(x, gamma, beta)[0], {"x": x, "gamma": gamma, "beta": beta},
                       {"x": dx, "gamma": dgamma, "beta": dbeta}, dy, label=run.label)
    x, gamma, beta, dy = randn(g, B, N, D, shift=1.0), 1 + randn(g, D, scale=0.1), randn(g, D), randn(g, B, N, D)
    dx, dgamma, dbeta = run(LAYERNORM + "backward", dy, run(LAYERNORM + "forward", x, gamma, beta)[1])
    return report + AT_SIZE + directional_gradcheck(lambda: f(x, gamma, beta)[0],
                                                    {"x": x, "gamma": gamma, "beta": beta},
                                                    {"x": dx, "gamma": dgamma, "beta": dbeta}, dy, seed=302,
                                                    label=run.label)


# --- gelu ---------------------------------------------------------------------------------
@check("gelu", "shapes and dtypes, both forms; GELU(0) = 0, GELU(x) -> x and -> 0 at the tails; GELU(1), GELU(-1) "
       "and the slopes there, from a table")
def gelu_shapes_and_limits(run):
    g = rng(6)
    for approximate in ("none", "tanh"):
        for dtype in (np.float32, np.float64):
            x = randn(g, 3, 7, dtype=dtype)
            y, cache = run(GELU + "forward", x, approximate)
            expect_array(f"y ({approximate})", y, x.shape, dtype)
            expect_array(f"dx ({approximate})", run(GELU + "backward", randn(g, 3, 7, dtype=dtype), cache),
                         x.shape, dtype)
        y, _ = run(GELU + "forward", np.array([0.0, 12.0, -12.0]), approximate)
        assert np.allclose(y, [0.0, 12.0, 0.0], atol=1e-12), f"GELU([0, 12, -12]) = {y} ({approximate})"
        # x * Phi(x) with the normal CDF Phi(1) = 0.8413447 (tanh form: 0.8411920); slope 0.5 at 0
        table = {"none": ([-0.1586553, 0.0, 0.8413447], [-0.0833155, 0.5, 1.0833155]),
                 "tanh": ([-0.1588080, 0.0, 0.8411920], [-0.0829641, 0.5, 1.0829641])}[approximate]
        y, cache = run(GELU + "forward", np.array([-1.0, 0.0, 1.0]), approximate)
        by_hand(f"GELU([-1, 0, 1]) ({approximate} form)", y, table[0], "the table's values")
        by_hand(f"the slope GELU'([-1, 0, 1]) ({approximate} form), dx for dy = 1",
                run(GELU + "backward", np.ones(3), cache), table[1], "the table's values")


@check("gelu", "gradient check in float64, exact (erf) form" + VIT_SIZE + " (the MLP's hidden layer)", weight=1.5)
def gelu_gradcheck_exact(run):
    g = rng(7)
    x, dy = randn(g, 4, 9, scale=2.0), randn(g, 4, 9)
    dx = run(GELU + "backward", dy, run(GELU + "forward", x, "none")[1])
    f = run.local(GELU + "forward")
    report = gradcheck(lambda: f(x, "none")[0], {"x": x}, {"x": dx}, dy, label=run.label)
    x, dy = randn(g, B, N, 4 * D, scale=2.0), randn(g, B, N, 4 * D)
    dx = run(GELU + "backward", dy, run(GELU + "forward", x, "none")[1])
    return report + AT_SIZE + directional_gradcheck(lambda: f(x, "none")[0], {"x": x}, {"x": dx}, dy, seed=303,
                                                    label=run.label)


@check("gelu", "gradient check in float64, tanh form" + VIT_SIZE + " (the MLP's hidden layer)", weight=1.5)
def gelu_gradcheck_tanh(run):
    g = rng(8)
    x, dy = randn(g, 4, 9, scale=2.0), randn(g, 4, 9)
    dx = run(GELU + "backward", dy, run(GELU + "forward", x, "tanh")[1])
    f = run.local(GELU + "forward")
    report = gradcheck(lambda: f(x, "tanh")[0], {"x": x}, {"x": dx}, dy, label=run.label)
    x, dy = randn(g, B, N, 4 * D, scale=2.0), randn(g, B, N, 4 * D)
    dx = run(GELU + "backward", dy, run(GELU + "forward", x, "tanh")[1])
    return report + AT_SIZE + directional_gradcheck(lambda: f(x, "tanh")[0], {"x": x}, {"x": dx}, dy, seed=304,
                                                    label=run.label)


# --- softmax ------------------------------------------------------------------------------
@check("softmax", "shapes and dtypes; every slice along `axis` sums to 1 (axis -1 and axis 1)")
def softmax_shapes_and_sums(run):
    g = rng(9)
    for dtype in (np.float32, np.float64):
        x = randn(g, 2, 3, 4, dtype=dtype)
        for axis in (-1, 1):
            y, cache = run(SOFTMAX + "forward", x, axis=axis)
            expect_array("y", y, x.shape, dtype)
            sums = y.sum(axis=axis)
            assert np.allclose(sums, 1.0, atol=1e-6), \
                f"sums along axis {axis} are not 1 (e.g. {sums.flat[0]:.4g}): normalise along `axis`, keepdims=True"
            assert (y > 0).all(), "probabilities must be positive"
            proportional_to_exp("y", x, y, axis)
            expect_array("dx", run(SOFTMAX + "backward", randn(g, 2, 3, 4, dtype=dtype), cache), x.shape, dtype)


@check("softmax", "large logits (up to 1000, float32 and float64): finite, and unchanged by a shift")
def softmax_large_logits(run):
    g = rng(10)
    for dtype in (np.float32, np.float64):
        x = randn(g, 3, 6, dtype=dtype)
        y0, _ = run(SOFTMAX + "forward", x)
        expect_array("softmax(x)", y0, x.shape, dtype)
        proportional_to_exp("softmax(x)", x, y0, -1)
        for shift in (100.0, 1000.0):
            y, _ = run(SOFTMAX + "forward", x * 10 + dtype(shift))
            assert np.all(np.isfinite(y)), (
                f"softmax(x + {shift:g}) has NaN or inf ({np.dtype(dtype).name}): exp({shift:g}) overflows. "
                f"Subtract the max of each slice (along `axis`, keepdims=True) before exp: it cancels in the "
                f"ratio, and the largest exponent becomes exp(0) = 1")
            y1, _ = run(SOFTMAX + "forward", x + dtype(shift))
            assert np.allclose(y1, y0, atol=1e-5), \
                f"softmax(x + {shift:g}) != softmax(x) ({np.dtype(dtype).name}): a constant shift must not matter"


@check("softmax", "gradient check in float64 (axis -1 and axis 0)" + VIT_SIZE + " (attention scores)", weight=2)
def softmax_gradcheck(run):
    g = rng(11)
    f = run.local(SOFTMAX + "forward")
    reports = []
    for axis in (-1, 0):
        x, dy = randn(g, 3, 5), randn(g, 3, 5)
        dx = run(SOFTMAX + "backward", dy, run(SOFTMAX + "forward", x, axis=axis)[1])
        reports.append(f"axis {axis}:\n" + gradcheck(lambda: f(x, axis=axis)[0], {"x": x}, {"x": dx}, dy,
                                                     label=run.label))
    x, dy = randn(g, B, 3, N, N, scale=2.0), randn(g, B, 3, N, N)
    dx = run(SOFTMAX + "backward", dy, run(SOFTMAX + "forward", x)[1])
    return "\n".join(reports) + AT_SIZE + directional_gradcheck(lambda: f(x)[0], {"x": x}, {"x": dx}, dy, seed=305,
                                                                label=run.label)


# --- attention ----------------------------------------------------------------------------
def mhsa_params(g, D, dtype=np.float64, bias=True):
    p = {"qkv.weight": randn(g, 3 * D, D, dtype=dtype, scale=D ** -0.5),
         "proj.weight": randn(g, D, D, dtype=dtype, scale=D ** -0.5)}
    if bias:
        p["qkv.bias"] = randn(g, 3 * D, dtype=dtype, scale=0.1)
        p["proj.bias"] = randn(g, D, dtype=dtype, scale=0.1)
    return p


@check("attention", "shapes and dtypes of sdpa and mhsa; A = softmax(q k^T / sqrt(Dh)) row by row, ctx = A v")
def attention_shapes(run):
    g = rng(12)
    for dtype in (np.float32, np.float64):
        q, k, v = (randn(g, 2, 3, 5, 4, dtype=dtype) for _ in range(3))
        ctx, a, cache = run(SDPA + "forward", q, k, v)
        expect_array("ctx", ctx, q.shape, dtype)
        expect_array("A", a, (2, 3, 5, 5), dtype)
        if not np.allclose(a.sum(axis=-1), 1.0, atol=1e-5):
            over = " (they sum to 1 over the queries: softmax over the last axis, the keys)" \
                if np.allclose(a.sum(axis=-2), 1.0, atol=1e-5) else ""
            raise AssertionError("rows of A should sum to 1" + over)
        scores = np.einsum("bhqd,bhkd->bhqk", q.astype(np.float64), k.astype(np.float64)) / np.sqrt(q.shape[-1])
        proportional_to_exp("A", scores, a, -1, what="q k^T / sqrt(Dh), the scaled scores")
        assert np.allclose(ctx, a.astype(np.float64) @ v, atol=1e-4), \
            "ctx should be A @ v: each query's context is the mean of the values weighted by its row of A"
        for name, d in zip(("dq", "dk", "dv"), run(SDPA + "backward", randn(g, 2, 3, 5, 4, dtype=dtype), cache)):
            expect_array(name, d, q.shape, dtype)
        x, p = randn(g, 2, 5, 6, dtype=dtype), mhsa_params(g, 6, dtype)
        out, a, cache = run(MHSA + "forward", x, p, 2, return_attn=True)
        expect_array("mhsa out", out, x.shape, dtype)
        expect_array("mhsa A", a, (2, 2, 5, 5), dtype)
        out2, cache = run(MHSA + "forward", x, p, 2)
        dx, grads = run(MHSA + "backward", randn(g, 2, 5, 6, dtype=dtype), cache)
        expect_array("mhsa dx", dx, x.shape, dtype)
        assert isinstance(grads, dict) and set(grads) == set(p), f"mhsa gradients: {names_differ(grads, p)}"
        for name in p:
            expect_array(f"d {name}", grads[name], p[name].shape, dtype)


@check("attention", "gradient check of sdpa in float64 (q, k, v)" + VIT_SIZE, weight=2)
def sdpa_gradcheck(run):
    g = rng(13)
    q, k, v, dy = (randn(g, 2, 2, 4, 3) for _ in range(4))
    dq, dk, dv = run(SDPA + "backward", dy, run(SDPA + "forward", q, k, v)[2])
    f = run.local(SDPA + "forward")
    report = gradcheck(lambda: f(q, k, v)[0], {"q": q, "k": k, "v": v}, {"q": dq, "k": dk, "v": dv}, dy,
                       label=run.label)
    q, k, v, dy = (randn(g, B, 3, N, D // 3) for _ in range(4))
    dq, dk, dv = run(SDPA + "backward", dy, run(SDPA + "forward", q, k, v)[2])
    return report + AT_SIZE + directional_gradcheck(lambda: f(q, k, v)[0], {"q": q, "k": k, "v": v},
                                                    {"q": dq, "k": dk, "v": dv}, dy, seed=306, label=run.label)


@check("attention", "gradient check of multi-head self-attention in float64 (x and every parameter)" + VIT_SIZE,
       weight=2)
def mhsa_gradcheck(run):
    g = rng(14)
    x, p, dy = randn(g, 2, 4, 6), mhsa_params(g, 6), randn(g, 2, 4, 6)
    dx, grads = run(MHSA + "backward", dy, run(MHSA + "forward", x, p, 3)[1])
    f = run.local(MHSA + "forward")
    # the key bias has an exactly zero gradient (softmax ignores a constant per row)
    report = gradcheck(lambda: f(x, p, 3)[0], {"x": x, **p}, {"x": dx, **grads}, dy,
                       num_checks=40, zero_atol=1e-9, label=run.label)
    x, p, dy = randn(g, 1, N, D), mhsa_params(g, D), randn(g, 1, N, D)
    dx, grads = run(MHSA + "backward", dy, run(MHSA + "forward", x, p, 3)[1])
    return report + AT_SIZE + directional_gradcheck(lambda: f(x, p, 3)[0], {"x": x, **p}, {"x": dx, **grads}, dy,
                                                    seed=307, label=run.label)


# --- block --------------------------------------------------------------------------------
def block_params(g, D, hidden, dtype=np.float64):
    p = {"norm1.weight": 1 + randn(g, D, dtype=dtype, scale=0.1), "norm1.bias": randn(g, D, dtype=dtype, scale=0.1),
         "norm2.weight": 1 + randn(g, D, dtype=dtype, scale=0.1), "norm2.bias": randn(g, D, dtype=dtype, scale=0.1),
         "mlp.fc1.weight": randn(g, hidden, D, dtype=dtype, scale=D ** -0.5),
         "mlp.fc1.bias": randn(g, hidden, dtype=dtype, scale=0.1),
         "mlp.fc2.weight": randn(g, D, hidden, dtype=dtype, scale=hidden ** -0.5),
         "mlp.fc2.bias": randn(g, D, dtype=dtype, scale=0.1)}
    p.update({"attn." + k: v for k, v in mhsa_params(g, D, dtype).items()})
    return p


def mlp_part(p):
    return {k[4:]: v for k, v in p.items() if k.startswith("mlp.")}


@check("block", "shapes and dtypes of the MLP and the block; a gradient for every parameter; the MLP with "
       "identity weights is GELU")
def block_shapes(run):
    g = rng(15)
    for dtype in (np.float32, np.float64):
        x, p = randn(g, 2, 5, 8, dtype=dtype), block_params(g, 8, 16, dtype)
        mp = mlp_part(p)
        y, cache = run(MLP + "forward", x, mp)
        expect_array("mlp y", y, x.shape, dtype)
        dx, grads = run(MLP + "backward", randn(g, 2, 5, 8, dtype=dtype), cache)
        expect_array("mlp dx", dx, x.shape, dtype)
        assert isinstance(grads, dict) and set(grads) == set(mp), f"mlp gradients: {names_differ(grads, mp)}"
        y, a, cache = run(BLOCK + "forward", x, p, 2, return_attn=True)
        expect_array("block y", y, x.shape, dtype)
        expect_array("block A", a, (2, 2, 5, 5), dtype)
        y, cache = run(BLOCK + "forward", x, p, 2)
        dx, grads = run(BLOCK + "backward", randn(g, 2, 5, 8, dtype=dtype), cache)
        expect_array("block dx", dx, x.shape, dtype)
        assert isinstance(grads, dict) and set(grads) == set(p), f"block gradients: {names_differ(grads, p)}"
        for name in p:
            expect_array(f"d {name}", grads[name], p[name].shape, dtype)
    x = randn(g, 2, 5, 8)
    y, _ = run(MLP + "forward", x, identity_mlp(8, 16))
    expect_array("mlp y", y, x.shape, np.float64)
    assert np.allclose(y, run.local(GELU + "forward")(x)[0], atol=1e-10), \
        "an MLP whose layers pass the features through unchanged (identity weights, zero biases) should be GELU(x)"


@check("block", "with both branches' output layers zero the block is the identity, forward and backward; "
       "with the attention branch zero and an identity MLP it is x + GELU(LayerNorm(x))")
def block_residual_identity(run):
    g = rng(16)
    x, p, dy = randn(g, 2, 5, 8), block_params(g, 8, 16), randn(g, 2, 5, 8)
    for name in ("attn.proj.weight", "attn.proj.bias", "mlp.fc2.weight", "mlp.fc2.bias"):
        p[name] = np.zeros_like(p[name])
    y, cache = run(BLOCK + "forward", x, p, 2)
    expect_array("y", y, x.shape, np.float64)
    assert np.allclose(y, x, atol=1e-12), "y should equal x: both branches add zero (y = x + branch(x))"
    dx, _ = run(BLOCK + "backward", dy, cache)
    expect_array("dx", dx, x.shape, np.float64)
    assert np.allclose(dx, dy, atol=1e-12), \
        "dx should equal dy: the residual paths carry the gradient straight through (dx = dy + branch terms)"
    p.update({"mlp." + k: v for k, v in identity_mlp(8, 16).items()})
    y, _ = run(BLOCK + "forward", x, p, 2)
    expect_array("y", y, x.shape, np.float64)
    branch = run.local(GELU + "forward")(run.local(LAYERNORM + "forward")(x, p["norm2.weight"], p["norm2.bias"])[0])[0]
    assert np.allclose(y, x + branch, atol=1e-10), \
        "y should be x + MLP(norm2(x)) (pre-LN: the MLP branch sees the normalised x and is added to x)"


@check("block", "gradient check of the MLP in float64 (x and every parameter)" + VIT_SIZE)
def mlp_gradcheck(run):
    g = rng(17)
    p = mlp_part(block_params(g, 6, 10))
    x, dy = randn(g, 2, 3, 6), randn(g, 2, 3, 6)
    dx, grads = run(MLP + "backward", dy, run(MLP + "forward", x, p)[1])
    f = run.local(MLP + "forward")
    report = gradcheck(lambda: f(x, p)[0], {"x": x, **p}, {"x": dx, **grads}, dy, num_checks=30, label=run.label)
    p = mlp_part(block_params(g, D, 4 * D))
    x, dy = randn(g, 1, N, D), randn(g, 1, N, D)
    dx, grads = run(MLP + "backward", dy, run(MLP + "forward", x, p)[1])
    return report + AT_SIZE + directional_gradcheck(lambda: f(x, p)[0], {"x": x, **p}, {"x": dx, **grads}, dy,
                                                    seed=308, label=run.label)


@check("block", "gradient check of the block in float64 (x and every parameter)" + VIT_SIZE, weight=2)
def block_gradcheck(run):
    g = rng(18)
    x, p, dy = randn(g, 2, 4, 6), block_params(g, 6, 12), randn(g, 2, 4, 6)
    dx, grads = run(BLOCK + "backward", dy, run(BLOCK + "forward", x, p, 2)[1])
    f = run.local(BLOCK + "forward")
    report = gradcheck(lambda: f(x, p, 2)[0], {"x": x, **p}, {"x": dx, **grads}, dy,
                       tol=1e-6, num_checks=20, zero_atol=1e-9, label=run.label)
    x, p, dy = randn(g, 1, N, D), block_params(g, D, 4 * D), randn(g, 1, N, D)
    dx, grads = run(BLOCK + "backward", dy, run(BLOCK + "forward", x, p, 3)[1])
    return report + AT_SIZE + directional_gradcheck(lambda: f(x, p, 3)[0], {"x": x, **p}, {"x": dx, **grads}, dy,
                                                    seed=309, label=run.label)
