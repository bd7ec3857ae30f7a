"""What the student reads: every word of it is the grader's.

* compare(): the values of a "values" check against the reference: per value, right or
  wrong, how many elements differ, the worst one (where, the reference's value and theirs,
  in plain numbers) and along which slices the errors sit;
* student_error(): their exception: its type, a capped message, and only the frames in
  their own lines (file and line as they submitted it, their line's text);
* points(): each check's share of the part's points in quarter points that add up exactly;
* redact(): the final pass over results.json that removes any line of the solution or of
  the hidden checks that slipped through (make's leak finder).
"""
import re
from fractions import Fraction

import numpy as np

MAX_MESSAGE = 500           # characters of a student's exception message shown
MAX_OUTPUT = 6000           # characters of one check's output


def cap(text, limit=MAX_OUTPUT):
    text = str(text)
    return text if len(text) <= limit else text[:limit] + f"\n... ({len(text) - limit} more characters)"


def _kind(v):
    if v is None:
        return "None"
    if isinstance(v, np.ndarray):
        return f"an array of shape {v.shape} and dtype {v.dtype}"
    return f"a {type(v).__name__}"


def as_value(v):
    """A returned value as an array, or None if it is not numbers."""
    if isinstance(v, (np.ndarray, np.generic)) or (isinstance(v, (int, float)) and not isinstance(v, bool)):
        a = np.asarray(v)
        return a if a.dtype.kind in "biuf" else None
    return None


def errors(got, expected):
    """Elementwise |got - expected| relative to the largest finite reference value (so a value
    near zero is not held to more digits than the array has); inf where one is not finite
    and the other differs (NaN against a number)."""
    g, e = got.astype(np.float64), expected.astype(np.float64)
    finite = np.isfinite(g) & np.isfinite(e)
    scale = max(float(np.max(np.abs(e[np.isfinite(e)]), initial=0.0)), 1e-30)
    err = np.zeros(e.shape)
    err[finite] = np.abs(g[finite] - e[finite]) / scale
    same = (np.isnan(g) & np.isnan(e)) | (g == e)
    err[~finite & ~same] = np.inf
    return err, scale


def close(got, expected, tol, tol32):
    """Same shape and dtype, and within tolerance (NaN where the other has NaN counts as equal)."""
    g, e = as_value(got), as_value(expected)
    if e is None or g is None:
        return got is None and expected is None
    if g.shape != e.shape or g.dtype != e.dtype:
        return False
    if g.dtype.kind not in "f":
        return bool(np.array_equal(g, e))
    err, _ = errors(g, e)
    return bool(err.max(initial=0.0) <= (tol32 if g.dtype == np.float32 else tol))


def _slices(bad):
    """Where errors sit, when only some slices along one axis have them."""
    if bad.ndim < 2 or bad.all():
        return ""
    for axis in range(bad.ndim):
        along = bad.any(axis=tuple(i for i in range(bad.ndim) if i != axis))
        if 0 < along.sum() < along.size:
            where = np.flatnonzero(along)
            shown = ", ".join(map(str, where[:8])) + (", ..." if where.size > 8 else "")
            return f"; only where axis {axis} is {shown} (of {along.size})"
    return ""


def _number(x):
    return "nan" if np.isnan(x) else f"{x:.6g}"


def compare_one(name, got, expected, tol, tol32):
    """(ok, one line about this value)."""
    e = as_value(expected)
    if e is None:
        same = got is None and expected is None
        return same, f"  {name}: {'None, as expected' if same else f'WRONG: {_kind(got)}, expected None'}"
    g = as_value(got)
    if g is None:
        return False, f"  {name}: WRONG: {_kind(got)}, expected an array of shape {e.shape} ({e.dtype})"
    if g.shape != e.shape:
        return False, f"  {name}: WRONG: shape {g.shape}, expected {e.shape}"
    if g.dtype != e.dtype:
        return False, f"  {name}: WRONG: dtype {g.dtype}, expected {e.dtype} (keep the inputs' dtype)"
    if g.dtype.kind not in "f":
        same = bool(np.array_equal(g, e))
        return same, f"  {name}: {'equal' if same else 'WRONG: different'}"
    t = tol32 if g.dtype == np.float32 else tol
    err, scale = errors(g, e)
    worst = float(err.max(initial=0.0))
    if worst <= t:
        return True, f"  {name}: right (largest error {worst:.1e} of the largest value, tolerance {t:.0e})"
    bad = err > t
    i = np.unravel_index(int(np.argmax(err)), err.shape)
    at = f"[{', '.join(map(str, i))}]" if err.ndim else ""
    size = f"{int(bad.sum())} of {bad.size} values differ" if bad.ndim else "differs"
    ref, yours = float(e[i]), float(g[i])
    off = f"off by {abs(yours - ref):.2g}; " if np.isfinite(yours - ref) else ""
    return False, (f"  {name}: WRONG: {size}; worst at {name.split(' (')[0]}{at}: the reference has "
                   f"{_number(ref)}, yours {_number(yours)} ({off}largest reference value {scale:.3g})"
                   f"{_slices(bad)}")


