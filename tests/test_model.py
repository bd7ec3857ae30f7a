"""The whole ViT: gradient check, dtypes, weights, bad input, and a teacher's sanity checks."""
import math

import numpy as np
import pytest

import minivit
from minivit import ops
from minivit.backend import to_numpy
from minivit.gradcheck import check_module

TOL_MODEL = 1e-6   # relative error of the whole ViT's gradients (float64, five-point stencil)

GRAD_CONFIGS = {
    "token-linear-square": dict(img_size=8, patch_size=4, embed_dim=8, depth=2, num_heads=2),
    "avg-mlp-nonsquare": dict(img_size=(8, 12), patch_size=4, embed_dim=6, depth=2, num_heads=3,
                              global_pool="avg", head="mlp", num_classes=4),
    "token-mlp-depth3-tanh": dict(img_size=(4, 8), patch_size=2, in_chans=1, embed_dim=8, depth=3,
                                  num_heads=4, head="mlp", gelu="tanh", mlp_ratio=1.5),
    # timm's avg layout: the final LayerNorm on the pooled (B, D) vector
    "avg-fcnorm-nonsquare": dict(img_size=(8, 12), patch_size=4, embed_dim=6, depth=2, num_heads=3,
                                 global_pool="avg", fc_norm=True, num_classes=4),
}


def randomize(model, seed=0):
    """Weights at a scale where every gradient is well above round-off (timm's init makes
    the attention gradients tiny, which tells a finite difference little)."""
    rng = np.random.default_rng(seed)
    new = {}
    for k, v in model.state_dict().items():
        if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k in ("norm.weight", "fc_norm.weight"):
            new[k] = 1 + 0.1 * rng.standard_normal(v.shape)
        elif v.ndim <= 1 or k in ("cls_token", "pos_embed"):
            new[k] = 0.3 * rng.standard_normal(v.shape)
        else:
            new[k] = rng.standard_normal(v.shape) * v[0].size ** -0.5
    model.load_state_dict(new)
    return model


@pytest.mark.parametrize("name", list(GRAD_CONFIGS))
def test_whole_vit_gradcheck(device, xp, name):
    """The whole model built on the reference kernels (the fast ones are held to these in
    test_fast_kernels.py)."""
    model = randomize(minivit.ViT(**GRAD_CONFIGS[name], dtype=np.float64, kernels="reference")).eval()
    H, W = model.img_size
    x = xp.asarray(np.random.default_rng(1).standard_normal((2, model.in_chans, H, W)))
    errors, zeros = check_module(model, x, num_checks=12, zero_atol=1e-9)
    assert len(errors) == len(dict(model.named_parameters())) + 1   # every tensor, and x
    bad = {k: e for k, e in errors.items() if not e < TOL_MODEL}
    assert not bad, f"relative errors >= {TOL_MODEL}: {bad}"
    # elements with a zero gradient may only be keys' biases (softmax ignores them)
    D = model.embed_dim
    for k, idx in zeros.items():
        assert k.endswith("attn.qkv.bias") and ((idx >= D) & (idx < 2 * D)).all(), (k, idx)


def test_dropout_backward_matches_in_train_mode(device, xp):
    """With dropout, drop path and attention dropout active and the random stream reset
    before each forward pass, the masks repeat and the gradient check applies."""
    from minivit.gradcheck import check_arrays
    model = randomize(minivit.ViT(img_size=8, patch_size=4, embed_dim=8, depth=2, num_heads=2,
                                  drop_rate=0.2, attn_drop_rate=0.2, drop_path_rate=0.3,
                                  dtype=np.float64)).train()
    x = xp.asarray(np.random.default_rng(1).standard_normal((4, 3, 8, 8)))

    def f():
        model.rng = xp.random.default_rng(5)
        return model(x)
    out = f()
    dout = xp.asarray(np.random.default_rng(2).standard_normal(out.shape))
    model.zero_grad()
    dx = model.backward(dout)
    p = dict(model.named_parameters())
    names = ["blocks.1.mlp.fc1.weight", "blocks.0.attn.proj.weight", "head.weight", "pos_embed"]
    errs = check_arrays(f, {"x": x, **{n: p[n].data for n in names}},
                        {"x": dx, **{n: p[n].grad for n in names}}, dout, num_checks=15)
    assert max(errs.values()) < TOL_MODEL, errs


