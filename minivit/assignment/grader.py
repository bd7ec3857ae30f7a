"""`python -m minivit.assignment grade SUBMISSION [--out results.json]`: part by part.

Two programs. This one, the grader, is trusted: it holds the reference solution, the
checks (public.py, public_model.py, hidden.py) and the diagnoses, and decides everything.
For each part it builds a tree: the reference package with that part's regions replaced
by the student's text (read once, before anything runs: submission.py), the regions of the
parts it builds on kept and every other part's replaced by a stub. In that tree a small
generic runner (runner.py) runs as a process of its own, isolated as much as the machine
allows (sandbox.py): it calls the functions the checks ask for on the inputs the grader
sends and returns arrays. Every check runs here: comparisons with reference values,
gradient checks (the student's backward pass against central differences of the
reference forward pass, computed here), properties, the overfitting check (accuracy
evaluated here from the weights the part returns). Nothing the part's process writes can
be more than a wrong answer; its stdout and stderr are discarded.

Each part has a wall-clock limit (the process is killed at it), an address-space limit and
a CPU limit; a crash, an exception, an endless loop or a runaway allocation costs that
part's points and nothing else, and nothing of the part's process outlives it.
results.json (Gradescope's format) is written once, at the end, from memory, in every
case; a last pass removes any line of the solution or of the hidden checks from it.
"""
import json
import os
import secrets
import tempfile
import time
import traceback
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

from . import checks as registry
from . import diagnoses, feedback, sandbox
from .make import PACKAGE, marked_files
from .parts import ORDER, PARTS, check_parts
from .remote import PartDied, Reference, Remote, StudentError, TimeLimit, start_ready
from .submission import Submission, part_tree, tree_files

TIME_LIMIT = 60          # seconds of wall clock per part
MEMORY_MB = 1024         # address space per part (a NumPy process starts at ~300 MB of it)
START_LIMIT = 30         # seconds for a part's process to start (counted in its time)
VISIBLE, HIDDEN = "visible", "after_published"


class Grading:
    """What one grading shares between its parts."""

    def __init__(self, submission, isolation, time_limit, memory_mb, deadline, package, out):
        self.submission, self.isolation = submission, isolation
        self.time_limit, self.memory_mb, self.deadline = time_limit, memory_mb, deadline
        self.package, self.out = Path(package), out
        self.regions = marked_files(self.package)
        self.readable = set()           # what a part's user could read that it should not
        self.unconfined = False         # a part's process ran without its seccomp filter
        self.landlock = None            # the lowest Landlock ABI a part ran under (0: none)

    def limits(self, uid):
        lim = {"RLIMIT_CPU": int(self.time_limit) + 5, "RLIMIT_CORE": 0, "RLIMIT_FSIZE": 64 << 20,
               "RLIMIT_NOFILE": 256}
        if self.memory_mb:
            lim["RLIMIT_AS"] = self.memory_mb << 20
        if uid is not None:
            lim["RLIMIT_NPROC"] = 64        # the uid is the part's alone
        return lim

    def start(self, part_dir, tree, uid, deadline):
        results = [Path(self.out).resolve().parent] if self.out else []
        hide = [self.package, self.submission.path] + results
        hide += [self.package.parent] if (self.package.parent / "pyproject.toml").is_file() else []
        # what the part's process must not read or write, probed before any student code runs
        secret = [self.package / "ops" / "softmax.py", self.package / "assignment" / "hidden.py",
                  self.submission.path]
        proc = sandbox.PartProcess(self.isolation, part_dir, tree, self.limits(uid), hide=hide, probe=secret,
                                   probe_write=[self.submission.path] + results, uid=uid)
        try:
            ready = start_ready(proc, min(deadline, time.monotonic() + START_LIMIT))
        except (TimeLimit, PartDied):
            proc.stop()
            status = f"exit status {proc.proc.returncode}" if proc.proc.returncode else "no answer in time"
            if self.isolation.mode == "namespace" and not sandbox.python_unreachable():
                print(f"the parts' namespaces could not be set up here ({status}): grading with a fresh "
                      f"user only (--isolation user)")
                self.isolation = sandbox.Isolation("user")      # unshare works, the jail does not
                return self.start(part_dir, tree, uid, deadline)
            raise PartDied(f"the part's process could not start ({status}); please tell your instructor") from None
        self.readable.update(ready.get("readable", []) + ready.get("writable", []))
        self.unconfined |= ready.get("denied") is None
        abi = ready.get("landlock") if isinstance(ready.get("landlock"), int) else 0
        self.landlock = abi if self.landlock is None else min(self.landlock, abi)
        return proc