def compare(got, expected, tol, tol32, causes=()):
    """(ok, report) for a "values" check: {name: value} against the reference's. The report
    leads with the likely causes (diagnoses.py), then every wrong value, then the right
    ones, named."""
    if not isinstance(got, dict):
        return False, f"the check's values could not be collected ({_kind(got)})"
    wrong, right = [], []
    for name, e in expected.items():
        good, line = compare_one(name, got[name], e, tol, tol32) if name in got else (False, f"  {name}: missing")
        (right if good else wrong).append((name, line))
    if not wrong:
        return True, f"all {len(right)} values equal the reference:\n" + "\n".join(line for _, line in right)
    lines = [f"{len(wrong)} of {len(expected)} values differ from the reference:"] + list(causes)
    lines += [line for _, line in wrong[:20]] + ([f"  ... and {len(wrong) - 20} more"] if len(wrong) > 20 else [])
    if right:
        names = ", ".join(name for name, _ in right[:30]) + (", ..." if len(right) > 30 else "")
        lines.append(f"right: {names}")
    return False, "\n".join(lines)


def student_error(err, line_map):
    """Words for the student's exception: type, capped message, their own frames only.
    line_map: {(file in the tree, line): (file as submitted, line, text)}."""
    message = err.message if len(err.message) <= MAX_MESSAGE else err.message[:MAX_MESSAGE] + " ..."
    lines = [f"your code raised {err.type}" + (f": {message}" if message else "")]
    mine = [line_map.get((f, n)) for f, n, _ in err.frames]
    shown = [(m, fn) for m, (_, _, fn) in zip(mine, err.frames) if m is not None]
    for (path, n, text), fn in shown[-6:]:
        lines.append(f"  {path}, line {n}, in {str(fn)[:60]}:\n      {text.strip()[:200]}")
    if not shown:
        lines.append("  (raised in the given code your code called, or by the check's call of "
                     f"{err.function.split(':')[-1]}: see its docstring for what it takes and returns)")
    return "\n".join(lines)


def points(total, weights):
    """Each weight's share of `total` points, in quarter points, adding up to exactly `total`
    (largest remainders get the spare quarters)."""
    quarters = int(total) * 4
    weights = [Fraction(str(w)) for w in weights]
    exact = [quarters * w / sum(weights) for w in weights]
    share = [int(x) for x in exact]
    for i in sorted(range(len(exact)), key=lambda i: exact[i] - share[i], reverse=True)[:quarters - sum(share)]:
        share[i] += 1
    return [q / 4 for q in share]


# --- the last line of defence ------------------------------------------------------------
REDACTED = "[hidden: this line matches the reference solution or a hidden check]"


def redactor(parts, package):
    """A function text -> text that removes the lines of the solution of `parts` and of the
    hidden checks (make's leak finder), whole lines and long fragments inside lines."""
    from .make import MIN_SUBSTRING, _norm, leak_candidates
    candidates, outside = leak_candidates(parts, package, with_outside=True)
    fragments = sorted((c for c in candidates if len(c) >= MIN_SUBSTRING and c not in outside), key=len, reverse=True)

    def redact(text):
        out = []
        for line in str(text).split("\n"):
            if _norm(line) in candidates:
                line = re.match(r"\s*", line).group(0) + REDACTED
            else:
                flat = re.sub(r"\s+", " ", line)
                for frag in fragments:
                    if frag in flat:
                        flat, line = flat.replace(frag, REDACTED), flat.replace(frag, REDACTED)
            out.append(line)
        return "\n".join(out)
    return redact


def redact_result(result, redact):
    """Every text of a results dict passed through redact()."""
    result["output"] = redact(result.get("output", ""))
    for t in result.get("tests", []):
        t["output"] = redact(t.get("output", ""))
        t["name"] = redact(t.get("name", ""))
    return result
