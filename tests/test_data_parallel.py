"""DataParallel (the batch split over CPU threads) gives what one pass over the whole
batch gives: the same loss, logits and gradients, to round-off."""
import numpy as np
import pytest

from minivit import ops
from minivit.fast import parallel
from minivit.data_parallel import DataParallel
from minivit.model import ViT

SHAPE = dict(img_size=8, patch_size=4, embed_dim=16, depth=2, num_heads=2, mlp_ratio=2.0)


def make(dtype=np.float64, **kw):
    return ViT(**{**SHAPE, **kw}, dtype=dtype, seed=0)


def data(B, soft=False):
    rng = np.random.default_rng(1)
    x = rng.standard_normal((B, 3, 8, 8))
    y = rng.dirichlet(np.ones(10), size=B) if soft else rng.integers(0, 10, B)
    return x, y


def serial(model, x, y, ls=0.0):
    logits = model(x)
    loss, cache = ops.cross_entropy_forward(logits, y, ls)
    model.backward(ops.cross_entropy_backward(1.0, cache))
    return loss, logits


@pytest.mark.parametrize("n, B", [(2, 8), (3, 7), (4, 3)])   # even, uneven, more threads than 3
@pytest.mark.parametrize("soft, ls", [(False, 0.0), (False, 0.1), (True, 0.0)])
def test_same_loss_logits_and_grads_as_one_pass(n, B, soft, ls):
    ref, model = make(), make()
    x, y = data(B, soft)
    loss_ref, logits_ref = serial(ref, x, y, ls)
    loss, logits = DataParallel(model, n).forward_backward(x, y, ls)
    # float64: the only difference is the order of the sums over the batch
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-12)
    np.testing.assert_allclose(logits, logits_ref, rtol=1e-12, atol=1e-14)
    for (name, p), (_, q) in zip(ref.named_parameters(), model.named_parameters()):
        np.testing.assert_allclose(q.grad, p.grad, rtol=1e-10, atol=1e-14, err_msg=name)


@pytest.mark.parametrize("n, B, micro", [(1, 7, 2), (2, 10, 3), (2, 8, 1), (3, 7, 100)])
def test_micro_batches_accumulate_to_the_one_pass_gradient(n, B, micro):
    ref, model = make(), make()
    x, y = data(B)
    loss_ref, logits_ref = serial(ref, x, y, 0.1)
    dp = DataParallel(model, n, micro_batch=micro)
    assert all(c.stop - c.start <= micro for s in dp._slices(B) for c in dp._micro(s))
    loss, logits = dp.forward_backward(x, y, 0.1)
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-12)
    np.testing.assert_allclose(logits, logits_ref, rtol=1e-12, atol=1e-14)
    np.testing.assert_allclose(dp(x), logits_ref, rtol=1e-12, atol=1e-14)
    for (name, p), (_, q) in zip(ref.named_parameters(), model.named_parameters()):
        np.testing.assert_allclose(q.grad, p.grad, rtol=1e-10, atol=1e-14, err_msg=name)


def test_micro_batches_run_one_after_another_through_the_model(monkeypatch):
    model = make()
    sizes = []
    forward = type(model).forward
    monkeypatch.setattr(type(model), "forward", lambda self, x: sizes.append(len(x)) or forward(self, x))
    x, y = data(9)
    DataParallel(model, 1, micro_batch=4).forward_backward(x, y)
    assert sizes == [3, 3, 3]                 # ceil(9 / 4) = 3 near-equal micro-batches
    sizes.clear()
    DataParallel(model, 1, micro_batch=None).forward_backward(x, y)
    assert sizes == [9]
    with pytest.raises(ValueError, match="micro_batch must be a positive"):
        DataParallel(model, 1, micro_batch=0)


def test_float32_stays_float32_and_matches_to_round_off():
    ref, model = make(np.float32), make(np.float32)
    x, y = data(8)
    x = x.astype(np.float32)
    loss_ref, _ = serial(ref, x, y)
    loss, logits = DataParallel(model, 2).forward_backward(x, y)
    assert logits.dtype == np.float32 and loss.dtype == np.float32
    assert all(p.grad.dtype == np.float32 for _, p in model.named_parameters())
    np.testing.assert_allclose(loss, loss_ref, rtol=1e-6)
    for (name, p), (_, q) in zip(ref.named_parameters(), model.named_parameters()):
        np.testing.assert_allclose(q.grad, p.grad, rtol=1e-4, atol=1e-6 * abs(p.grad).max(),
                                   err_msg=name)


