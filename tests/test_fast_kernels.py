"""Every fast CPU kernel (minivit/fast/) equals its reference twin (minivit/ops/): outputs
and every gradient, over several shapes, whole and in chunks over threads, and the hard
cases. Then a whole training step on either kernel set, and the reference ops' isolation.

Tolerances (max |fast - reference| / max |reference|, per tensor):
    float64: 1e-12 (the same formulas in another order; GELU float64 is the same erf)
    float32: 16 float32 ulp of the largest value, 16 * 1.19e-7 = 1.9e-6 (round-off of
             another order of operations, and of the fitted float32 Phi: < 1.5e-7)
"""
import ast
import subprocess
import sys
import warnings
from pathlib import Path

import numpy as np
import pytest

import minivit
from minivit import fast, ops
from minivit.data_parallel import DataParallel
from minivit.fast import parallel
from minivit.kernels import KERNELS, select

TOL = {np.float64: 1e-12, np.float32: 16 * float(np.finfo(np.float32).eps)}
DTYPES = [np.float64, np.float32]
PACKAGE = Path(minivit.__file__).parent


def rel(a, b):
    a, b = np.asarray(a, np.float64), np.asarray(b, np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-300))


def assert_same(fast_out, ref_out, dtype, what):
    fast_out = fast_out if isinstance(fast_out, tuple) else (fast_out,)
    ref_out = ref_out if isinstance(ref_out, tuple) else (ref_out,)
    assert len(fast_out) == len(ref_out), what
    for i, (f, r) in enumerate(zip(fast_out, ref_out)):
        if r is None:
            assert f is None, f"{what}[{i}]"
            continue
        assert f.dtype == r.dtype == dtype and f.shape == r.shape, f"{what}[{i}]"
        e = rel(f, r)
        assert e <= TOL[dtype], f"{what}[{i}]: relative difference {e:.2e} > {TOL[dtype]:.1e}"


@pytest.fixture(params=["whole", "chunks-1-thread", "chunks-3-threads"])
def split(request, monkeypatch):
    """Whole arrays; or rows in chunks of an odd size (37 elements: chunk boundaries fall
    mid-row and the last chunk is short) on one and on three threads."""
    if request.param != "whole":
        monkeypatch.setattr(parallel, "CHUNK", 37)
        monkeypatch.setenv("MINIVIT_NUM_THREADS", request.param.split("-")[1])
    return request.param


def randn(rng, shape, dtype, scale=1.0):
    return (rng.standard_normal(shape) * scale).astype(dtype)


SHAPES = [(2, 3, 8), (5, 13, 24), (4, 65, 32)]       # (B, N, D): 48 to 8320 rows' elements


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_linear(split, dtype, shape):
    rng = np.random.default_rng(0)
    x, w, b = randn(rng, shape, dtype), randn(rng, (7, shape[-1]), dtype), randn(rng, (7,), dtype)
    dy = randn(rng, shape[:-1] + (7,), dtype)
    for bias in (b, None):
        yf, cf = fast.linear_forward(x, w, bias)
        yr, cr = ops.linear_forward(x, w, bias)
        assert_same(yf, yr, dtype, "y")
        assert_same(fast.linear_backward(dy, cf), ops.linear_backward(dy, cr), dtype, "dx, dw, db")


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", SHAPES)
def test_layernorm(split, dtype, shape):
    rng = np.random.default_rng(1)
    x = randn(rng, shape, dtype, 3.0) + 2.0
    x[0, 0] = 5.0                                   # a row of constant value: var = 0
    g, b = 1 + randn(rng, shape[-1:], dtype, 0.1), randn(rng, shape[-1:], dtype, 0.1)
    dy = randn(rng, shape, dtype)
    yf, cf = fast.layernorm_forward(x, g, b)
    yr, cr = ops.layernorm_forward(x, g, b)
    assert_same(yf, yr, dtype, "y")
    assert_same(cf[:2], cr[:2], dtype, "xhat, rstd")     # the same cache
    assert_same(fast.layernorm_backward(dy, cf), ops.layernorm_backward(dy, cr), dtype,
                "dx, dgamma, dbeta")
    assert np.isfinite(yf).all() and (yf[0, 0] == b).all()   # constant row -> beta


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("approximate", ["none", "tanh"])
@pytest.mark.parametrize("shape", SHAPES)
def test_gelu(split, dtype, approximate, shape):
    rng = np.random.default_rng(2)
    x = randn(rng, shape, dtype, 3.0)
    dy = randn(rng, shape, dtype)
    yf, cf = fast.gelu_forward(x, approximate)
    yr, cr = ops.gelu_forward(x, approximate)
    assert_same(yf, yr, dtype, "y")
    assert_same(cf, cr, dtype, "GELU'(x)")              # the same cache
    assert_same(fast.gelu_backward(dy, cf), ops.gelu_backward(dy, cr), dtype, "dx")


