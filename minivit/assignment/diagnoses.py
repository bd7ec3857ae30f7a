"""What a failing "values" check most likely means: the mistakes students really make.

Each diagnosis is a wrong-but-plausible variant of one function of the solution (softmax
without the max shift, LayerNorm over the wrong axis, attention without 1/sqrt(Dh), a
backward pass missing one term...). When a hidden check fails, the grader runs the check
again on the reference with that function replaced by the variant (in its own process, on
the same inputs) and, if the student's values equal the variant's wherever they differ
from the reference, puts its message beside the check. Grader-only, like hidden.py: it is
never in the student copy or in a part's process.
"""
import math
import sys
from contextlib import contextmanager
from dataclasses import dataclass

import numpy as np

from .checks import resolve
from .feedback import close
from .remote import REFERENCE_LOCK, Reference


@dataclass(frozen=True)
class Diagnosis:
    check: str              # the check's id ("softmax.softmax_values")
    replace: dict           # {"module:function" (or "module:Class.method"): the variant}
    message: str
    explains: str = ""      # the values it explains: names starting with this ("" = all)


DIAGNOSES = []


def diagnosis(check, target, message, explains=""):
    def register(variant):
        DIAGNOSES.append(Diagnosis(check, {target: variant}, message, explains))
        return variant
    return register


@contextmanager
def replaced(replacements):
    """The package with some functions replaced, everywhere they are bound (the modules that
    imported them by name, the kernel set), for the duration. Hold REFERENCE_LOCK."""
    undo = []
    try:
        for name, new in replacements.items():
            module, _, qualname = name.partition(":")
            owner_name, _, attr = qualname.rpartition(".")
            old = resolve(name)
            if owner_name:
                owners = [resolve(f"{module}:{owner_name}")]
            else:
                owners = [m for k, m in list(sys.modules.items())
                          if k.startswith("minivit") and m is not None and vars(m).get(attr) is old]
            for owner in owners:
                undo.append((owner, attr, old))
                setattr(owner, attr, new)
        yield
    finally:
        for owner, attr, old in reversed(undo):
            setattr(owner, attr, old)


def diagnose(check, got, expected):
    """The messages of the diagnoses whose variant explains the student's values."""
    messages = []
    for d in (d for d in DIAGNOSES if d.check == check.id):
        differing = [k for k in expected if k.startswith(d.explains)
                     and not close(got.get(k) if isinstance(got, dict) else None, expected[k], check.tol, check.tol32)]
        if not differing:
            continue
        with REFERENCE_LOCK, replaced(d.replace), np.errstate(all="ignore"):
            try:
                variant = check.func(Reference())
            except Exception:                                # noqa: BLE001 - a variant may not run everywhere
                continue
        if all(close(got.get(k), variant.get(k), check.tol, check.tol32) for k in differing):
            messages.append(d.message)
    return messages


# --- softmax ------------------------------------------------------------------------------
@diagnosis("softmax.softmax_values", "minivit.ops.softmax:softmax_forward",
           "Likely cause: exp overflows on large logits (exp(100) is inf in float32, so inf / inf = NaN). "
           "Subtract the max of each slice along `axis` (keepdims=True) before exp: the shift cancels in "
           "the ratio, and the largest exponent becomes exp(0) = 1.")
def softmax_without_shift(x, axis=-1):
    e = np.exp(x)
    y = e / e.sum(axis=axis, keepdims=True)
    return y, (y, axis)


@diagnosis("softmax.softmax_values", "minivit.ops.softmax:softmax_forward",
           "Likely cause: softmax along the last axis whatever `axis` says: take the max and the sum "
           "along `axis` (keepdims=True).")
def softmax_last_axis(x, axis=-1):
    e = np.exp(x - x.max(axis=-1, keepdims=True))
    y = e / e.sum(axis=-1, keepdims=True)
    return y, (y, axis)


# --- layernorm ----------------------------------------------------------------------------
def _layernorm_over(axis, ddof=0, eps_outside=False):
    def forward(x, gamma, beta, eps=1e-6):
        mu = x.mean(axis=axis, keepdims=True)
        var = x.var(axis=axis, keepdims=True, ddof=ddof)
        rstd = 1.0 / (np.sqrt(var) + eps) if eps_outside else 1.0 / np.sqrt(var + eps)
        xhat = (x - mu) * rstd
        return gamma * xhat + beta, (xhat, rstd, gamma)
    return forward


