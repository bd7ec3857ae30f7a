"""The Gradescope autograder zip, set up and run as Gradescope does (the `autograder` fixture of
conftest.py: setup.sh once with Debian's own, externally managed python3), and a grading by
a user who is not root."""
import json
import os
import shutil
import signal
import stat
import subprocess
import tempfile
import time
from pathlib import Path

import pytest

from assignment_util import PACKAGE, SYSTEM_PYTHON, fresh, outputs, scores, set_region
from minivit.assignment.make import fill
from minivit.assignment.parts import PARTS
from minivit.assignment.sandbox import free_uid, pids_where

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def copy(tmp_path_factory):
    c = fresh(tmp_path_factory.mktemp("gs"), parts=["linear", "softmax", "loss"])
    fill(c, ["linear"])
    return c


def test_setup_sh_installs_into_its_own_environment_and_locks_the_source(autograder):
    root = autograder.root
    assert stat.S_IMODE((root / "source").stat().st_mode) == 0o700      # grader, solution, hidden checks
    assert stat.S_IMODE((root / "venv").stat().st_mode) & 0o005 == 0o005  # the parts' user runs it
    assert (root / "venv" / "bin" / "python").is_file()
    # nothing went into the system's Python, and minivit is installed nowhere
    r = subprocess.run([SYSTEM_PYTHON, "-c", "import minivit"], capture_output=True, cwd="/")
    assert r.returncode != 0
    r = subprocess.run([str(root / "venv" / "bin" / "python"), "-c", "import numpy, importlib.util, sys; "
                        "sys.exit(importlib.util.find_spec('minivit') is not None)"], cwd="/")
    assert r.returncode == 0


def test_loose_files_upload(autograder, copy):
    """The student uploads two loose files: linear.py written, softmax.py with its TODO."""
    files = {rel.split("/")[-1]: (copy / "minivit" / rel).read_text() for rel in ("ops/linear.py", "ops/softmax.py")}
    result, _ = autograder.submit(files)
    assert result["score"] == PARTS["linear"][0]
    assert list(scores(result)) == ["linear", "softmax", "loss"]
    assert "minivit/ops/loss.py was not found in the submission" in outputs(result, "loss")
    total = sum(t["max_score"] for t in result["tests"])
    assert total == PARTS["linear"][0] + PARTS["softmax"][0] + PARTS["loss"][0]


def test_run_autograder_clears_results_and_reports_a_failing_grader(autograder, copy):
    results = autograder.root / "results"
    results.mkdir(exist_ok=True)
    (results / "results.json").write_text(json.dumps({"score": 1000}))
    (results / "left-over").write_text("from an earlier run")
    grader = autograder.root / "source" / "minivit_src" / "minivit" / "assignment" / "grader.py"
    kept = grader.read_bytes()
    grader.write_text("raise SystemExit(3)\n")          # the grader itself broken
    try:
        result, r = autograder.submit(copy)
    finally:
        grader.write_bytes(kept)
    assert result["score"] == 0 and result["tests"] == []
    assert "exit status 1" in result["output"] or "exit status 3" in result["output"], result["output"]
    assert not (results / "left-over").exists()
    result, _ = autograder.submit(copy)                 # and back to normal
    assert result["score"] == PARTS["linear"][0]


SLEEPER = "import time; time.sleep(30)"
TOKEN = "minivit-nonroot-sleeper"


def test_grading_as_a_user_who_is_not_root(autograder, copy, tmp_path):
    """An instructor's laptop: the grader runs as an ordinary user (here a throwaway uid via
    setpriv, with the autograder's Python). It grades, says that isolation is weaker, and
    still leaves no process of a part behind (a setsid child is collected as an orphan)."""
    setpriv = shutil.which("setpriv")
    if setpriv is None:
        pytest.skip("needs setpriv (util-linux) to run the grader as an ordinary user")
    uid = free_uid()
    work = Path(tempfile.mkdtemp(prefix="minivit-nonroot-"))
    try:
        shutil.copytree(PACKAGE, work / "pkg" / "minivit", ignore=shutil.ignore_patterns("__pycache__"))
        shutil.copytree(copy, work / "sub")
        set_region(work / "sub", "ops/softmax.py", "softmax", f'''
import subprocess, sys
subprocess.Popen([sys.executable, "-c", {SLEEPER!r}, "{TOKEN}"], start_new_session=True,
                 stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
raise NotImplementedError''', index=0)
        for p in [work, *work.rglob("*")]:
            os.lchown(p, uid, uid)
        work.chmod(0o755)
        r = subprocess.run([setpriv, f"--reuid={uid}", f"--regid={uid}", "--clear-groups", "--",
                            str(autograder.root / "venv" / "bin" / "python"), "-m", "minivit.assignment", "grade",
                            str(work / "sub"), "--out", str(work / "out" / "results.json"),
                            "--parts", "linear", "softmax"],
                           cwd=work / "pkg", env={"PATH": "/usr/bin:/bin", "HOME": str(work)},
                           capture_output=True, text=True, timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        result = json.loads((work / "out" / "results.json").read_text())
        assert scores(result)["linear"][0] == PARTS["linear"][0] and scores(result)["softmax"][0] == 0
        assert "isolation is weaker" in result["output"]
        time.sleep(0.5)
        assert not pids_where("Uid", uid), "a process of the grading outlived it"
    finally:
        for pid in pids_where("Uid", uid):                # only the throwaway user's processes
            os.kill(pid, signal.SIGKILL)
        shutil.rmtree(work, ignore_errors=True)


def test_namespaces_that_cannot_be_set_up_fall_back_to_a_fresh_user(autograder, copy, tmp_path):
    """Where unshare works but the part's filesystem cannot be built (here: an impossible size
    for its home), the grader grades with the fresh user alone and says so."""
    work = Path(tempfile.mkdtemp(prefix="minivit-fallback-"))
    try:
        shutil.copytree(PACKAGE, work / "pkg" / "minivit", ignore=shutil.ignore_patterns("__pycache__"))
        work.chmod(0o755)
        code = ("import sys, minivit.assignment.sandbox as s; s.HOME_MB = -1; "
                "from minivit.assignment.__main__ import main; sys.exit(main(sys.argv[1:]))")
        r = subprocess.run([str(autograder.root / "venv" / "bin" / "python"), "-c", code, "grade", str(copy),
                            "--out", str(tmp_path / "results.json"), "--parts", "linear", "softmax"],
                           cwd=work / "pkg", env={"PATH": "/usr/bin:/bin"}, capture_output=True, text=True,
                           timeout=300)
        assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
        result = json.loads((tmp_path / "results.json").read_text())
        assert scores(result)["linear"][0] == PARTS["linear"][0], outputs(result, "linear")
        assert "could not be set up here" in r.stdout
        assert "fresh unprivileged user (no namespaces" in result["output"]
    finally:
        shutil.rmtree(work, ignore_errors=True)