def test_dropout_changes_outputs_in_train_mode_only(device, xp):
    model = minivit.ViT(img_size=8, patch_size=4, embed_dim=16, depth=1, num_heads=2, drop_rate=0.3)
    x = xp.asarray(np.random.default_rng(0).standard_normal((4, 3, 8, 8)), dtype=np.float32)
    a, b = model(x), model(x)
    assert float(abs(a - b).max()) > 0
    model.eval()
    a, b = model(x), model(x)
    assert float(abs(a - b).max()) == 0.0


def _all_float_arrays(obj, seen=None):
    """Every floating array reachable from a module's caches and parameters."""
    seen = set() if seen is None else seen
    if id(obj) in seen:
        return
    seen.add(id(obj))
    if hasattr(obj, "dtype") and hasattr(obj, "shape"):
        if np.dtype(obj.dtype).kind == "f":
            yield obj
    elif isinstance(obj, dict):
        for v in obj.values():
            yield from _all_float_arrays(v, seen)
    elif isinstance(obj, (list, tuple)):
        for v in obj:
            yield from _all_float_arrays(v, seen)
    elif isinstance(obj, minivit.nn.Module):
        for v in vars(obj).values():
            yield from _all_float_arrays(v, seen)
    elif isinstance(obj, minivit.nn.Parameter):
        yield from _all_float_arrays(obj.data, seen)
        yield from _all_float_arrays(obj.grad, seen)


@pytest.mark.parametrize("head,pool", [("linear", "token"), ("mlp", "avg")])
def test_float32_stays_float32(device, xp, head, pool):
    """Every parameter, activation (cache) and gradient of a float32 pass is float32."""
    model = minivit.ViT(img_size=8, patch_size=4, embed_dim=16, depth=2, num_heads=2, head=head,
                        global_pool=pool, drop_rate=0.1, attn_drop_rate=0.1, drop_path_rate=0.1)
    x = xp.asarray(np.random.default_rng(0).standard_normal((4, 3, 8, 8)), dtype=np.float32)
    logits = model(x)
    loss, cache = ops.cross_entropy_forward(logits, xp.asarray([0, 1, 2, 3]), 0.1)
    dx = model.backward(ops.cross_entropy_backward(1.0, cache))
    arrays = list(_all_float_arrays(model)) + [logits, loss, dx]
    assert len(arrays) > 100
    assert {a.dtype for a in arrays} == {np.dtype(np.float32)}
    assert all(g is not None for g in model.grads().values())


def test_float64_input_to_float32_model_is_cast_not_promoted(device, xp):
    model = minivit.ViT(img_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=2)
    out = model(xp.zeros((2, 3, 8, 8), dtype=np.float64))
    assert out.dtype == np.float32


def test_initial_loss_is_log_num_classes(device, xp):
    for K in (10, 100):
        model = minivit.ViT(num_classes=K, seed=1).eval()
        x = xp.asarray(np.random.default_rng(0).standard_normal((64, 3, 32, 32)), dtype=np.float32)
        y = xp.asarray(np.random.default_rng(1).integers(0, K, 64))
        loss, _ = ops.cross_entropy_forward(model(x), y)
        assert abs(float(loss) - math.log(K)) < 0.1


def test_same_seed_same_model_and_init_statistics():
    a, b = minivit.ViT(seed=4), minivit.ViT(seed=4)
    c = minivit.ViT(seed=5)
    sa, sb, sc = a.state_dict(), b.state_dict(), c.state_dict()
    assert all(np.array_equal(sa[k], sb[k]) for k in sa)
    assert not np.array_equal(sa["head.weight"], sc["head.weight"])
    # timm-like init: trunc-normal(0.02) weights, zero biases, LayerNorm ones/zeros
    w = sa["blocks.0.attn.qkv.weight"]
    assert abs(w.std() - 0.02 * 0.88) < 0.002 and np.abs(w).max() <= 0.04 + 1e-7
    assert not sa["blocks.0.mlp.fc1.bias"].any()
    assert (sa["norm.weight"] == 1).all() and not sa["norm.bias"].any()
    assert np.abs(sa["cls_token"]).max() < 1e-5


