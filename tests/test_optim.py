"""Optimisers against their definitions and against PyTorch; schedule; clipping; state."""
import math

import numpy as np
import pytest

import minivit
from minivit.nn import Parameter
from minivit.optim import SGD, AdamW, clip_grad_norm, cosine_lr, no_decay


def _params(xp, rng):
    return [("blocks.0.mlp.fc1.weight", Parameter(xp.asarray(rng.standard_normal((4, 3))))),
            ("blocks.0.mlp.fc1.bias", Parameter(xp.asarray(rng.standard_normal(4)))),
            ("pos_embed", Parameter(xp.asarray(rng.standard_normal((1, 2, 3)))))]


def _run(opt_cls, params, grads_seq, **kw):
    opt = opt_cls(params, **kw)
    for grads in grads_seq:
        for (_, p), g in zip(params, grads):
            p.grad = g.copy()
        opt.step()
    return opt


def test_no_decay_rules():
    assert not no_decay("blocks.0.attn.qkv.weight", Parameter(np.zeros((6, 2))))
    for name, shape in (("blocks.0.attn.qkv.bias", (6,)), ("norm.weight", (2,)),
                        ("pos_embed", (1, 5, 2)), ("cls_token", (1, 1, 2))):
        assert no_decay(name, Parameter(np.zeros(shape)))


@pytest.mark.parametrize("opt,kw", [
    ("AdamW", dict(lr=1e-2, weight_decay=0.1)),
    ("SGD", dict(lr=0.1, momentum=0.9, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.9, nesterov=True, weight_decay=0.01)),
    ("SGD", dict(lr=0.1, momentum=0.0)),
])
def test_matches_pytorch(device, xp, opt, kw):
    torch = pytest.importorskip("torch")
    rng = np.random.default_rng(0)
    params = _params(xp, rng)
    init = [minivit.to_numpy(p.data).copy() for _, p in params]
    grads_seq = [[xp.asarray(rng.standard_normal(p.data.shape)) for _, p in params] for _ in range(5)]
    _run(globals()[opt], params, grads_seq, **kw)

    tparams = [torch.tensor(v, requires_grad=True) for v in init]
    decay = [t for (n, p), t in zip(params, tparams) if not no_decay(n, p)]
    rest = [t for (n, p), t in zip(params, tparams) if no_decay(n, p)]
    wd = kw.get("weight_decay", 0.0)
    tkw = {k: v for k, v in kw.items() if k not in ("weight_decay", "lr")}
    groups = [{"params": decay, "weight_decay": wd}, {"params": rest, "weight_decay": 0.0}]
    topt = getattr(torch.optim, opt)(groups, lr=kw["lr"], **tkw)
    for grads in grads_seq:
        for t, g in zip(tparams, grads):
            t.grad = torch.from_numpy(minivit.to_numpy(g).copy())
        topt.step()
    for (name, p), t in zip(params, tparams):
        np.testing.assert_allclose(minivit.to_numpy(p.data), t.detach().numpy(), rtol=1e-12, atol=1e-12,
                                   err_msg=name)


def test_adamw_first_step_is_lr_times_sign(xp):
    """Bias correction makes Adam's first step lr * g/|g| (plus decoupled decay)."""
    p = Parameter(xp.asarray([1.0, -2.0, 3.0]))
    p.grad = xp.asarray([0.5, -3.0, 1e-3])
    AdamW([("w", p)], lr=0.1, weight_decay=0.0).step()
    np.testing.assert_allclose(minivit.to_numpy(p.data), [0.9, -1.9, 2.9], rtol=1e-6)


def test_state_dict_save_restore_continues_identically(device, xp):
    rng = np.random.default_rng(0)
    grads_seq = [[xp.asarray(rng.standard_normal(s)) for s in ((4, 3), (4,), (1, 2, 3))]
                 for _ in range(6)]
    for cls, kw in ((AdamW, dict(lr=1e-2)), (SGD, dict(lr=0.1, nesterov=True))):
        a = _params(xp, np.random.default_rng(1))
        opt_a = _run(cls, a, grads_seq, **kw)
        b = _params(xp, np.random.default_rng(1))
        opt_b = _run(cls, b, grads_seq[:3], **kw)
        state = opt_b.state_dict()
        assert all(isinstance(v, np.ndarray) for v in state.values())
        c = [(n, Parameter(p.data.copy())) for n, p in b]       # "reloaded" weights
        opt_c = cls(c, **kw)
        opt_c.load_state_dict(state)
        assert opt_c.step_count == 3
        for grads in grads_seq[3:]:
            for (_, p), g in zip(c, grads):
                p.grad = g.copy()
            opt_c.step()
        for (_, pa), (_, pc) in zip(a, c):
            assert np.array_equal(minivit.to_numpy(pa.data), minivit.to_numpy(pc.data))
        assert opt_a.step_count == opt_c.step_count == 6


def test_load_state_dict_rejects_mismatch(xp):
    params = _params(xp, np.random.default_rng(0))
    opt = AdamW(params)
    for (_, p) in params:
        p.grad = xp.ones_like(p.data)
    opt.step()
    state = opt.state_dict()
    state["exp_avg.pos_embed"] = np.zeros((1, 9, 3))
    with pytest.raises(ValueError, match="exp_avg.pos_embed: shape"):
        AdamW(params).load_state_dict(state)
    with pytest.raises(ValueError, match="unknown parameter 'nope'"):
        AdamW(params).load_state_dict({"exp_avg.nope": np.zeros(3)})


def test_cosine_lr():
    assert cosine_lr(0, 100, 1.0, warmup_steps=10) == pytest.approx(0.1)
    assert cosine_lr(9, 100, 1.0, warmup_steps=10) == pytest.approx(1.0)
    assert cosine_lr(10, 100, 1.0, warmup_steps=10) == pytest.approx(1.0)
    assert cosine_lr(55, 100, 1.0, warmup_steps=10) == pytest.approx(0.5)
    assert cosine_lr(100, 100, 1.0, warmup_steps=10, min_lr=0.01) == pytest.approx(0.01)
    lrs = [cosine_lr(s, 100, 1.0, 10) for s in range(10, 101)]
    assert all(a >= b for a, b in zip(lrs, lrs[1:]))


def test_clip_grad_norm(xp):
    ps = [("a", Parameter(xp.zeros(2))), ("b", Parameter(xp.zeros(1))), ("c", Parameter(xp.zeros(1)))]
    ps[0][1].grad, ps[1][1].grad = xp.asarray([3.0, 0.0]), xp.asarray([4.0])
    assert clip_grad_norm(ps, 10.0) == pytest.approx(5.0)
    assert float(ps[0][1].grad[0]) == 3.0                       # under the limit: untouched
    assert clip_grad_norm(ps, 1.0) == pytest.approx(5.0)
    total = math.sqrt(sum(float((p.grad ** 2).sum()) for _, p in ps if p.grad is not None))
    assert total == pytest.approx(1.0, rel=1e-5)