for _axis, _words in ((0, "axis 0 (the batch: that is batch norm)"), (None, "the whole array")):
    diagnosis("layernorm.layernorm_values", "minivit.ops.layernorm:layernorm_forward",
              f"Likely cause: the mean and variance are taken over {_words}. LayerNorm normalises each "
              f"token on its own: statistics over the last axis (axis=-1, keepdims=True).",
              explains="y ")(_layernorm_over(_axis))
diagnosis("layernorm.layernorm_values", "minivit.ops.layernorm:layernorm_forward",
          "Likely cause: the unbiased variance (dividing by D - 1). LayerNorm uses the biased one, the mean "
          "of (x - mu)^2 (np.var's default, ddof=0).", explains="y ")(_layernorm_over(-1, ddof=1))
diagnosis("layernorm.layernorm_values", "minivit.ops.layernorm:layernorm_forward",
          "Likely cause: eps added outside the square root. It goes inside: 1 / sqrt(var + eps).",
          explains="y ")(_layernorm_over(-1, eps_outside=True))


# --- gelu ---------------------------------------------------------------------------------
@diagnosis("gelu.gelu_values", "minivit.ops.gelu:gelu_forward",
           "Likely cause: the derivative misses a term of the product rule. For the exact form, "
           "d/dx [x Phi(x)] = Phi(x) + x phi(x) with phi(x) = exp(-x^2/2) / sqrt(2 pi); for the tanh form, "
           "(1 + t)/2 + x (1 - t^2)/2 du/dx.", explains="dx ")
def gelu_derivative_without_second_term(x, approximate="none"):
    from ..ops.gelu import normal_cdf
    if approximate == "none":
        cdf = normal_cdf(x)
        return x * cdf, cdf
    t = np.tanh(math.sqrt(2.0 / math.pi) * (x + 0.044715 * x ** 3))
    return 0.5 * x * (1.0 + t), 0.5 * (1.0 + t)


# --- attention ----------------------------------------------------------------------------
def _sdpa(scale_of, axis=-1):
    def forward(q, k, v, *, attn_drop=0.0, train=False, rng=None):
        from ..ops.dropout import dropout_forward
        from ..ops.softmax import softmax_forward
        scale = scale_of(q.shape[-1])
        a, c_soft = softmax_forward((q @ k.swapaxes(-1, -2)) * scale, axis=axis)
        a_drop, c_drop = dropout_forward(a, attn_drop, train, rng)
        return a_drop @ v, a, (q, k, v, a_drop, c_soft, c_drop, scale)
    return forward


diagnosis("attention.sdpa_values", "minivit.ops.sdpa:sdpa_forward",
          "Likely cause: the scores are not scaled. A = softmax(q k^T / sqrt(Dh)) with Dh = q.shape[-1], the "
          "head size: q.k sums Dh products, and the scale keeps the scores' variance near 1 so softmax does "
          "not saturate.", explains="ctx ")(_sdpa(lambda dh: 1.0))
diagnosis("attention.sdpa_values", "minivit.ops.sdpa:sdpa_forward",
          "Likely cause: the scores are divided by Dh; the scale is 1 / sqrt(Dh).", explains="ctx ")(_sdpa(lambda dh: 1.0 / dh))
diagnosis("attention.sdpa_values", "minivit.ops.sdpa:sdpa_forward",
          "Likely cause: softmax over the queries (axis -2). Each row of A, one query, is a distribution over "
          "the keys: softmax over the last axis.", explains="ctx ")(_sdpa(lambda dh: dh ** -0.5, axis=-2))


