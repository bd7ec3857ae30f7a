"""Gradient checking: compare a hand-written backward pass with central differences.

    df/dx_i  ~  (f(x + h e_i) - f(x - h e_i)) / 2h                      error O(h^2)

in float64, and by default its Richardson-extrapolated form (the five-point stencil)

    df/dx_i  ~  (8 [f(x+h) - f(x-h)] - [f(x+2h) - f(x-2h)]) / 12h         error O(h^4)

which with h = 1e-3 is accurate to ~1e-12 even where the gradient is small or the
function curved (softmax, GELU, LayerNorm), so tolerances can be tight (1e-7).

Relative error as CS231n defines it, elementwise, then the worst element:

    rel_error(a, n) = max |a - n| / max(floor, |a| + |n|)      floor = 1e-8

Rules of thumb (float64): < 1e-7 is right; 1e-7..1e-4 look closer (kinks such as
ReLU, or tiny gradients where round-off dominates); > 1e-2 is a bug.

Use it on a single op:

    f = lambda: gelu_forward(x)[0]
    dx = gelu_backward(dout, gelu_forward(x)[1])
    rel_error(dx, numerical_gradient(f, x, dout))

or on a whole model with `check_module`. `cmp(name, ours, ref)` prints one line per tensor
(exact | close | max difference) and returns those three, for notebooks and graders.
"""
from typing import NamedTuple

import numpy as np

from .backend import get_array_module, to_numpy


def rel_error(a, n, floor=1e-8):
    """CS231n's relative error: the max over elements of |a - n| / max(floor, |a| + |n|)."""
    a, n = to_numpy(a).astype(np.float64), to_numpy(n).astype(np.float64)
    if a.shape != n.shape:
        raise ValueError(f"shapes differ: {a.shape} vs {n.shape}")
    if a.size == 0:
        return 0.0
    return float(np.max(np.abs(a - n) / np.maximum(floor, np.abs(a) + np.abs(n))))


class Comparison(NamedTuple):
    """What `cmp` found: bit-for-bit equal, equal within tolerance, the worst difference."""
    exact: bool
    close: bool
    max_diff: float


def cmp(name, ours, ref, rtol=1e-5, atol=1e-8, quiet=False):
    """Compare one tensor with a reference and print one line (after Karpathy's makemore
    part 4), e.g. `dW | exact: False | close: True  | max diff: 3.1e-17`.

    exact: every element equal (and the same shape);  close: np.allclose(ours, ref, rtol,
    atol);  max diff: max |ours - ref|. Returns the Comparison, so a cell can
    `assert cmp(...).close`. Shapes must match (no broadcasting: a (D,) gradient compared
    with a (1, D) reference is a bug worth seeing)."""
    a, r = to_numpy(ours), to_numpy(ref)
    if a.shape != r.shape:
        raise ValueError(f"{name}: shapes differ: {a.shape} vs {r.shape}")
    a64, r64 = a.astype(np.float64), r.astype(np.float64)
    exact = bool(np.array_equal(a, r))
    close = bool(np.allclose(a64, r64, rtol=rtol, atol=atol))
    max_diff = float(np.max(np.abs(a64 - r64))) if a.size else 0.0
    if not quiet:
        print(f"{name:<16s} | exact: {exact!s:<5} | close: {close!s:<5} | max diff: {max_diff:.2e}")
    return Comparison(exact, close, max_diff)


def _sample(size, num_checks, rng):
    if num_checks is None or num_checks >= size:
        return np.arange(size)
    return np.sort(rng.choice(size, num_checks, replace=False))


