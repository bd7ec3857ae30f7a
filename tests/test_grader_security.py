"""The grader against a student who sets out to cheat (issue #30): one real cheating
submission per class of hole, graded end to end (through the Gradescope autograder, after
its setup.sh, where the hole is Gradescope's). Each asserts a zero score for the cheating
part, unchanged scores for the honest ones, and no secret line in results.json.

The submission in every test: `linear` written (full points), `loss` left as the copy's TODO
(0 points), `softmax` the cheat.
"""
import json
import os
import signal
import shutil
import time
from pathlib import Path

import pytest

from assignment_util import fresh, grade_cli, outputs, scores, secrets_in, set_region
from minivit.assignment.make import fill
from minivit.assignment.parts import PARTS as PARTS_POINTS

PARTS = ["linear", "softmax", "loss"]
HONEST = {"linear": PARTS_POINTS["linear"][0], "loss": 0.0}

# --- 1. the answer on disk --------------------------------------------------------------
# Looks wherever a copy of the solution could be within reach of the part's process: its
# sys.path (an installed package), the working folders, command lines and environments of
# the grading's processes (/proc), the autograder's folders; execs the first solution found.
# (Only the grading's own processes: on a shared development machine other processes may
# name other checkouts of the solution, world-readable, which Gradescope's container does
# not hold; with namespaces the part sees no other process anyway.)
STEAL = r'''
import os, sys
def _steal(rel, name):
    roots = [p for p in sys.path if p] + [os.getcwd(), "/autograder/source", "AUTOGRADER/source"]
    for pid in os.listdir("/proc"):
        try:
            cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode("utf-8", "replace")
        except OSError:
            continue
        if "GRADING" not in cmd:
            continue
        roots += [a for a in cmd.split("\0") if a.startswith("/")]
        for link in ("cwd", "root"):
            try:
                roots.append(os.readlink(f"/proc/{pid}/{link}"))
            except OSError:
                pass
        try:
            for kv in open(f"/proc/{pid}/environ", "rb").read().decode("utf-8", "replace").split("\0"):
                roots += [v for v in kv.partition("=")[2].split(":") if v.startswith("/")]
        except OSError:
            pass
    here = os.path.realpath(__file__)
    for root in roots:
        for _ in range(5):
            for cand in (os.path.join(root, "minivit", rel), os.path.join(root, "minivit_src", "minivit", rel)):
                try:
                    if os.path.realpath(cand) == here:
                        continue
                    src = open(cand).read()
                except OSError:
                    continue
                if "_steal" in src or "BEGIN YOUR CODE" in src:
                    continue                                   # a student's copy
                ns = {"__name__": "minivit.ops._stolen", "__package__": "minivit.ops", "__file__": cand}
                try:
                    exec(compile(src, cand, "exec"), ns)
                    return ns[name]
                except Exception:
                    continue
            root = os.path.dirname(root)
    raise RuntimeError("no solution within reach")
'''


def steal_softmax(copy, autograder_root=""):
    """The cheat in both softmax regions; the grading's processes are those naming the
    autograder's folder, or the submission (the grade command's argument)."""
    grading = str(autograder_root) if autograder_root else str(copy)
    code = STEAL.replace("AUTOGRADER", str(autograder_root)).replace("GRADING", grading)
    set_region(copy, "ops/softmax.py", "softmax", code + 'return _steal("ops/softmax.py", "softmax_forward")(x, axis)',
               index=0)
    set_region(copy, "ops/softmax.py", "softmax", code + 'return _steal("ops/softmax.py", "softmax_backward")(dy, cache)',
               index=1)


@pytest.fixture(scope="module")
def base(tmp_path_factory):
    """The honest part of every submission: linear written, loss and softmax TODO."""
    copy = fresh(tmp_path_factory.mktemp("base"), parts=PARTS)
    fill(copy, ["linear"])
    return copy


def submission(base, tmp_path, name="copy"):
    dst = tmp_path / name
    shutil.copytree(base, dst)
    return dst


def assert_only_the_cheat_lost(result, cheat="softmax"):
    s = scores(result)
    assert s[cheat][0] == 0.0, (cheat, s[cheat], outputs(result, cheat)[:3000])
    for part, points in HONEST.items():
        assert s[part][0] == pytest.approx(points), (part, s[part], outputs(result, part)[:3000])
    assert result["score"] == pytest.approx(sum(HONEST.values()))
    leaked = secrets_in(json.dumps(result, indent=1).replace("\\n", "\n"), PARTS)
    assert not leaked, leaked[:5]


def test_solution_on_disk_is_out_of_reach_of_grade(base, tmp_path):
    copy = submission(base, tmp_path)
    steal_softmax(copy)
    result, _ = grade_cli(copy, tmp_path / "results.json", PARTS)
    assert_only_the_cheat_lost(result)