def test_cpu_and_gpu_models_start_identical(device):
    cpu = minivit.ViT(seed=7, device="cpu").state_dict()
    here = minivit.ViT(seed=7, device=device).state_dict()
    assert all(np.array_equal(cpu[k], here[k]) for k in cpu)


def test_state_dict_round_trip_and_names(device):
    model = minivit.ViT(img_size=16, patch_size=4, embed_dim=8, depth=2, num_heads=2, head="mlp")
    sd = model.state_dict()
    expected = {"cls_token", "pos_embed", "patch_embed.proj.weight", "patch_embed.proj.bias",
                "norm.weight", "norm.bias", "pre_logits.fc.weight", "pre_logits.fc.bias",
                "head.weight", "head.bias"}
    for i in range(2):
        expected |= {f"blocks.{i}.{n}" for n in (
            "norm1.weight", "norm1.bias", "attn.qkv.weight", "attn.qkv.bias", "attn.proj.weight",
            "attn.proj.bias", "norm2.weight", "norm2.bias", "mlp.fc1.weight", "mlp.fc1.bias",
            "mlp.fc2.weight", "mlp.fc2.bias")}
    assert set(sd) == expected
    assert sd["patch_embed.proj.weight"].shape == (8, 3, 4, 4)
    assert sd["blocks.0.mlp.fc1.weight"].shape == (16, 8)
    assert all(isinstance(v, np.ndarray) for v in sd.values())
    other = minivit.ViT(img_size=16, patch_size=4, embed_dim=8, depth=2, num_heads=2, head="mlp", seed=1)
    other.load_state_dict(sd)
    x = np.random.default_rng(0).standard_normal((2, 3, 16, 16)).astype(np.float32)
    assert np.array_equal(to_numpy(model.eval()(x)), to_numpy(other.eval()(x)))


def test_load_state_dict_errors_list_everything_and_change_nothing():
    model = minivit.ViT(img_size=16, patch_size=4, embed_dim=8, depth=1, num_heads=2)
    before = model.state_dict()
    bad = dict(before)
    del bad["head.bias"]
    bad["blocks.7.attn.qkv.weight"] = np.zeros((24, 8))
    bad["pos_embed"] = np.zeros((1, 5, 8))
    bad["norm.weight"] = np.zeros(8)          # a valid entry that must NOT be applied
    with pytest.raises(ValueError) as e:
        model.load_state_dict(bad)
    msg = str(e.value)
    assert "missing keys: head.bias" in msg
    assert "unexpected keys: blocks.7.attn.qkv.weight" in msg
    assert "pos_embed: expected (1, 17, 8), got (1, 5, 8)" in msg
    after = model.state_dict()
    assert all(np.array_equal(before[k], after[k]) for k in before)


def test_return_attn(device, xp):
    model = minivit.ViT(img_size=8, patch_size=4, embed_dim=8, depth=3, num_heads=2).eval()
    x = xp.zeros((2, 3, 8, 8), dtype=np.float32)
    logits, maps = model(x, return_attn=True)
    assert len(maps) == 3 and maps[0].shape == (2, 2, 5, 5)
    assert float(abs(maps[0].sum(-1) - 1).max()) < 1e-5
    assert float(abs(logits - model(x)).max()) == 0.0