def numerical_gradient(f, x, dout=None, h=1e-3, num_checks=None, seed=0, indices=None,
                       order=4):
    """Central-difference gradient of  L = sum(f() * dout)  with respect to x.

    order: 2 for the plain (f(x+h) - f(x-h)) / 2h (then use h ~ 1e-5), 4 (default) for the
           five-point stencil.
    f:     takes no arguments and reads x (which is perturbed in place, then restored).
    dout:  upstream gradient, shape of f()'s output (None: f() returns a scalar loss).
    num_checks: sample that many elements of x (sparse check for large tensors); the
           others are left 0 and only the sampled ones should be compared (see `indices`).
    Returns (grad, indices): grad has x's shape (on the host), indices are the flat
    positions that were evaluated.
    """
    if x.dtype != np.float64:
        raise ValueError(f"gradient checks need float64 (float32 round-off swamps h); got {x.dtype}")
    if not x.flags.c_contiguous:
        raise ValueError("x must be C-contiguous so it can be perturbed in place")
    flat = x.reshape(-1)                       # a view: writes go to x
    if indices is None:
        indices = _sample(x.size, num_checks, np.random.default_rng(seed))

    if order not in (2, 4):
        raise ValueError(f"order must be 2 or 4, got {order}")

    def diff(i, step):
        """L(x + step e_i) - L(x - step e_i), differencing the *outputs* before the sum with
        dout: round-off then scales with each output's size, not with the whole sum's."""
        old = flat[i].item()
        flat[i] = old + step
        fp = f().copy()                    # copies: f may return a view of x
        flat[i] = old - step
        fm = f().copy()
        flat[i] = old
        d = fp - fm
        return float(d.sum() if dout is None else (d * dout).sum())

    grad = np.zeros(x.size)
    for i in indices:
        if order == 2:
            grad[i] = diff(i, h) / (2 * h)
        else:
            grad[i] = (8 * diff(i, h) - diff(i, 2 * h)) / (12 * h)
    return grad.reshape(x.shape), indices


def check_arrays(f, arrays, analytic, dout=None, h=1e-3, num_checks=None, seed=0):
    """Relative error for each named input: {name: rel_error}.

    arrays:   {name: array f reads}      analytic: {name: hand-written gradient}
    """
    return {name: rel_error(a, n)
            for name, (a, n, _) in _sampled_pairs(f, arrays, analytic, dout, h, num_checks, seed).items()}


def _sampled_pairs(f, arrays, analytic, dout, h, num_checks, seed):
    """{name: (analytic, numerical, flat indices)} at the sampled elements of each array."""
    pairs = {}
    for k, (name, x) in enumerate(arrays.items()):
        num, idx = numerical_gradient(f, x, dout, h, num_checks, seed + k)
        pairs[name] = (to_numpy(analytic[name]).reshape(-1)[idx], num.reshape(-1)[idx], idx)
    return pairs


def check_module(model, x, dout=None, h=1e-3, num_checks=20, seed=0, zero_atol=None):
    """Gradient-check a whole model (any Module with forward/backward, e.g. minivit.ViT) in
    float64: every parameter and the input x, `num_checks` sampled elements each.

    Returns {name: rel_error} with 'input' for x. Run it in eval mode (dropout must be
    off, or the function changes between evaluations).

    zero_atol: elements where both gradients are below this in absolute value are reported
    in the second return value instead (e.g. the key bias of attention, whose gradient is
    exactly zero: softmax ignores a constant added to every score of a row, so round-off
    is all a finite difference can see there). None: compare every element.
    """
    if model.training:
        raise ValueError("call model.eval() first: dropout makes the function random")
    xp = get_array_module(x)
    rng = np.random.default_rng(seed)
    out = model(x)
    if dout is None:
        dout = xp.asarray(rng.standard_normal(out.shape))
    model.zero_grad()
    dx = model.backward(dout)
    arrays = {"input": x, **{n: p.data for n, p in model.named_parameters()}}
    analytic = {"input": dx, **{n: p.grad for n, p in model.named_parameters()}}
    errors, zeros = {}, {}
    pairs = _sampled_pairs(lambda: model(x), arrays, analytic, dout, h, num_checks, seed)
    for name, (a, n, idx) in pairs.items():
        keep = np.ones(len(idx), bool)
        if zero_atol is not None:
            keep = (np.abs(a) >= zero_atol) | (np.abs(n) >= zero_atol)
            if (~keep).any():
                zeros[name] = idx[~keep]
        errors[name] = rel_error(a[keep], n[keep])
    return (errors, zeros) if zero_atol is not None else errors