@pytest.mark.slow
@pytest.mark.parametrize("isolation", ["auto", "user"])
def test_solution_on_disk_is_out_of_reach_on_gradescope(base, tmp_path, autograder, isolation):
    """auto: namespaces where unshare works (here); user: what Gradescope's containers allow."""
    copy = submission(base, tmp_path)
    steal_softmax(copy, autograder.root)
    result, _ = autograder.submit(copy, "--isolation", isolation)
    assert_only_the_cheat_lost(result)


# --- 2. the student's code before and beside the checks ---------------------------------
# (a) code dedented out of the function: it would run at import and make every
# assert-kind check of the part pass; (b) the same from inside the function, at run time.
REGISTRY_CHEAT = '''
import sys
for _name, _mod in list(sys.modules.items()):
    for _c in list(getattr(_mod, "CHECKS", {}).values()):
        if getattr(_c, "part", None) == "softmax":
            object.__setattr__(_c, "func", lambda *a, **k: "ok")
'''


def test_code_outside_its_function_is_refused(base, tmp_path):
    copy = submission(base, tmp_path)
    set_region(copy, "ops/softmax.py", "softmax", "    raise NotImplementedError\n" + REGISTRY_CHEAT + '''
import minivit.assignment.checks as _checks
_register = _checks.check
def _lenient(part, title, **kw):
    def register(func):
        if part == "softmax" and kw.get("kind", "assert") == "assert":
            def passed(*a, **k):
                return "ok"
            passed.__name__ = func.__name__
            return _register(part, title, **kw)(passed)
        return _register(part, title, **kw)(func)
    return register
_checks.check = _lenient
def _rest_of_softmax_forward(x, axis=-1):
    raise NotImplementedError''', index=0, indent=False)
    result, _ = grade_cli(copy, tmp_path / "results.json", PARTS)
    assert_only_the_cheat_lost(result)
    assert "minivit/ops/softmax.py" in outputs(result, "softmax")
    assert "inside softmax_forward" in outputs(result, "softmax")


def test_checks_cannot_be_patched_from_the_students_function(base, tmp_path):
    copy = submission(base, tmp_path)
    set_region(copy, "ops/softmax.py", "softmax", REGISTRY_CHEAT + "return x, (x, axis)", index=0)
    set_region(copy, "ops/softmax.py", "softmax", REGISTRY_CHEAT + "return dy", index=1)
    result, _ = grade_cli(copy, tmp_path / "results.json", PARTS)
    assert_only_the_cheat_lost(result)


# --- 3. what the part's process writes ---------------------------------------------------
# Forged "passed" reports on every file and pipe the process can write (the old event file,
# the grader's channel), a megabyte of output for them, and noise on stderr.
FORGE = r'''
import json, os, sys
print("STDERR-NOISE " * 20000, file=sys.stderr, flush=True)
big = "FORGED-OUTPUT " * 80000
names = [n.split("def ")[1].split("(")[0] for n in
         open(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assignment", "public.py")).read().split("\n@check")[1:]
         if '"softmax"' in n.split("\n")[0]] if os.path.isfile(os.path.join(os.path.dirname(os.path.dirname(os.path.abspath(__file__))), "assignment", "public.py")) else []
names += ["softmax_values"]
lines = "".join(json.dumps({"event": "done", "id": "softmax." + n, "status": "passed", "output": big}) + "\n"
                for n in names) + json.dumps({"event": "end"}) + "\n"
for a in sys.argv[1:]:
    p = os.path.join(a, "results.jsonl")
    if os.path.isfile(p):
        open(p, "a").write(lines)
for fd in map(int, os.listdir("/proc/self/fd")):
    try:
        os.write(fd, (lines + big).encode()[:65536])
    except OSError:
        pass
main = sys.modules.get("__main__")
if hasattr(main, "write_message"):              # the runner's own framing, on its reply pipe
    import numpy as np
    fd = json.loads(sys.argv[1])["reply_fd"]
    for rid in range(1, 40):
        main.write_message(fd, {"id": rid, "ok": True, "status": "passed", "output": big[:1000],
                                "value": {"t": [{"a": 0}, {"a": 0}]}}, [np.ones((2, 3, 4))])
os._exit(0)
'''


def test_what_the_part_writes_is_never_a_verdict(base, tmp_path):
    copy = submission(base, tmp_path)
    set_region(copy, "ops/softmax.py", "softmax", FORGE, index=0)
    out = tmp_path / "results.json"
    result, _ = grade_cli(copy, out, PARTS)
    assert_only_the_cheat_lost(result)
    text = out.read_text()
    assert "STDERR-NOISE" not in text and "FORGED-OUTPUT" not in text
    assert len(text) < 100_000, len(text)


