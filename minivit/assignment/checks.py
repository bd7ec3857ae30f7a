"""The check registry and the helpers the checks share.

A check is a function of one argument, `run`, registered for a part with
`@check(part, title, ...)`. It calls the code under test only through `run`:

    y, cache = run("minivit.ops.linear:linear_forward", x, w, b)
    dx, dw, db = run("minivit.ops.linear:linear_backward", dy, cache)

In the student's copy (tests/test_<part>.py, pytest) `run` is `Local()`: the call happens
right there, on the student's code. In the grader `run` sends each call to the part's own
process, which runs the student's code and returns arrays; the check itself (every
comparison, every assert) runs in the grader. `run.local(name)` is a function computed in
the checking process: the student's own in their copy, the reference in the grader (a
gradient check differentiates it numerically). Two kinds:

* "assert": raises AssertionError with a message for the student when the code is wrong;
  a string it returns is shown as its output.
* "values": returns {name: array}; the grader computes the same check on the reference
  solution and compares (shape, dtype, error relative to the largest reference value:
  `tol` in float64, `tol32` in float32).

Public checks (public.py, public_model.py) ship with the student copy; hidden ones
(hidden.py) stay with the grader.
"""
import hashlib
import importlib
import math
from dataclasses import dataclass
from typing import Callable

import numpy as np

from ..gradcheck import numerical_gradient

CHECKS = {}         # "part.name" -> Check, in registration order
# The grader's secret for one grading (grader.py sets it): the hidden checks' seeds are
# combined with it (secret_rng, salted), so their inputs change from grading to grading and
# answers recorded in one (their expected values show in the feedback) cannot be replayed
# in the next. The public checks keep their seeds: what a student runs is what is graded.
SALT = None


def salted(seed):
    """A hidden check's seed combined with the grading's secret (see SALT) by a one-way hash:
    a seed that reaches the part's process (a dropout generator's) tells nothing of the
    others. Without a secret (outside the grader): the seed as written."""
    if SALT is None:
        return seed
    return int.from_bytes(hashlib.sha256(f"{SALT}:{seed}".encode()).digest()[:8], "little")


@dataclass(frozen=True)
class Check:
    part: str
    name: str                   # unique within the part; "part.name" is the check's id
    title: str
    func: Callable
    hidden: bool = False
    kind: str = "assert"        # "assert" | "values"
    weight: float = 1.0
    tol: float = 1e-8           # "values": largest error (relative to the largest value), float64
    tol32: float = 1e-4         # "values": the same for float32 outputs

    @property
    def id(self):
        return f"{self.part}.{self.name}"

    def run_standalone(self):
        """Run an "assert" check on the code of this process (the students' pytest)."""
        if self.kind != "assert":
            raise TypeError(f"{self.id} compares with reference values: only the grader runs it")
        return self.func(Local())


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
    import importlib.util
    importlib.import_module(__package__ + ".public")
    importlib.import_module(__package__ + ".public_model")
    if hidden and importlib.util.find_spec(__package__ + ".hidden") is not None:
        importlib.import_module(__package__ + ".hidden")
    return CHECKS


# --- calling the code under test --------------------------------------------------------
@dataclass(frozen=True)
class Rng:
    """A NumPy random generator made from `seed` where the call runs (a fresh one per call)."""
    seed: int


def resolve(name):
    """'package.module:function' (or ':Class.method') -> the object."""
    module, _, qualname = name.partition(":")
    obj = importlib.import_module(module)
    for attr in qualname.split("."):
        obj = getattr(obj, attr)
    return obj


def _realise(value):
    if isinstance(value, Rng):
        return np.random.default_rng(value.seed)
    if type(value) in (tuple, list):
        return type(value)(_realise(v) for v in value)
    if type(value) is dict:
        return {k: _realise(v) for k, v in value.items()}
    return value


class Local:
    """Calls the code of this process: the student's copy under their pytest."""
    label = "your forward pass"          # what a gradient check differentiates numerically

    def __call__(self, name, *args, **kwargs):
        return resolve(name)(*_realise(args), **_realise(kwargs))

    def local(self, name):
        return lambda *args, **kwargs: self(name, *args, **kwargs)


# --- helpers ------------------------------------------------------------------------------
def rng(seed):
    return np.random.default_rng(seed)


def secret_rng(seed):
    """The hidden checks' generator: `seed` salted with the grading's secret."""
    return np.random.default_rng(salted(seed))


def randn(g, *shape, dtype=np.float64, scale=1.0, shift=0.0):
    return (shift + scale * g.standard_normal(shape)).astype(dtype)


def expect_array(name, a, shape, dtype):
    """`a` is an array of that shape and dtype (float32 stays float32...)."""
    assert a is not None, f"{name} is None, expected an array of shape {tuple(shape)}"
    assert isinstance(a, np.ndarray), f"{name} should be an array of shape {tuple(shape)}, got {type(a).__name__}"
    assert tuple(a.shape) == tuple(shape), f"{name} has shape {tuple(a.shape)}, expected {tuple(shape)}"
    assert a.dtype == np.dtype(dtype), (f"{name} has dtype {a.dtype}, expected {np.dtype(dtype)} (an op "
                                        f"keeps its input's dtype: mind float64 constants and np.zeros)")


def as_array(name, a):
    """A returned value as a float array, or an AssertionError saying what it was."""
    assert a is not None, f"{name} is None, expected an array"
    assert isinstance(a, (np.ndarray, np.generic, float, int)) and not isinstance(a, bool), \
        f"{name} should be an array, got {type(a).__name__}"
    return np.asarray(a)