def grade_part(g, part, checks):
    """[(check, passed, output)] and the seconds it took."""
    t0 = time.monotonic()
    deadline = min(t0 + g.time_limit, g.deadline)
    try:
        files, line_map, problem = part_tree(part, g.submission, g.package, g.regions)
    except Exception:                             # noqa: BLE001 - the grader's own failure, on this part
        traceback.print_exc()
        files, line_map, problem = {}, {}, ("the grader could not read your code for this part (an error of the "
                                            "grader's, in its log); please tell your instructor")
    if problem:
        return [(c, False, f"not run: {problem}") for c in checks], time.monotonic() - t0
    uid = sandbox.free_uid() if g.isolation.mode != "none" else None
    part_dir = sandbox.make_part_dir(uid)
    proc, results = None, []
    try:
        for name in ("runner.py", "jail.py"):
            files[name] = (g.package / "assignment" / name).read_text(encoding="utf-8")
        sandbox.write_tree(part_dir / "tree", files)
        for c in checks:
            if time.monotonic() >= deadline:
                why = "the grader's total time" if deadline == g.deadline else f"the part's {g.time_limit:g} s"
                results.append((c, False, f"not run: {why} ran out before this check"))
                continue
            try:
                if proc is None:
                    proc = g.start(part_dir, part_dir / "tree", uid, deadline)
                results.append((c, *evaluate(c, Remote(proc, deadline), line_map)))
                continue
            except TimeLimit:
                results.append((c, False, f"time limit exceeded: the part's checks did not finish within "
                                          f"{g.time_limit:g} s (an endless loop?)"))
                deadline = time.monotonic()
            except PartDied as e:
                results.append((c, False, str(e)))
            except Exception:                     # noqa: BLE001 - the grader's own failure, on this check
                traceback.print_exc()             # for the instructor's log
                results.append((c, False, "the grader could not judge what your code returned (an error of the "
                                          "grader's, in its log); please tell your instructor"))
            if proc is not None:
                proc.stop()                       # the next check gets a fresh process
                proc = None
    finally:
        if proc is not None:
            proc.stop()
        if uid is not None:
            sandbox.kill_uid(uid)
            sandbox.remove_files_of(uid)
        _remove(part_dir)
    return results, time.monotonic() - t0


def evaluate(check, run, line_map):
    """(passed, output) of one check; TimeLimit and PartDied go up to the part."""
    try:
        got = check.func(run)
    except AssertionError as e:
        return False, feedback.cap(e)
    except StudentError as e:
        return False, feedback.student_error(e, line_map)
    except (TimeLimit, PartDied):
        raise
    except Exception as e:                             # noqa: BLE001 - what came back was unusable
        return False, feedback.cap(f"what your code returned could not be checked: {type(e).__name__}: {e}"
                                   f" (see the docstring for what the function returns)", 1000)
    if check.kind != "values":
        return True, feedback.cap(got or "")
    expected = check.func(Reference())
    ok, report = feedback.compare(got, expected, check.tol, check.tol32)
    if not ok and isinstance(got, dict):
        ok, report = feedback.compare(got, expected, check.tol, check.tol32,
                                      diagnoses.diagnose(check, got, expected))
    return ok, feedback.cap(report)


def _remove(path):
    import shutil
    shutil.rmtree(path, ignore_errors=True)


# --- the whole grading ------------------------------------------------------------------
def default_parts(submission):
    """The parts named in the submission's assignment.json (the copy's), else every part."""
    names = sorted((n for n in submission.files if n.endswith("assignment.json")), key=len)
    for name in names[:1]:
        try:
            return check_parts(json.loads(submission.files[name])["parts"]), True
        except (ValueError, KeyError, TypeError):
            break
    return ORDER, False


