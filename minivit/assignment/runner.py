"""The grading subprocess: runs the checks of one part in a tree that holds the solution
with only that part's regions replaced by the student's.

Started by the grader as

    python -c BOOT TREE PART OUTDIR MEMORY_BYTES TIME_LIMIT

BOOT (below) sets the resource limits, drops import hooks of an editable install (they
would supply the solution's modules), puts TREE first on sys.path and runs this file.
This file imports nothing of minivit at module level: importing the package is the first
thing that can fail on student code, and that failure is reported, not raised.

It writes OUTDIR/results.jsonl, one JSON object a line, flushed as it goes, so whatever
ran before a crash or a time-out is known:  {"event": "start", "id": ...} before each
check, {"event": "done", "id", "status", "output", "seconds"} after; and for a "values"
check OUTDIR/<id>.npz (+ <id>.json for values that are not arrays), which the grader
compares with the reference in its own process.
"""
import json
import os
import sys
import time
import traceback

BOOT = r"""
import os, resource, sys
tree, part, outdir, mem, limit = sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), int(sys.argv[5])
def cap(kind, value):
    try:
        resource.setrlimit(kind, (value, value))
    except (ValueError, OSError):
        soft, hard = resource.getrlimit(kind)
        resource.setrlimit(kind, (min(value, hard) if hard != resource.RLIM_INFINITY else value, hard))
if mem > 0:
    cap(resource.RLIMIT_AS, mem)
cap(resource.RLIMIT_CPU, limit + 10)
cap(resource.RLIMIT_CORE, 0)
cap(resource.RLIMIT_FSIZE, 256 << 20)
sys.meta_path[:] = [f for f in sys.meta_path if "editable" not in repr(f).lower()]
sys.path[:] = [tree] + [p for p in sys.path if p not in ("", ".", tree)]
sys.dont_write_bytecode = True
sys.argv = [os.path.join(tree, "minivit", "assignment", "runner.py"), part, outdir]
import runpy
runpy.run_path(sys.argv[0], run_name="__main__")
"""

MAX_OUTPUT = 4000


def _tail(text, limit=MAX_OUTPUT):
    return text if len(text) <= limit else "...\n" + text[-limit:]


def _traceback():
    return _tail(traceback.format_exc())


def save_values(values, outdir, cid):
    """Write a "values" result: arrays into <id>.npz, the rest described in <id>.json."""
    import numpy as np
    if not isinstance(values, dict):
        raise TypeError(f"the check returned {type(values).__name__}, not a dict")
    arrays, meta = {}, {"keys": [], "none": [], "bad": {}}
    for i, (k, v) in enumerate(values.items()):
        meta["keys"].append(k)
        if v is None:
            meta["none"].append(k)
            continue
        try:
            a = np.asarray(v)
        except Exception as e:                     # noqa: BLE001 - the student's object
            meta["bad"][k] = f"not an array: {type(v).__name__} ({e})"
            continue
        if a.dtype.kind not in "biufc":
            meta["bad"][k] = f"not a numeric array: {type(v).__name__} of dtype {a.dtype}"
            continue
        arrays[f"a{i}"] = a
    np.savez(os.path.join(outdir, cid + ".npz"), **arrays)
    with open(os.path.join(outdir, cid + ".json"), "w") as f:
        json.dump(meta, f)


def main(part, outdir):
    log = open(os.path.join(outdir, "results.jsonl"), "a", buffering=1)

    def emit(**kw):
        log.write(json.dumps(kw) + "\n")
        log.flush()

    emit(event="begin", part=part)
    tree = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    try:
        import minivit
        from minivit.assignment import checks
        checks.load()
        here = os.path.dirname(os.path.abspath(minivit.__file__))
        if os.path.dirname(here) != tree:
            raise RuntimeError(f"minivit was imported from {here}, not from the grading tree {tree}")
    except BaseException:                          # noqa: BLE001 - report, never raise
        emit(event="import_error", output="importing minivit failed:\n" + _traceback())
        return
    for c in checks.checks_for(part):
        emit(event="start", id=c.id)
        t0 = time.perf_counter()
        try:
            result = c.func()
            if c.kind == "values":
                save_values(result, outdir, c.id)
                output = ""
            else:
                output = "" if result is None else str(result)
            status = "passed"
        except MemoryError:
            status, output = "failed", "MemoryError: the part's memory limit was reached\n" + _traceback()
        except BaseException:                      # noqa: BLE001 - SystemExit too
            status, output = "failed", _traceback()
        emit(event="done", id=c.id, status=status, output=_tail(output),
             seconds=round(time.perf_counter() - t0, 3))
    emit(event="end")


if __name__ == "__main__":
    main(sys.argv[1], sys.argv[2])