# --- block --------------------------------------------------------------------------------
def _block_backward(attn_residual=True, mlp_residual=True):
    def backward(dy, cache):
        from ..ops.attention import mhsa_backward
        from ..ops.block import prefixed
        from ..ops.mlp import mlp_backward
        k, c_n1, c_attn, c_dp1, c_n2, c_mlp, c_dp2 = cache
        dh, g_mlp = mlp_backward(k.drop_path_backward(dy, c_dp2), c_mlp)
        dh, dg2, db2 = k.layernorm_backward(dh, c_n2)
        dx = dy + dh if mlp_residual else dh
        dh, g_attn = mhsa_backward(k.drop_path_backward(dx, c_dp1), c_attn)
        dh, dg1, db1 = k.layernorm_backward(dh, c_n1)
        dx = dx + dh if attn_residual else dh
        return dx, {"norm1.weight": dg1, "norm1.bias": db1, "norm2.weight": dg2, "norm2.bias": db2,
                    **prefixed(g_attn, "attn."), **prefixed(g_mlp, "mlp.")}
    return backward


for _which, _flags in (("MLP", {"mlp_residual": False}), ("attention", {"attn_residual": False})):
    diagnosis("block.block_values", "minivit.ops.block:block_backward",
              f"Likely cause: the backward pass drops the gradient of the {_which} branch's residual path. "
              f"For y = x + f(x), dx = dy + (df/dx)^T dy: the straight path adds dy itself.",
              explains="block dx")(_block_backward(**_flags))


# --- patch_embed, cls_pool ----------------------------------------------------------------
@diagnosis("patch_embed.patch_embed_values", "minivit.ops.patch:patchify_forward",
           "Likely cause: each patch is flattened in (P, P, C) order (channel last). Flatten it in (C, P, P) "
           "order, the layout of a Conv2d weight (D, C, P, P), so that w.reshape(D, -1) matches.",
           explains="patches")
def patchify_channels_last(x, patch_size):
    B, C, H, W = x.shape
    P = patch_size
    x = x.reshape(B, C, H // P, P, W // P, P).transpose(0, 2, 4, 3, 5, 1)
    return x.reshape(B, (H // P) * (W // P), C * P * P), (B, C, H, W, P)


@diagnosis("cls_pool.cls_pool_values", "minivit.ops.pool:pool_forward",
           "Likely cause: 'avg' pooling includes the [CLS] token. timm averages the N patch tokens only, "
           "x[:, 1:].", explains="pooled (avg")
def avg_pool_with_cls(x, mode):
    if mode == "token":
        return x[:, 0], (x.shape, mode)
    return x.mean(axis=1), (x.shape, mode)


# --- loss ---------------------------------------------------------------------------------
@diagnosis("loss.loss_values", "minivit.ops.loss:cross_entropy_backward",
           "Likely cause: dlogits is not divided by the batch size. The loss is the mean over the batch, so "
           "dL/dz = (softmax(z) - t) / B, times dloss.", explains="dlogits")
def cross_entropy_backward_sum(dloss, cache):
    probs, t = cache
    return (probs - t) * dloss


# --- adamw --------------------------------------------------------------------------------
def _adamw_step(bias_correction=True, decoupled=True):
    def step(self):
        self.step_count += 1
        t = self.step_count
        bc1, bc2 = (1.0 - self.b1 ** t, 1.0 - self.b2 ** t) if bias_correction else (1.0, 1.0)
        for name, p in self.params:
            if p.grad is None:
                continue
            g = p.grad + self.weight_decay * p.data if (not decoupled and self.decay[name]) else p.grad
            m, v = self._buffer("exp_avg", name, p), self._buffer("exp_avg_sq", name, p)
            m *= self.b1
            m += (1.0 - self.b1) * g
            v *= self.b2
            v += (1.0 - self.b2) * (g * g)
            if decoupled and self.decay[name]:
                p.data *= 1.0 - self.lr * self.weight_decay
            p.data -= (self.lr / bc1) * (m / (np.sqrt(v / bc2) + self.eps))
    return step


diagnosis("adamw.adamw_values", "minivit.optim:AdamW.step",
          "Likely cause: no bias correction. Divide m by 1 - beta1^t and v by 1 - beta2^t (t = the step "
          "count): the moments start at zero.")(_adamw_step(bias_correction=False))
diagnosis("adamw.adamw_values", "minivit.optim:AdamW.step",
          "Likely cause: the weight decay goes through the gradient (Adam with L2). AdamW decouples it: "
          "w *= 1 - lr * wd, separately from the moments.")(_adamw_step(decoupled=False))
