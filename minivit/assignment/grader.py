"""`python -m minivit.assignment grade STUDENT_DIR [--out results.json]`: part by part.

For each part the grader builds a temporary tree: the reference solution (this package,
without minivit/fast/, so everything runs on the reference ops) with only that part's
regions replaced by what the student wrote between their markers. The part's checks run
there in a subprocess of their own (runner.py) under a wall-clock time limit and an
address-space limit (RLIMIT_AS). So a bug in one part costs points in that part only,
and a syntax error, an exception, an endless loop, a crash or a runaway allocation costs
that part's points and nothing else. Student code is never imported into this process:
here the grader only reads the student's files as text, and computes the reference
values of the "values" checks from the solution, which it compares with what the
subprocess wrote. Anything on stderr is ignored.

results.json is in Gradescope's format and is written whatever happens.
"""
import json
import math
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from .checks import compare, load
from .make import EXCLUDE, PACKAGE, marked_files
from .markers import MarkerError, splice
from .parts import ORDER, PARTS, check_parts
from .runner import BOOT, MAX_OUTPUT

TIME_LIMIT = 60          # seconds of wall clock per part
MEMORY_MB = 1024         # address space per part (a NumPy process starts at ~150 MB)
VISIBLE, HIDDEN = "visible", "after_published"


# --- finding the student's files -------------------------------------------------------
def locate(student_dir, rel):
    """The student's copy of minivit/<rel>: STUDENT_DIR/minivit/<rel>, or STUDENT_DIR/<rel>
    (the package folder itself was given), or else the one file anywhere under STUDENT_DIR
    whose path ends with the most components of it (a Gradescope upload of loose files or
    of a zipped folder). None if not found or ambiguous."""
    student_dir = Path(student_dir)
    rel = Path(rel)
    for cand in (student_dir / "minivit" / rel, student_dir / rel):
        if cand.is_file():
            return cand
    want = ("minivit",) + rel.parts
    best, best_n, tie = None, 0, False
    for cand in student_dir.rglob(rel.name):
        if not cand.is_file() or "__pycache__" in cand.parts:
            continue
        parts = cand.relative_to(student_dir).parts
        n = 0
        while n < min(len(parts), len(want)) and parts[-1 - n] == want[-1 - n]:
            n += 1
        if n > best_n:
            best, best_n, tie = cand, n, False
        elif n == best_n:
            tie = True
    return None if tie else best


def default_parts(student_dir):
    """The parts in the copy's assignment.json, else every part."""
    for f in (Path(student_dir) / "assignment.json", Path(student_dir).parent / "assignment.json"):
        try:
            return check_parts(json.loads(f.read_text())["parts"])
        except (OSError, ValueError, KeyError, TypeError):
            continue
    return ORDER


# --- one part ---------------------------------------------------------------------------
def build_tree(root, part, student_dir, regions, package=PACKAGE):
    """Copy the solution to root/minivit and splice in the student's regions of `part`.
    Returns None, or a message saying why the student's code could not be taken."""
    shutil.copytree(package, root / "minivit",
                    ignore=shutil.ignore_patterns("__pycache__", "*.pyc", *EXCLUDE))
    for rel, rs in regions.items():
        if not any(r.part == part for r in rs):
            continue
        where = f"minivit/{rel.as_posix()}"
        src = locate(student_dir, rel)
        if src is None:
            return f"{where} was not found in the submission"
        try:
            student = src.read_text(encoding="utf-8")
        except (OSError, UnicodeDecodeError) as e:
            return f"{where} could not be read: {e}"
        try:
            text = splice((package / rel).read_text(encoding="utf-8"), student, part, where, where, PARTS)
        except MarkerError as e:
            return f"the markers of {where} are broken: {e}"
        (root / "minivit" / rel).write_text(text, encoding="utf-8")
    return None


def _env():
    env = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "MINIVIT_"))}
    env.update(OPENBLAS_NUM_THREADS="1", OMP_NUM_THREADS="1", MKL_NUM_THREADS="1",
               MINIVIT_NUM_THREADS="1", MINIVIT_DEVICE="cpu", PYTHONDONTWRITEBYTECODE="1",
               PYTHONHASHSEED="0", PYTHONIOENCODING="utf-8")
    return env