# --- 4. a process that outlives its part --------------------------------------------------
# A daemon (setsid) that, for 20 s: overwrites results.json, blocks its rename, copies the
# reference of `loss` from the grading tree into the submission before `loss` is graded,
# appends to the grader's source (the next student's grader) and kills the grader.
DAEMON = r'''
import glob, json, os, signal, sys, time
root, tree = sys.argv[2], sys.argv[3]
results = root + "/results/results.json"
forged = json.dumps({"score": 1000, "output": "FORGED-BY-DAEMON", "tests": []})
start = time.time()
while time.time() < start + 20:
    for target in (results, results + ".tmp"):
        try:
            os.makedirs(os.path.dirname(target), exist_ok=True)
            open(target, "w").write(forged)
        except OSError:
            pass
    try:
        os.mkdir(results + ".part")
    except OSError:
        pass
    try:
        ref = open(tree + "/minivit/ops/loss.py").read()
        ref = ref.replace("### BEGIN SOLUTION", "### BEGIN YOUR CODE").replace("### END SOLUTION", "### END YOUR CODE")
        for sub in glob.glob(root + "/submission/**/loss.py", recursive=True):
            open(sub, "w").write(ref)
    except OSError:
        pass
    for p in [p for p in sys.path if p] + [root + "/source/minivit_src"]:
        for g in glob.glob(p + "/minivit/assignment/grader.py"):
            try:
                open(g, "a").write("\n# PATCHED-BY-DAEMON\n")
            except OSError:
                pass
    if time.time() > start + 1:
        for pid in os.listdir("/proc"):
            try:
                cmd = open(f"/proc/{pid}/cmdline", "rb").read().decode("utf-8", "replace")
                if "minivit.assignment" in cmd and root in cmd and int(pid) != os.getpid():
                    os.kill(int(pid), signal.SIGKILL)
            except (OSError, ValueError):
                pass
    time.sleep(0.2)
'''
TOKEN = "minivit-cheat-daemon-30"


def daemons():
    found = []
    for pid in os.listdir("/proc"):
        try:
            if TOKEN.encode() in Path(f"/proc/{pid}/cmdline").read_bytes():
                found.append(int(pid))
        except (OSError, ValueError):
            pass
    return found


@pytest.mark.slow
@pytest.mark.parametrize("isolation", ["auto", "user"])
def test_no_process_outlives_its_part(base, tmp_path, autograder, isolation):
    copy = submission(base, tmp_path)
    set_region(copy, "ops/softmax.py", "softmax", f'''
import os, subprocess, sys
if not os.environ.get("CHEAT_STARTED"):
    os.environ["CHEAT_STARTED"] = "1"
    tree = os.path.dirname(os.path.dirname(os.path.dirname(os.path.abspath(__file__))))
    subprocess.Popen([sys.executable, "-c", {DAEMON!r}, "{TOKEN}", "{autograder.root}", tree],
                     start_new_session=True, stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                     stderr=subprocess.DEVNULL, cwd="/")
raise NotImplementedError''', index=0)
    sources = {p: p.read_bytes() for p in (autograder.root / "source").rglob("*.py")}
    submitted = {p.relative_to(copy): p.read_bytes() for p in copy.rglob("*") if p.is_file()}
    try:
        result, _ = autograder.submit(copy, "--isolation", isolation)
        assert not daemons(), "a process of the softmax part outlived it"
        time.sleep(1.5)                     # a survivor would act within this time
        result = json.loads((autograder.root / "results" / "results.json").read_text())
        assert_only_the_cheat_lost(result)
        assert {p: p.read_bytes() for p in sources} == sources, "the grader's source was changed"
        sub = autograder.root / "submission"
        assert {p.relative_to(sub): p.read_bytes() for p in sub.rglob("*") if p.is_file()} == submitted
    finally:
        for pid in daemons():               # only the processes this test started
            os.kill(pid, signal.SIGKILL)


# --- 5. solution text in results.json ----------------------------------------------------
def test_a_fresh_copy_gets_no_solution_text(tmp_path):
    copy = fresh(tmp_path, parts=["linear", "softmax", "attention", "loss"])
    result, _ = grade_cli(copy, tmp_path / "results.json", ["linear", "softmax", "attention", "loss"])
    assert result["score"] == 0
    leaked = secrets_in(json.dumps(result, indent=1).replace("\\n", "\n"))
    assert not leaked, leaked[:5]


def test_reference_code_a_part_can_reach_is_redacted_from_its_feedback(tmp_path):
    """attention runs on the reference softmax, so it can read its source (by design): what
    it sends back in an exception message is redacted, and loss (which attention does not
    build on) is not even in its tree."""
    parts = ["softmax", "attention", "loss"]
    copy = fresh(tmp_path, parts=parts)
    fill(copy, ["softmax"])
    set_region(copy, "ops/sdpa.py", "attention", '''
import inspect
import minivit.ops.softmax as s
import minivit.ops.loss as l
src = inspect.getsource(s) + inspect.getsource(l)
raise RuntimeError("\\n".join(ln for ln in src.split("\\n") if "exp(" in ln or "logp" in ln))''', index=0)
    result, _ = grade_cli(copy, tmp_path / "results.json", parts)
    s = scores(result)
    assert s["attention"][0] == 0.0 and s["softmax"][0] == PARTS_POINTS["softmax"][0]
    leaked = secrets_in(json.dumps(result, indent=1).replace("\\n", "\n"), parts)
    assert not leaked, leaked[:5]