@pytest.mark.parametrize("dtype", DTYPES)
def test_gelu_far_tails(dtype):
    x = np.array([-1e30, -100, -7, -6, 6, 7, 100, 1e30], dtype=dtype)
    with np.errstate(over="ignore"):                    # x^2 of 1e30 overflows float32
        (yf, df), (yr, dr) = fast.gelu_forward(x), ops.gelu_forward(x)
    np.testing.assert_array_equal(yf, yr)
    assert np.abs(df - dr).max() <= TOL[dtype]           # GELU' is a step there, to round-off
    assert np.isfinite(yf).all() and np.isfinite(df).all()


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(2, 3, 5, 5), (3, 4, 17, 17), (2, 4, 65, 65)])
def test_softmax(split, dtype, shape):
    rng = np.random.default_rng(3)
    x = randn(rng, shape, dtype, 4.0)
    dy = randn(rng, shape, dtype)
    for axis in (-1, 2):                                 # the last axis is the fast one
        yf, cf = fast.softmax_forward(x, axis)
        yr, cr = ops.softmax_forward(x, axis)
        assert_same(yf, yr, dtype, f"y (axis {axis})")
        assert_same(fast.softmax_backward(dy, cf), ops.softmax_backward(dy, cr), dtype,
                    f"dx (axis {axis})")


def test_softmax_hard_rows(split):
    """Rows that overflow, underflow or hold NaN/inf: redone with the shift, as the reference."""
    r = np.random.default_rng(0)
    x = np.concatenate([r.standard_normal((300, 65)) * s for s in (1, 10, 40)]).astype(np.float32)
    x[5] += 100.0                      # exp overflows: redone with the shift
    x[6] -= 200.0                      # every exp underflows to 0: redone
    x[7, :3] = [88.5, 88.5, 88.5]      # each exp finite, their sum overflows: redone
    x[8, 0] = np.nan                   # stays NaN, as in the reference
    x[9] = -95.0 + r.standard_normal(65)   # sum ~1e-40, below 1e-30: redone
    x[11, 4] = -np.inf                 # a -inf logit: probability exactly 0
    with warnings.catch_warnings():
        warnings.simplefilter("error")             # no overflow warnings leak out
        got, _ = fast.softmax_forward(x)
    with np.errstate(invalid="ignore"), warnings.catch_warnings():
        warnings.simplefilter("ignore", RuntimeWarning)     # also in the helper threads
        ref, _ = ops.softmax_forward(x)
        x_inf = x[:4].copy()
        x_inf[1, 4] = np.inf           # an inf logit: inf - inf, a NaN row in both
        assert np.isnan(fast.softmax_forward(x_inf)[0][1]).all()
        assert np.isnan(ops.softmax_forward(x_inf)[0][1]).all()
    np.testing.assert_array_equal(np.isnan(got), np.isnan(ref))
    assert np.isnan(got[8]).all() and got[11, 4] == 0.0
    for i in (5, 6, 7, 9, 11):
        np.testing.assert_allclose(got[i], ref[i], rtol=TOL[np.float32], atol=0)
    # as accurate as the reference against float64: exp(x) is not less exact than exp(x - max)
    finite = np.isfinite(ref).all(1)
    x64 = x[finite].astype(np.float64)
    true = np.exp(x64 - x64.max(1, keepdims=True))
    true /= true.sum(1, keepdims=True)
    err = np.abs(got[finite] - true).max()
    assert err <= 2 * np.abs(ref[finite] - true).max() + 1e-9 and err < 5e-7, err


@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("shape", [(1, 1, 3, 4), (2, 3, 5, 4), (3, 4, 65, 32)])
@pytest.mark.parametrize("attn_drop", [0.0, 0.25])
def test_sdpa(split, dtype, shape, attn_drop):
    rng = np.random.default_rng(4)
    q, k, v, dctx = (randn(rng, shape, dtype) for _ in range(4))
    train = attn_drop > 0
    ctx_f, a_f, c_f = fast.sdpa_forward(q, k, v, attn_drop=attn_drop, train=train,
                                        rng=np.random.default_rng(5))
    ctx_r, a_r, c_r = ops.sdpa_forward(q, k, v, attn_drop=attn_drop, train=train,
                                       rng=np.random.default_rng(5))
    assert_same((ctx_f, a_f), (ctx_r, a_r), dtype, "ctx, A")
    assert_same(fast.sdpa_backward(dctx, c_f), ops.sdpa_backward(dctx, c_r), dtype, "dq, dk, dv")


def test_every_primitive_has_a_fast_twin_with_the_same_signature():
    import inspect
    for name in ops.reference.PRIMITIVES:
        for d in ("forward", "backward"):
            f, r = getattr(fast, f"{name}_{d}"), getattr(ops.reference, f"{name}_{d}")
            assert inspect.signature(f) == inspect.signature(r), f"{name}_{d}"