def run_part(part, student_dir, regions, time_limit, memory_mb, package=PACKAGE):
    """Run the checks of `part`. Returns ({check id: event dict}, problem or None, seconds)."""
    t0 = time.perf_counter()
    with tempfile.TemporaryDirectory(prefix=f"minivit-grade-{part}-") as tmp:
        root = Path(tmp)
        tree, outdir = root / "tree", root / "out"
        tree.mkdir()
        outdir.mkdir()
        problem = build_tree(tree, part, student_dir, regions, package)
        if problem:
            return {}, problem, time.perf_counter() - t0
        cmd = [sys.executable, "-c", BOOT, str(tree), part, str(outdir),
               str(memory_mb << 20 if memory_mb else 0), str(math.ceil(time_limit))]
        with open(root / "stdout", "wb") as out, open(root / "stderr", "wb") as err:
            proc = subprocess.Popen(cmd, cwd=tree, env=_env(), stdin=subprocess.DEVNULL,
                                    stdout=out, stderr=err, start_new_session=True)
            timed_out = False
            try:
                proc.wait(timeout=time_limit)
            except subprocess.TimeoutExpired:
                timed_out = True
            finally:
                try:                                   # the whole group: children too
                    os.killpg(proc.pid, signal.SIGKILL)
                except (ProcessLookupError, PermissionError):
                    pass
                proc.wait()
        events = _read_events(outdir / "results.jsonl")
        stderr = (root / "stderr").read_bytes()[-MAX_OUTPUT:].decode("utf-8", "replace")
        results, problem = {}, None
        if "import_error" in events:
            problem = events["import_error"]["output"]
        for cid, ev in events.get("checks", {}).items():
            if ev.get("event") == "done":
                if ev.get("status") == "passed":
                    ev["values"] = _read_values(outdir, cid)
                results[cid] = ev
            else:                                      # started, never finished
                results[cid] = {"event": "died", "output": _why_stopped(proc.returncode, timed_out,
                                                                         time_limit, memory_mb, stderr)}
        if problem is None and not events.get("end"):
            problem = _why_stopped(proc.returncode, timed_out, time_limit, memory_mb, stderr)
        return results, problem, time.perf_counter() - t0


def _why_stopped(code, timed_out, time_limit, memory_mb, stderr):
    if timed_out:
        return f"time limit exceeded: the part's checks did not finish within {time_limit:g} s"
    if code is not None and code < 0:
        name = signal.Signals(-code).name if -code in signal.Signals._value2member_map_ else str(-code)
        hint = {"SIGKILL": f" (out of memory? the limit is {memory_mb} MB)",
                "SIGXCPU": " (CPU time limit)", "SIGSEGV": " (a crash)", "SIGXFSZ": " (too much output)"}
        msg = f"the process was killed by {name}{hint.get(name, '')}"
    else:
        msg = f"the process ended early (exit code {code})"
    return msg + ("\nstderr (last lines):\n" + stderr.strip() if stderr.strip() else "")


def _read_events(path):
    events = {"checks": {}}
    try:
        lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    except OSError:
        return events
    for line in lines:
        try:
            ev = json.loads(line)
        except ValueError:
            continue                                   # a torn last line, or noise
        if not isinstance(ev, dict):
            continue
        kind = ev.get("event")
        if kind in ("start", "done") and isinstance(ev.get("id"), str):
            events["checks"][ev["id"]] = ev
        elif kind == "import_error":
            events["import_error"] = ev
        elif kind == "end":
            events["end"] = True
    return events


def _read_values(outdir, cid):
    import numpy as np
    try:
        meta = json.loads((outdir / f"{cid}.json").read_text())
        with np.load(outdir / f"{cid}.npz", allow_pickle=False) as z:
            arrays = {k: z[k] for k in z.files}
    except Exception as e:                             # noqa: BLE001 - whatever was written
        return {"__error__": f"the values could not be read back: {e}"}
    values = {}
    for i, k in enumerate(meta.get("keys", [])):
        if k in meta.get("bad", {}):
            values[k] = ("bad", meta["bad"][k])
        elif k in meta.get("none", []):
            values[k] = None
        elif f"a{i}" in arrays:
            values[k] = arrays[f"a{i}"]
    return values


