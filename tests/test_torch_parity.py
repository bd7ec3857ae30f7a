"""Parity with PyTorch (test-only reference): same weights through state_dict, then logits,
the input gradient and every parameter gradient must agree.

float64: relative error (max |a - b| / max |b|, per tensor) < 1e-10.
float32: < 2e-5, i.e. float32 round-off (eps = 1.2e-7) accumulated over a few layers.
"""
import numpy as np
import pytest

import minivit
from minivit import ops
from minivit.backend import to_numpy

torch = pytest.importorskip("torch")
from minivit.torch_ref import cross_entropy, from_minivit  # noqa: E402

TOL = {np.float64: 1e-10, np.float32: 2e-5}


def rel(a, b):
    a, b = to_numpy(a).astype(np.float64), np.asarray(b, dtype=np.float64)
    assert a.shape == b.shape, (a.shape, b.shape)
    return float(np.abs(a - b).max() / max(np.abs(b).max(), 1e-30))


def randomize(model, seed=0, scale=0.3):
    """Non-trivial weights (the timm init makes many gradients tiny)."""
    rng = np.random.default_rng(seed)
    sd = model.state_dict()
    new = {}
    for k, v in sd.items():
        if k.endswith("norm1.weight") or k.endswith("norm2.weight") or k in ("norm.weight", "fc_norm.weight"):
            new[k] = 1 + 0.1 * rng.standard_normal(v.shape)
        else:
            fan_in = v[0].size if v.ndim > 1 else 1
            new[k] = rng.standard_normal(v.shape) * (scale if v.ndim <= 1 else fan_in ** -0.5)
    model.load_state_dict(new)


CONFIGS = [
    dict(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0),
    dict(img_size=(8, 12), patch_size=4, embed_dim=12, depth=2, num_heads=3, global_pool="avg", head="mlp"),
    dict(img_size=8, patch_size=2, in_chans=1, num_classes=5, embed_dim=8, depth=3, num_heads=2,
         qkv_bias=False, gelu="tanh"),
    dict(img_size=(12, 8), patch_size=4, embed_dim=12, depth=2, num_heads=2, global_pool="avg",
         fc_norm=True),
]


@pytest.mark.parametrize("cfg", CONFIGS, ids=["token-linear", "avg-mlp-nonsquare", "tanh-nobias",
                                              "avg-fcnorm"])
@pytest.mark.parametrize("dtype", [np.float64, np.float32], ids=["f64", "f32"])
@pytest.mark.parametrize("kernels", ["reference", "fast"])
def test_logits_and_gradients_match_pytorch(device, cfg, dtype, kernels):
    if kernels == "fast" and device == "cuda":
        pytest.skip("the fast kernels are CPU kernels")
    model = minivit.ViT(**cfg, dtype=dtype, seed=3, kernels=kernels).eval()
    randomize(model)
    ref = from_minivit(model, torch.float32 if dtype == np.float32 else torch.float64)
    H, W = model.img_size
    rng = np.random.default_rng(0)
    x = rng.standard_normal((4, model.in_chans, H, W)).astype(dtype)
    y = rng.integers(0, model.num_classes, 4)

    logits = model(model.xp.asarray(x))
    loss, cache = ops.cross_entropy_forward(logits, model.xp.asarray(y), 0.1)
    model.zero_grad()
    dx = model.backward(ops.cross_entropy_backward(1.0, cache))

    xt = torch.from_numpy(x).requires_grad_(True)
    lt = ref(xt)
    loss_t = cross_entropy(lt, torch.from_numpy(y), 0.1)
    loss_t.backward()

    tol = TOL[dtype]
    assert rel(logits, lt.detach().numpy()) < tol
    assert rel(loss, loss_t.detach().numpy()) < tol
    assert rel(dx, xt.grad.numpy()) < tol
    tgrads = dict(ref.named_parameters())
    for name, g in model.grads().items():
        assert g is not None and g.dtype == dtype, name
        assert rel(g, tgrads[name].grad.numpy()) < tol, name


@pytest.mark.parametrize("layout", [dict(head="mlp"), dict(global_pool="avg", fc_norm=True)],
                         ids=["norm-mlp", "avg-fc_norm"])
def test_state_dict_loads_into_torch_strictly(layout):
    """Names and layouts are timm's: a strict load_state_dict in PyTorch accepts ours and
    ours accepts PyTorch's (patch_embed.proj.weight as (D, C, P, P), Linear as (out, in);
    with fc_norm, fc_norm.weight/bias and no norm.*)."""
    kw = dict(img_size=16, patch_size=4, embed_dim=16, depth=2, num_heads=2, **layout)
    model = minivit.ViT(**kw)
    ref = from_minivit(model, torch.float32)
    assert ref.patch_embed.proj.weight.shape == (16, 3, 4, 4)
    back = {k: v.detach().numpy() for k, v in ref.state_dict().items()}
    assert ("fc_norm.weight" in back) == ("norm.weight" not in back) == layout.get("fc_norm", False)
    other = minivit.ViT(**kw, seed=9)
    other.load_state_dict(back)
    for k, v in model.state_dict().items():
        np.testing.assert_array_equal(other.state_dict()[k], v)


def test_fc_norm_state_dict_from_torch_loads_and_agrees():
    """A timm-layout avg-pool model made in PyTorch (its own random weights, fc_norm.* and
    an Identity `norm`) loads into ViT(fc_norm=True) and gives the same logits."""
    from minivit.torch_ref import TorchViT
    kw = dict(img_size=(8, 12), patch_size=4, embed_dim=12, depth=2, num_heads=3,
              global_pool="avg", fc_norm=True)
    model = minivit.ViT(**kw, dtype=np.float64).eval()
    torch.manual_seed(0)
    ref = TorchViT(model.config).double()
    with torch.no_grad():
        for name, p in ref.named_parameters():
            p.add_(0.3 * torch.randn_like(p))      # away from the init (zeros, ones)
    model.load_state_dict({k: v.numpy() for k, v in ref.state_dict().items()})
    x = np.random.default_rng(0).standard_normal((3, 3, 8, 12))
    with torch.no_grad():
        want = ref(torch.from_numpy(x)).numpy()
    assert rel(model(x), want) < 1e-12


@pytest.mark.parametrize("kernels", ["reference", "fast"])
def test_gelu_matches_torch_exact_and_tanh(kernels):
    from minivit.kernels import select
    x = np.linspace(-6, 6, 10001)
    for approximate in ("none", "tanh"):
        ours, _ = select(kernels).gelu_forward(x, approximate)
        theirs = torch.nn.functional.gelu(torch.from_numpy(x), approximate=approximate).numpy()
        assert np.abs(ours - theirs).max() < 1e-15