def test_selecting_a_kernel_set():
    assert KERNELS == ("auto", "fast", "reference")
    assert select("auto") is fast and select("fast") is fast
    assert select("reference") is ops.reference
    cupy_like = object()                                 # any array module but NumPy
    assert select("auto", cupy_like) is ops.reference
    with pytest.raises(ValueError, match="CPU"):
        select("fast", cupy_like)
    with pytest.raises(ValueError, match="kernels must be one of"):
        minivit.ViT(kernels="quick")


# --- a whole training step on either kernel set -------------------------------------------
def _train_step(kernels, data_parallel, dtype=np.float32):
    model = minivit.ViT(img_size=16, patch_size=4, embed_dim=32, depth=2, num_heads=4,
                        global_pool="avg", drop_path_rate=0.1, dtype=dtype, seed=1,
                        kernels=kernels)
    r = np.random.default_rng(0)
    x = r.standard_normal((12, 3, 16, 16)).astype(dtype)
    y = r.integers(0, 10, 12)
    model.zero_grad()
    if data_parallel:
        loss, logits = DataParallel(model, 2, micro_batch=4).forward_backward(x, y, label_smoothing=0.1)
    else:
        logits = model(x)
        loss, cache = ops.cross_entropy_forward(logits, y, label_smoothing=0.1)
        model.backward(ops.cross_entropy_backward(1.0, cache))
    return loss, logits, model.grads()


@pytest.mark.parametrize("data_parallel", [False, True], ids=["plain", "data-parallel"])
@pytest.mark.parametrize("dtype", DTYPES)
def test_training_step_is_the_same_on_both_kernel_sets(data_parallel, dtype):
    """Loss, logits and every gradient. (The optimiser step that follows uses no kernels:
    AdamW's update is the same function of the gradients on either set.)"""
    fl, fz, fg = _train_step("fast", data_parallel, dtype)
    rl, rz, rg = _train_step("reference", data_parallel, dtype)
    # the gradients go through a whole model: round-off of a few layers (as the PyTorch
    # parity tests allow: 2e-5 in float32, 1e-10 in float64)
    tol = {np.float64: 1e-10, np.float32: 2e-5}[dtype]
    assert rel(fl, rl) < tol and rel(fz, rz) < tol
    for k in rg:
        assert rel(fg[k], rg[k]) < tol, k


# --- the reference ops stand alone ----------------------------------------------------------
SPEED_MODULES = ("minivit.fast", "threading", "concurrent", "threadpoolctl", "minivit.threads")


def test_reference_ops_import_no_speed_machinery():
    """Read every file in minivit/ops/: its imports name only NumPy, the backend and other
    reference ops (so a student copy without minivit/fast/ imports cleanly)."""
    for path in sorted((PACKAGE / "ops").glob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Import):
                names = [a.name for a in node.names]
            elif isinstance(node, ast.ImportFrom):
                base = ("minivit." * (node.level > 0)) + ("ops." if node.level == 1 else "")
                names = [base + (node.module or "")]
            else:
                continue
            for n in names:
                n = n.replace("minivit.ops..", "minivit.")
                assert not n.startswith(SPEED_MODULES) and ".fast" not in n and "parallel" not in n, \
                    f"{path.name} imports {n}"


def test_package_without_fast_kernels_trains_on_the_reference(tmp_path):
    """A copy of the package with minivit/fast/ removed (as a student copy is) imports,
    picks the reference kernels for 'auto', refuses 'fast' with a message, and trains."""
    import shutil
    shutil.copytree(PACKAGE, tmp_path / "minivit", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.rmtree(tmp_path / "minivit" / "fast")
    # an editable install of the real package (pip install -e) would supply minivit.fast
    # through its import hook: the copy is imported from sys.path alone
    code = """
import sys
sys.meta_path = [f for f in sys.meta_path if "editable" not in repr(f)]
import numpy as np
import minivit
assert minivit.__file__.startswith(sys.argv[1]), minivit.__file__
from minivit import ops
from minivit.data_parallel import DataParallel
m = minivit.ViT(img_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=2)
assert m.kernel_set() is ops.reference, m.kernel_set()
x = np.random.default_rng(0).standard_normal((4, 3, 8, 8)).astype(np.float32)
loss, _ = DataParallel(m, 2).forward_backward(x, np.arange(4))
assert np.isfinite(float(loss)) and m.grads()["head.weight"] is not None
try:
    minivit.ViT(img_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=2, kernels="fast")
except ValueError as e:
    print("refused:", e)
assert not any(k.startswith("minivit.fast") for k in sys.modules)
"""
    out = subprocess.run([sys.executable, "-c", code, str(tmp_path)], cwd=tmp_path, capture_output=True,
                         text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert "refused: kernels='fast' needs minivit.fast" in out.stdout