# --- scoring ----------------------------------------------------------------------------
def score_part(part, checks, results, problem, expected):
    """Gradescope test entries for one part."""
    points = PARTS[part][0]
    total_weight = sum(c.weight for c in checks)
    tests = []
    for n, c in enumerate(checks, 1):
        max_score = points * c.weight / total_weight
        ev = results.get(c.id)
        if ev is None:
            ok, output = False, f"not run: {problem}" if problem else "not run"
        elif ev.get("event") == "died":
            ok, output = False, ev["output"]
        elif ev.get("status") != "passed":
            ok, output = False, ev.get("output", "")
        elif c.kind == "values":
            ok, output = _judge_values(c, ev.get("values", {}), expected.get(c.id))
        else:
            ok, output = True, ev.get("output", "")
        tests.append({"name": f"{part}: {c.title}", "number": f"{ORDER.index(part) + 1}.{n}",
                      "score": round(max_score, 6) if ok else 0.0, "max_score": round(max_score, 6),
                      "status": "passed" if ok else "failed", "output": output,
                      "visibility": HIDDEN if c.hidden else VISIBLE})
    return tests


def _judge_values(c, got, expected):
    if "__error__" in got:
        return False, got["__error__"]
    bad = {k: v[1] for k, v in got.items() if isinstance(v, tuple)}
    if bad:
        return False, "\n".join(f"  {k}: {v}" for k, v in bad.items())
    ok, report = compare(got, expected, c.tol, c.tol32)
    return ok, ("equal to the reference values:\n" if ok else "different from the reference values:\n") + report


def reference_values(checks):
    """The "values" checks computed on the solution, in this process (no student code)."""
    return {c.id: c.func() for c in checks if c.kind == "values"}


# --- the whole grading ------------------------------------------------------------------
def grade(student_dir, parts=None, out="results.json", time_limit=TIME_LIMIT, memory_mb=MEMORY_MB,
          jobs=1, package=PACKAGE, quiet=False):
    """Grade STUDENT_DIR; returns the results dict (also written to `out` unless None)."""
    t0 = time.perf_counter()
    try:
        parts = check_parts(parts) if parts else default_parts(student_dir)
    except ValueError as e:
        return _write(_failed_everything(ORDER, f"grader error: {e}", t0), out)
    try:
        if not Path(student_dir).is_dir():
            raise FileNotFoundError(f"the submission {student_dir} is not a folder")
        registry = load()
        regions = marked_files(package)
        by_part = {p: [c for c in registry.values() if c.part == p] for p in parts}
        expected = reference_values([c for p in parts for c in by_part[p]])

        def one(p):
            results, problem, secs = run_part(p, student_dir, regions, time_limit, memory_mb, package)
            return p, score_part(p, by_part[p], results, problem, expected), secs

        with ThreadPoolExecutor(max(1, jobs)) as pool:
            done = list(pool.map(one, parts))
    except Exception:                                  # noqa: BLE001 - results.json regardless
        return _write(_failed_everything(parts, "the autograder failed:\n" + traceback.format_exc(), t0), out)
    tests, lines = [], []
    for p, ts, secs in done:
        tests += ts
        got, full = sum(t["score"] for t in ts), sum(t["max_score"] for t in ts)
        lines.append(f"{p:10s} {got:6.2f} / {full:5.2f}   ({secs:.1f} s)")
    score = round(sum(t["score"] for t in tests), 2)
    total = round(sum(t["max_score"] for t in tests), 2)
    result = {"score": score, "execution_time": round(time.perf_counter() - t0, 2),
              "output": "\n".join(lines + [f"{'total':10s} {score:6.2f} / {total:5.2f}"]),
              "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}
    if not quiet:
        print(result["output"])
    return _write(result, out)


def _failed_everything(parts, message, t0):
    tests = []
    for p in parts:
        tests.append({"name": f"{p}: {PARTS[p][1]}", "number": f"{ORDER.index(p) + 1}",
                      "score": 0.0, "max_score": float(PARTS[p][0]), "status": "failed",
                      "output": message, "visibility": VISIBLE})
    return {"score": 0.0, "execution_time": round(time.perf_counter() - t0, 2), "output": message,
            "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


def _write(result, out):
    if out:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        tmp = out.with_name(out.name + ".part")
        tmp.write_text(json.dumps(result, indent=1) + "\n", encoding="utf-8")
        os.replace(tmp, out)
    return result

