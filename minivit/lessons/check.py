"""The checks of the lessons' exercises, for the learner to read.

A check cell compares what the learner's function returns with a reference, tensor by
tensor, inside `exercise(name)`:

    with check.exercise("patchify"):
        for P in (4, 8):
            check.exact(f"patches, P={P}", patchify(x, P), ops.patchify_forward(x, P)[0])

Each comparison prints one line (after Karpathy's `cmp` and CS231n's `rel_error`):

    patches, P=4      | exact: True  | close: True  | max diff 0.0e+00
    patches, P=8      | exact: False | close: False | max diff 9.1e-01 | worst at [0, 3, 17]: got 0.1204, expected 1.031   <- FAILED

(`close`: np.allclose with the check's tolerance; rtol 1e-5, atol 1e-8 for the others)

and at the end of the `with` block the cell fails (CheckFailed) if any comparison did,
naming the cases that failed. If the learner's function raised NotImplementedError (the
exercise is still the TODO), the cell fails at once with one line, ExerciseNotDone:
"exercise patchify is not done yet: fill in the cell above". In Jupyter both are shown as
their message alone, without a traceback; any other error in the learner's code keeps its
traceback, which points at the line to fix.

The three comparisons, each returning True when it passed:

    exact(name, got, expected)                          every element equal
    close(name, got, expected, rtol=1e-6, atol=1e-9)    np.allclose (float64 round-off)
    rel_error(name, got, expected, tol=1e-7)            CS231n's max |a-b| / max(1e-8, |a|+|b|)

Outside an `exercise` block a failed comparison fails at once.
"""
import contextlib

import numpy as np

from ..backend import to_numpy
from ..gradcheck import rel_error as _rel_error

_RED, _GREEN, _RESET = "\x1b[31m", "\x1b[32m", "\x1b[0m"
_NAME_WIDTH = 28


class CheckFailed(AssertionError):
    """A check cell's verdict. Jupyter shows its message alone (the lines printed above it
    say what was compared), not a traceback into this module."""

    def _render_traceback_(self):          # IPython's hook for a custom error display
        return [f"{_RED}{type(self).__name__}: {line}{_RESET}" for line in str(self).split("\n")]


class ExerciseNotDone(CheckFailed):
    """The function checked still raises NotImplementedError: its TODO is not filled in."""


class _Exercise:
    def __init__(self, name):
        self.name, self.passed, self.failed = name, 0, []


_running = []        # the exercise blocks being run (a stack: a block may call a helper that checks)


@contextlib.contextmanager
def exercise(name):
    """Check exercise `name`: every comparison inside the block prints its line, and the
    block fails at its end if any did (CheckFailed), or at once with ExerciseNotDone if the
    learner's code raised NotImplementedError."""
    ex = _Exercise(name)
    _running.append(ex)
    try:
        yield ex
    except NotImplementedError as e:
        raise ExerciseNotDone(_not_done(name, e)) from None
    finally:
        _running.pop()
    total = ex.passed + len(ex.failed)
    if ex.failed:
        raise CheckFailed(f"exercise {name}: {len(ex.failed)} of {total} checks failed:\n  "
                          + "\n  ".join(ex.failed))
    print(f"{_GREEN}exercise {name}: all {total} checks passed{_RESET}")


def _not_done(name, error):
    # the TODO's message starts "<exercise>: ..."; it may be another exercise this one uses
    other = str(error).split(":", 1)[0].strip()
    if other and other != name and " " not in other:
        return (f"exercise {name} uses exercise {other}, which is not done yet: "
                f"fill in {other}'s cell first")
    return f"exercise {name} is not done yet: fill in the cell above"


def exact(name, got, expected):
    """Pass if `got` equals `expected` element for element (same shape)."""
    return _compare(name, got, expected, lambda a, b: bool(np.array_equal(a, b)))


def close(name, got, expected, rtol=1e-6, atol=1e-9):
    """Pass if np.allclose(got, expected, rtol, atol) (same shape): equal up to round-off."""
    return _compare(name, got, expected, lambda a, b: bool(np.allclose(a, b, rtol=rtol, atol=atol)),
                    tolerance=(rtol, atol))


