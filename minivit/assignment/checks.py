"""The check registry and the helpers the checks share.

A check is a function registered for a part with `@check(part, title, ...)`:

* kind "assert": it raises AssertionError (or anything else) when the student's code is
  wrong; returning normally passes. What it returns (a string or None) is shown as output.
* kind "values": it returns {name: array or None} computed by the student's code on
  inputs made from fixed seeds. The grader computes the same function on the reference
  solution, in its own process, and compares (shape, dtype, relative error `tol`): the
  expected values never enter the process that runs student code.

Public checks (public.py) ship with the student copy and run there under pytest
(tests/test_<part>.py); hidden ones (hidden.py) stay with the grader.
"""
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..gradcheck import numerical_gradient

CHECKS = {}         # "part.name" -> Check, in registration order


@dataclass(frozen=True)
class Check:
    part: str
    name: str                   # unique within the part; "part.name" is the check's id
    title: str
    func: Callable
    hidden: bool = False
    kind: str = "assert"        # "assert" | "values"
    weight: float = 1.0
    tol: float = 1e-8           # "values": largest relative error allowed (float64)
    tol32: float = 1e-4         # "values": the same for float32 outputs

    @property
    def id(self):
        return f"{self.part}.{self.name}"

    def run_standalone(self):
        """Run an "assert" check in this process (the students' pytest does this)."""
        if self.kind != "assert":
            raise TypeError(f"{self.id} compares with reference values: only the grader runs it")
        return self.func()


def check(part, title, *, hidden=False, kind="assert", weight=1.0, tol=1e-8, tol32=1e-4):
    def register(func):
        c = Check(part, func.__name__, title, func, hidden, kind, weight, tol, tol32)
        if c.id in CHECKS:
            raise ValueError(f"check {c.id} registered twice")
        CHECKS[c.id] = c
        return func
    return register


def checks_for(part, public_only=False):
    return [c for c in CHECKS.values() if c.part == part and not (public_only and c.hidden)]


def load(hidden=True):
    """Import the check modules (registering their checks); the hidden ones only where
    they exist (the grader's copy of the package). Returns the registry."""
    import importlib
    import importlib.util
    importlib.import_module(__package__ + ".public")
    if hidden and importlib.util.find_spec(__package__ + ".hidden") is not None:
        importlib.import_module(__package__ + ".hidden")
    return CHECKS


# --- helpers ------------------------------------------------------------------------------
def rng(seed):
    return np.random.default_rng(seed)


def randn(g, *shape, dtype=np.float64, scale=1.0, shift=0.0):
    return (shift + scale * g.standard_normal(shape)).astype(dtype)


def expect_array(name, a, shape, dtype):
    """`a` is an array of that shape and dtype (float32 stays float32...)."""
    assert a is not None, f"{name} is None"
    assert hasattr(a, "shape") and hasattr(a, "dtype"), \
        f"{name} should be an array, got {type(a).__name__}"
    assert tuple(a.shape) == tuple(shape), f"{name} has shape {tuple(a.shape)}, expected {tuple(shape)}"
    assert np.dtype(a.dtype) == np.dtype(dtype), f"{name} has dtype {a.dtype}, expected {np.dtype(dtype)}"


def rel_error(a, n, floor=1e-8):
    """CS231n's elementwise relative error, the worst element."""
    a, n = np.asarray(a, np.float64), np.asarray(n, np.float64)
    return float(np.max(np.abs(a - n) / np.maximum(floor, np.abs(a) + np.abs(n)))) if a.size else 0.0


def gradcheck(f, inputs, analytic, dout=None, tol=1e-7, num_checks=None, zero_atol=None, seed=0):
    """Compare hand-written gradients with central differences (float64).

    f: no arguments, reads the arrays of `inputs` ({name: array}, perturbed in place);
    analytic: {name: the student's gradient}; dout: the upstream gradient of f's output.
    zero_atol: skip elements where both gradients are below it (exact zeros that a finite
    difference sees as round-off). Raises AssertionError naming every wrong gradient."""
    lines, bad = [], []
    for k, (name, x) in enumerate(inputs.items()):
        g = analytic.get(name)
        if g is None:
            bad.append(name)
            lines.append(f"  {name}: no gradient returned")
            continue
        g = np.asarray(g)
        if g.shape != x.shape:
            bad.append(name)
            lines.append(f"  {name}: gradient has shape {g.shape}, expected {x.shape}")
            continue
        num, idx = numerical_gradient(f, x, dout, num_checks=num_checks, seed=seed + k)
        a, n = g.reshape(-1)[idx], num.reshape(-1)[idx]
        if zero_atol is not None:
            keep = (np.abs(a) >= zero_atol) | (np.abs(n) >= zero_atol)
            a, n = a[keep], n[keep]
        if not np.all(np.isfinite(a)):
            err = math.inf
        else:
            err = rel_error(a, n)
        ok = err < tol
        lines.append(f"  {name}: relative error {err:.2e} ({'ok' if ok else 'WRONG'}, tolerance {tol:.0e})")
        if not ok:
            bad.append(name)
    report = "\n".join(lines)
    assert not bad, f"wrong gradient(s): {', '.join(bad)}\n{report}"
    return report


def compare(got, expected, tol=1e-8, tol32=1e-4):
    """Compare the "values" of a check: {name: array or None} with the reference's.
    Returns (ok, report). The error is relative to the largest reference value
    (max |got - expected| / max |expected|), so a value near zero is not held to more
    digits than the array has."""
    lines, ok = [], True
    for name, e in expected.items():
        if name not in got:
            lines.append(f"  {name}: missing")
            ok = False
            continue
        g = got[name]
        if e is None or g is None:
            same = e is None and g is None
            lines.append(f"  {name}: {'None, as expected' if same else f'got {g!r:.40}, expected {e!r:.40}'}")
            ok &= same
            continue
        g, e = np.asarray(g), np.asarray(e)
        if g.shape != e.shape:
            lines.append(f"  {name}: shape {g.shape}, expected {e.shape}")
            ok = False
            continue
        if g.dtype != e.dtype:
            lines.append(f"  {name}: dtype {g.dtype}, expected {e.dtype}")
            ok = False
            continue
        if g.dtype.kind not in "fc":
            same = bool(np.array_equal(g, e))
            lines.append(f"  {name}: {'equal' if same else 'DIFFERENT'}")
            ok &= same
            continue
        t = tol32 if g.dtype == np.float32 else tol
        if not np.all(np.isfinite(g)) and not np.array_equal(np.isfinite(g), np.isfinite(e)):
            lines.append(f"  {name}: contains NaN or inf (the reference does not)")
            ok = False
            continue
        scale = float(np.max(np.abs(e[np.isfinite(e)]), initial=0.0))
        err = float(np.max(np.abs(np.where(np.isfinite(e), g - e, 0.0)), initial=0.0)) / max(scale, 1e-30)
        good = err <= t
        lines.append(f"  {name}: relative error {err:.2e} ({'ok' if good else 'WRONG'}, tolerance {t:.0e})")
        ok &= good
    return ok, "\n".join(lines)