def grade(submission, parts=None, out="results.json", time_limit=TIME_LIMIT, memory_mb=MEMORY_MB,
          jobs=1, total_time=None, isolation="auto", package=PACKAGE, quiet=False):
    """Grade a submission (a folder or a .zip); returns the results dict, also written to
    `out` unless None. total_time: seconds for the whole grading (parts not started by
    then score 0 with the reason), so results.json is written before an outer limit."""
    t0 = time.monotonic()
    deadline = t0 + (total_time if total_time else 1e9)
    notes = []
    try:
        sub = Submission.read(submission, {rel.name for rel in tree_files(Path(package))} | {"assignment.json"})
        if Path(package).resolve().is_relative_to(sub.path):
            raise ValueError(f"the grader was imported from the submission itself ({package}): run it from "
                             f"another folder")
        if parts:
            parts = check_parts(parts)
        else:
            parts, from_copy = default_parts(sub)
            if from_copy:
                notes.append("parts: those of the submission's assignment.json (give --parts to choose them)")
        iso = sandbox.detect(isolation)
        if iso.mode == "none":
            sandbox.become_subreaper()
        if iso.mode == "user" and sandbox.python_unreachable():
            raise RuntimeError(sandbox.python_unreachable())
        registry.load()
        registry.SALT = secrets.token_hex(16)       # this grading's inputs (checks.SALT)
        by_part = {p: [c for c in registry.CHECKS.values() if c.part == p] for p in parts}
        g = Grading(sub, iso, time_limit, memory_mb, deadline, package, out)
        if jobs > 1 and iso.mode != "namespace":
            # without namespaces parts running side by side share the machine's writable folders
            jobs = 1
            notes.append("parts ran one at a time (--jobs needs namespaces: INSTRUCTORS.md)")
        with ThreadPoolExecutor(max(1, jobs)) as pool:
            done = list(pool.map(lambda p: (p, *grade_part(g, p, by_part[p])), parts))
        notes.append("isolation: " + g.isolation.describe(g.landlock))
        if g.unconfined:
            notes.append("WARNING: the parts' processes ran without their seccomp filter (this machine's "
                          "architecture is not known to minivit/assignment/jail.py)")
        if g.readable:
            notes.append("WARNING: a part's process could read or write " + ", ".join(sorted(g.readable)) +
                         " (INSTRUCTORS.md: make them root-only, or grade where unshare works)")
        result = assemble(done, t0, notes)
        result = feedback.redact_result(result, feedback.redactor(parts, package))
    except Exception as e:                              # noqa: BLE001 - results.json regardless
        traceback.print_exc()
        reason = (f"the submission could not be read: {e}" if isinstance(e, (OSError, ValueError)) else
                  f"the autograder failed ({type(e).__name__}); please tell your instructor")
        if isinstance(e, RuntimeError):         # the detail for the instructor's log only
            print(f"grader set-up problem: {e}")
            reason = "the autograder is not set up right (its log says why); please tell your instructor"
        result = failed_everything(parts if isinstance(parts, tuple) else ORDER, reason, t0)
    if not quiet:
        print(result["output"])
    return write(result, out)


def assemble(done, t0, notes):
    tests, lines = [], []
    for part, results, secs in done:
        shares = feedback.points(PARTS[part][0], [c.weight for c, _, _ in results])
        got = 0.0
        for n, ((c, ok, output), share) in enumerate(zip(results, shares), 1):
            got += share if ok else 0.0
            tests.append({"name": f"{part}: {c.title}", "number": f"{ORDER.index(part) + 1}.{n}",
                          "score": share if ok else 0.0, "max_score": share,
                          "status": "passed" if ok else "failed", "output": output,
                          "visibility": HIDDEN if c.hidden else VISIBLE})
        lines.append(f"{part:12s} {got:6.2f} / {PARTS[part][0]:3d}   ({secs:.1f} s)")
    score = sum(t["score"] for t in tests)
    total = sum(t["max_score"] for t in tests)
    return {"score": score, "execution_time": round(time.monotonic() - t0, 2),
            "output": "\n".join(lines + [f"{'total':12s} {score:6.2f} / {total:3g}"] + notes),
            "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


def failed_everything(parts, message, t0):
    tests = [{"name": f"{p}: {PARTS[p][1]}", "number": f"{ORDER.index(p) + 1}", "score": 0.0,
              "max_score": float(PARTS[p][0]), "status": "failed", "output": message, "visibility": VISIBLE}
             for p in parts]
    return {"score": 0.0, "execution_time": round(time.monotonic() - t0, 2), "output": message,
            "visibility": "visible", "stdout_visibility": "hidden", "tests": tests}


def write(result, out):
    """results.json, written once: a new file in the folder, then renamed over the old."""
    if out:
        out = Path(out)
        out.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp = tempfile.mkstemp(dir=out.parent, prefix=".results-", suffix=".json")
        with os.fdopen(fd, "w", encoding="utf-8") as f:
            f.write(json.dumps(result, indent=1) + "\n")
        os.chmod(tmp, 0o644)
        os.replace(tmp, out)
    return result