@pytest.mark.parametrize("shape,match", [
    ((2, 1, 32, 32), r"expected 3 channels, i.e. shape \(B, 3, 32, 32\)"),
    ((2, 3, 30, 32), r"not divisible by patch size 4; this model expects \(B, 3, 32, 32\)"),
    ((2, 3, 16, 16), r"built for 32x32 images, shape \(B, 3, 32, 32\)"),
    ((3, 32, 32), r"expected images of shape \(B, 3, 32, 32\)"),
])
def test_bad_input_shapes(device, xp, shape, match):
    model = minivit.ViT()
    with pytest.raises(ValueError, match=match):
        model(xp.zeros(shape, dtype=np.float32))


def test_bad_input_dtype_and_values(device, xp):
    model = minivit.ViT()
    with pytest.raises(ValueError, match="floating-point images, got dtype uint8"):
        model(xp.zeros((1, 3, 32, 32), dtype=np.uint8))
    for bad in (np.nan, np.inf):
        x = xp.zeros((1, 3, 32, 32), dtype=np.float32)
        x[0, 0, 0, 0] = bad
        with pytest.raises(ValueError, match="NaN or inf"):
            model(x)


@pytest.mark.parametrize("kwargs,match", [
    (dict(embed_dim=100, num_heads=3), "embed_dim 100 must be divisible by num_heads 3"),
    (dict(img_size=30), "img_size 30x30 must be divisible by patch_size 4"),
    (dict(dtype=np.int32), "dtype must be float32 or float64"),
    (dict(dtype=np.float16), "dtype must be float32 or float64"),
    (dict(global_pool="max"), "global_pool must be one of"),
    (dict(head="conv"), "head must be one of"),
    (dict(drop_rate=1.0), r"drop_rate must be in \[0, 1\)"),
])
def test_bad_configuration(kwargs, match):
    with pytest.raises(ValueError, match=match):
        minivit.ViT(**kwargs)


def _as_fc_norm(state):
    """The same weights under timm's avg-pool names: norm.* -> fc_norm.*"""
    return {("fc_" + k if k.startswith("norm.") else k): v for k, v in state.items()}


def test_fc_norm_names_and_where_the_norm_sits():
    """fc_norm=True has fc_norm.* and no norm.*; with the same weights it computes
    head(LN(mean)) instead of head(mean(LN)): different for 'avg', equal for 'token'."""
    kw = dict(img_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=2, dtype=np.float64)
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 8))
    for pool in ("avg", "token"):
        before = randomize(minivit.ViT(**kw, global_pool=pool)).eval()
        after = minivit.ViT(**kw, global_pool=pool, fc_norm=True).eval()
        sd = after.state_dict()
        assert "fc_norm.weight" in sd and "fc_norm.bias" in sd and "norm.weight" not in sd
        assert after.config["fc_norm"] is True and before.config["fc_norm"] is False
        after.load_state_dict(_as_fc_norm(before.state_dict()))
        a, b = before(x), after(x)
        if pool == "avg":
            assert np.abs(a - b).max() > 1e-3
            # by hand: the head applied to LayerNorm of the mean patch token
            p = after.arrays()
            tokens = after.patch_embed(after._check_input(x))
            zz, _ = ops.cls_pos_forward(tokens, p["cls_token"], p["pos_embed"])
            for blk in after.blocks:
                zz = blk(zz)
            h, _ = ops.layernorm_forward(zz[:, 1:].mean(1), p["fc_norm.weight"], p["fc_norm.bias"])
            np.testing.assert_allclose(b, h @ p["head.weight"].T + p["head.bias"], rtol=1e-12, atol=1e-12)
        else:
            np.testing.assert_allclose(a, b, rtol=1e-12, atol=1e-12)


def test_load_state_dict_says_which_norm_layout_to_build():
    kw = dict(img_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=2, global_pool="avg")
    plain, fc = minivit.ViT(**kw), minivit.ViT(**kw, fc_norm=True)
    with pytest.raises(ValueError, match="build the ViT with fc_norm=True"):
        plain.load_state_dict(fc.state_dict())
    with pytest.raises(ValueError, match="build the ViT with fc_norm=False"):
        fc.load_state_dict(plain.state_dict())
    with pytest.raises(ValueError, match="fc_norm must be True or False"):
        minivit.ViT(**kw, fc_norm="yes")