def rel_error(name, got, expected, tol=1e-7):
    """Pass if CS231n's relative error max |a - b| / max(1e-8, |a| + |b|) is below `tol`:
    the measure for a gradient against its numerical estimate."""
    return _compare(name, got, expected, lambda a, b: _rel_error(a, b) < tol,
                    note=lambda a, b: f" | rel error {_rel_error(a, b):.1e} (tol {tol:.0e})",
                    badness=lambda a, b: np.abs(a - b) / np.maximum(1e-8, np.abs(a) + np.abs(b)))


def _compare(name, got, expected, passes, note=None, badness=None, tolerance=(1e-5, 1e-8)):
    """One line for `name`; `badness` (elementwise, default |a - b|) locates the worst element;
    `tolerance`: (rtol, atol) of the line's `close` column."""
    expected = np.asarray(to_numpy(expected))
    problem, a = _as_array(got, expected)
    if problem is None:
        e = expected.astype(np.float64)
        a = a.astype(np.float64)
        diff = float(np.nanmax(np.abs(a - e))) if a.size and not np.isnan(a - e).all() else 0.0
        line = (f"{name:<{_NAME_WIDTH}s} | exact: {bool(np.array_equal(a, e))!s:<5} | "
                f"close: {bool(np.allclose(a, e, *tolerance))!s:<5} | max diff {diff:.1e}")
        line += note(a, e) if note else ""
        if not passes(a, e):
            problem = _describe(a, e, _worst((badness or (lambda x, y: np.abs(x - y)))(a, e)))
            line += f" | {problem}"
    else:
        line = f"{name:<{_NAME_WIDTH}s} | {problem}"
    print(line if problem is None else f"{line}   {_RED}<- FAILED{_RESET}")
    return _record(name, problem)


def _as_array(got, expected):
    """(None, array) or (what is wrong, None): the learner's result as an array of the
    expected shape."""
    if got is None:
        return "got None: does the function end with `return` of its result?", None
    if isinstance(got, tuple) and expected.ndim > 0:
        return (f"got a tuple of {len(got)}, expected one array of shape {expected.shape} "
                f"(return just the array)"), None
    a = np.asarray(to_numpy(got))
    if a.dtype == object or not (np.issubdtype(a.dtype, np.number) or a.dtype == bool):
        return f"got {type(got).__name__} of {a.dtype}, expected numbers of shape {expected.shape}", None
    if a.shape != expected.shape:
        msg = f"shape {a.shape}, expected {expected.shape}"
        if a.size == expected.size:
            msg += (": the same values in another order (check the order of the axes)"
                    if np.array_equal(np.sort(a, axis=None), np.sort(expected, axis=None))
                    else ": the right number of values, in the wrong shape")
        return msg, None
    return None, a


def _worst(bad):
    """The index of the largest entry of an elementwise badness (a NaN counts as the largest)."""
    if bad.ndim == 0:
        return ()
    bad = np.where(np.isnan(bad), np.inf, bad)
    return np.unravel_index(int(np.argmax(bad)), bad.shape)


def _describe(a, e, where):
    """What is wrong with `a`, in words (it did not pass against `e`)."""
    if np.isnan(a).any():
        at = f" (first at {_index(np.argwhere(np.isnan(a))[0])})" if a.ndim else ""
        return f"NaN in your result{at}"
    if not np.isfinite(a).all():
        return "inf in your result (an overflow?)"
    if not a.any() and e.any():
        return "your result is all zeros"
    got, want = float(a[where]), float(e[where])
    # enough digits to show the difference (at least 4, at most 16)
    rel = abs(got - want) / max(abs(got), abs(want), 1e-300)
    digits = int(min(16, max(4, np.ceil(-np.log10(rel)) + 2))) if rel > 0 else 4
    at = f"worst at {_index(where)}: " if a.ndim else ""
    return f"{at}got {got:.{digits}g}, expected {want:.{digits}g}"


def _index(where):
    return "[" + ", ".join(str(int(i)) for i in where) + "]"


def _record(name, problem):
    if not _running:
        if problem is not None:
            raise CheckFailed(f"{name}: {problem}")
        return True
    ex = _running[-1]
    if problem is None:
        ex.passed += 1
    else:
        ex.failed.append(f"{name}: {problem}")
    return problem is None