def rel_error(a, n, floor=1e-8):
    """CS231n's elementwise relative error, the worst element."""
    a, n = np.asarray(a, np.float64), np.asarray(n, np.float64)
    return float(np.max(np.abs(a - n) / np.maximum(floor, np.abs(a) + np.abs(n)))) if a.size else 0.0


def gradcheck(f, inputs, analytic, dout=None, tol=1e-7, num_checks=None, zero_atol=None, seed=0,
              label="the forward pass"):
    """Compare hand-written gradients with central differences (float64).

    f: no arguments, reads the arrays of `inputs` ({name: array}, perturbed in place);
    analytic: {name: the student's gradient}; dout: the upstream gradient of f's output;
    label: what f computes, for the message. zero_atol: skip elements where both gradients
    are below it (exact zeros that a finite difference sees as round-off). Raises
    AssertionError naming every wrong gradient, where it is worst and by how much."""
    lines, bad = [], []
    for k, (name, x) in enumerate(inputs.items()):
        g = analytic.get(name)
        if g is None:
            bad.append(name)
            lines.append(f"  d{name}: none returned (expected an array of shape {x.shape})")
            continue
        if not isinstance(g, np.ndarray) or g.dtype.kind not in "fiu":
            bad.append(name)
            lines.append(f"  d{name}: not an array of numbers ({type(g).__name__})")
            continue
        if g.shape != x.shape:
            bad.append(name)
            lines.append(f"  d{name}: shape {g.shape}, expected {x.shape} (the shape of {name})")
            continue
        num, idx = numerical_gradient(f, x, dout, num_checks=num_checks, seed=seed + k)
        a, n = g.reshape(-1)[idx].astype(np.float64), num.reshape(-1)[idx]
        keep = np.ones(len(idx), bool)
        if zero_atol is not None:
            keep = (np.abs(a) >= zero_atol) | (np.abs(n) >= zero_atol)
        a, n, idx = a[keep], n[keep], idx[keep]
        if not np.all(np.isfinite(a)):
            err, worst = math.inf, int(np.argmin(np.isfinite(a)))
        elif a.size:
            each = np.abs(a - n) / np.maximum(1e-8, np.abs(a) + np.abs(n))
            worst = int(np.argmax(each))
            err = float(each[worst])
        else:
            err, worst = 0.0, None
        if err < tol:
            lines.append(f"  d{name}: relative error {err:.1e} (ok, tolerance {tol:.0e})")
            continue
        bad.append(name)
        at = [int(i) for i in np.unravel_index(int(idx[worst]), x.shape)]
        lines.append(f"  d{name}: WRONG, relative error {err:.1e} (tolerance {tol:.0e}); worst at "
                     f"{name}{at}: numerically {n[worst]:.6g}, yours {a[worst]:.6g}")
    report = "\n".join(lines)
    assert not bad, (f"wrong gradient(s): {', '.join('d' + b for b in bad)} (compared with central "
                     f"differences of {label})\n{report}")
    return report


def directional_gradcheck(f, inputs, analytic, dout=None, seed=0, tol=1e-6, h=1e-4, label="the forward pass"):
    """The gradient check for inputs too large to difference element by element (the size
    of a real ViT). For each input x and the student's gradient g: along one random
    direction v (of length 1), the central difference (L(x + h v) - L(x - h v)) / 2h of
    L = sum(f() * dout) (five-point stencil, float64) must equal <g, v>. In the grader v is drawn from `seed`
    salted with the grading's secret (SALT): nobody knows it in advance, so only the whole
    gradient passes, and computing it by finite differences (one forward pass per element)
    takes hours at this size. h: the step along v (a scalar f: a mean over many terms moves
    little, so its round-off needs a longer step). f, inputs, analytic, dout, label: as for
    gradcheck."""
    lines, bad = [], []
    for k, (name, x) in enumerate(inputs.items()):
        g = analytic.get(name)
        if not (isinstance(g, np.ndarray) and g.dtype.kind in "fiu" and g.shape == x.shape):
            bad.append(name)
            lines.append(f"  d{name}: expected an array of shape {x.shape}, got "
                         f"{g.shape if isinstance(g, np.ndarray) else type(g).__name__}")
            continue
        v = np.random.default_rng(salted(seed + k)).standard_normal(x.shape)
        v /= np.linalg.norm(v)
        x0 = x.copy()

        def moved(step):
            x[...] = x0 + step * v
            return np.array(f(), dtype=np.float64)           # a copy: f may return a view of x
        d1, d2 = moved(h) - moved(-h), moved(2 * h) - moved(-2 * h)
        x[...] = x0
        d = (8 * d1 - d2) / (12 * h)
        num = float(d.sum() if dout is None else (d * dout).sum())
        ana = float((g.astype(np.float64) * v).sum())
        err = abs(ana - num) / max(1e-8, abs(ana) + abs(num))
        if err < tol:
            lines.append(f"  d{name}: relative error {err:.1e} along a random direction (ok, tolerance {tol:.0e})")
            continue
        bad.append(name)
        lines.append(f"  d{name}: WRONG along a random direction v: the derivative of {label} along v is "
                     f"{num:.6g}, your gradient gives <d{name}, v> = {ana:.6g} (relative error {err:.1e})")
    report = "\n".join(lines)
    assert not bad, (f"wrong gradient(s) at the size of a real ViT: {', '.join('d' + b for b in bad)}\n{report}")
    return report