def test_gradients_accumulate_like_backward():
    ref, model = make(), make()
    x, y = data(6)
    dp = DataParallel(model, 2)
    for _ in range(2):                        # two passes without zero_grad: sums
        serial(ref, x, y)
        dp.forward_backward(x, y)
    for (name, p), (_, q) in zip(ref.named_parameters(), model.named_parameters()):
        np.testing.assert_allclose(q.grad, p.grad, rtol=1e-10, atol=1e-14, err_msg=name)


def test_replicas_follow_new_weights_and_eval_mode():
    ref, model = make(drop_rate=0.3), make(drop_rate=0.3)
    dp = DataParallel(model, 2)
    x, _ = data(6)
    new = {k: v + 0.01 for k, v in ref.state_dict().items()}
    ref.load_state_dict(new)
    model.load_state_dict(new)                # replaces the arrays the replicas pointed at
    ref.eval()
    dp.eval()                                 # no dropout: the outputs are deterministic
    np.testing.assert_allclose(dp(x), ref(x), rtol=1e-12, atol=1e-14)
    dp.train()
    assert model.training and all(r.training for r in dp.replicas)


def test_dropout_masks_come_from_the_model_generator():
    x, y = data(8)
    grads = []
    for _ in range(2):
        model = make(drop_rate=0.2, drop_path_rate=0.2)
        model.rng = np.random.default_rng(123)
        DataParallel(model, 2).forward_backward(x, y)
        grads.append(model.grads())
    for k in grads[0]:
        np.testing.assert_array_equal(grads[0][k], grads[1][k])
    # and the two halves do not share masks: a third seed gives other gradients
    model = make(drop_rate=0.2, drop_path_rate=0.2)
    model.rng = np.random.default_rng(124)
    DataParallel(model, 2).forward_backward(x, y)
    assert not np.allclose(model.grads()["head.weight"], grads[0]["head.weight"])


class _NoPool:
    def submit(self, *a, **k):
        raise AssertionError("a data-parallel thread handed work to the shared helper pool")


def test_blas_threads_are_restored_and_helpers_run_serially_inside_the_threads(monkeypatch):
    threadpoolctl = pytest.importorskip("threadpoolctl")
    monkeypatch.setattr(parallel, "CHUNK", 64)     # map_rows/bmm would split these small arrays
    monkeypatch.setenv("MINIVIT_NUM_THREADS", "2")
    before = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    ref, model = make(), make()
    x, y = data(8)
    serial(ref, x, y)
    dp = DataParallel(model)                        # 2 threads, one core each
    monkeypatch.setattr(parallel, "_pool", _NoPool())
    dp.forward_backward(x, y)
    after = [i["num_threads"] for i in threadpoolctl.threadpool_info() if i["user_api"] == "blas"]
    assert after == before
    np.testing.assert_allclose(model.grads()["blocks.0.attn.qkv.weight"],
                               ref.grads()["blocks.0.attn.qkv.weight"], rtol=1e-10)


def test_one_thread_is_the_plain_model():
    ref, model = make(), make()
    x, y = data(5)
    loss_ref, _ = serial(ref, x, y)
    dp = DataParallel(model, 1)
    assert dp.replicas == [model]
    loss, _ = dp.forward_backward(x, y)
    assert float(loss) == float(loss_ref)
    for (name, p), (_, q) in zip(ref.named_parameters(), model.named_parameters()):
        np.testing.assert_array_equal(q.grad, p.grad, err_msg=name)


def test_bad_input_is_a_clear_error_about_the_whole_batch():
    x, y = data(8)
    dp = DataParallel(make(), 2)
    with pytest.raises(ValueError, match="8 images but 7 targets"):
        dp.forward_backward(x, y[:7])
    with pytest.raises(ValueError, match=r"got shape \(8, 3, 12, 12\)"):
        dp.forward_backward(np.zeros((8, 3, 12, 12)), y)
    with pytest.raises(ValueError, match=r"got shape \(8, 3, 12, 12\)"):
        dp(np.zeros((8, 3, 12, 12)))
