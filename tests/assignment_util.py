"""Helpers shared by the assignment tests: student copies, edits of their regions, gradings
through the command line and through the Gradescope autograder, and the secret lines that
must never reach a student."""
import ast
import functools
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import textwrap
import zipfile
from pathlib import Path

import minivit
from minivit.assignment.make import make
from minivit.assignment.markers import find_regions
from minivit.assignment.parts import ORDER, PARTS

PACKAGE = Path(minivit.__file__).resolve().parent
SOURCES = sorted(p for p in PACKAGE.rglob("*.py") if "__pycache__" not in p.parts)
# files whose every line is secret: the fast kernels (answers written for speed), the
# PyTorch twin, the hidden checks and the grader's diagnoses (wrong variants of the solution)
SECRET_FILES = ("hidden.py", "diagnoses.py", "torch_ref.py", "bench_ops.py")
SHIPPED_ASSIGNMENT = ("public.py", "public_model.py", "checks.py", "parts.py", "drivers.py")
# Debian's own Python (marked externally managed, PEP 668), as on Gradescope's images
SYSTEM_PYTHON = "/usr/bin/python3"
# a subprocess that must import the student copy, not the editable install of the solution
STRIP_EDITABLE = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in "
                  "repr(f).lower()]; sys.path.insert(0, '.'); ")


def env():
    e = {k: v for k, v in os.environ.items() if k != "PYTHONPATH"}
    e.update(OPENBLAS_NUM_THREADS="1", MINIVIT_NUM_THREADS="1")
    return e


def fresh(tmp_path, name="copy", parts=None):
    make(tmp_path / name, parts)
    return tmp_path / name


def scores(result):
    """{part: (score, max)} from a results dict."""
    out = {}
    for t in result["tests"]:
        p = t["name"].split(":")[0]
        s, m = out.get(p, (0.0, 0.0))
        out[p] = (s + t["score"], m + t["max_score"])
    return out


def failed(result, part):
    return {t["name"] for t in result["tests"] if t["name"].startswith(part + ":") and t["status"] != "passed"}


def outputs(result, part):
    return "\n".join(t["output"] for t in result["tests"] if t["name"].startswith(part + ":"))


def set_region(copy, rel, part, code, index=None, indent=True):
    """Replace the body of the student region(s) of `part` in copy/minivit/<rel> by `code`
    (indented like the region unless indent=False); index: only that one region of the part
    in the file."""
    path = copy / "minivit" / rel
    lines = path.read_text().split("\n")
    regions = [r for r in find_regions("\n".join(lines), rel, PARTS, kinds=("YOUR CODE",)) if r.part == part]
    assert regions, f"no region of {part} in {rel}"
    for k, r in reversed(list(enumerate(regions))):
        if index is None or k == index:
            body = [r.indent + ln if ln and indent else ln for ln in textwrap.dedent(code).strip("\n").split("\n")]
            lines[r.begin + 1:r.end] = body
    path.write_text("\n".join(lines))


def edit(copy, rel, old, new, count=None):
    path = copy / "minivit" / rel
    text = path.read_text()
    assert old in text, f"{old!r} not in {rel}"
    if count is not None:
        assert text.count(old) == count, f"{old!r} occurs {text.count(old)} times in {rel}"
    path.write_text(text.replace(old, new))


def grade_cli(copy, out, parts=None, *extra, timeout=600):
    """`python -m minivit.assignment grade` in a process of its own; the results dict."""
    cmd = [sys.executable, "-m", "minivit.assignment", "grade", str(copy), "--out", str(out)]
    if parts:
        cmd += ["--parts", *parts]
    r = subprocess.run(cmd + list(extra), capture_output=True, text=True, timeout=timeout, env=env())
    assert Path(out).is_file(), f"no results.json (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
    return json.loads(Path(out).read_text()), r


# --- secrets ------------------------------------------------------------------------------
def code(line):
    """A line without indentation and trailing comment."""
    return re.sub(r"\s+#[^'\"]*$", "", line.strip())


def secret_lines(parts=ORDER):
    """Lines (stripped, >= 12 characters) that exist only inside the regions of `parts`, in
    the fast kernels, the hidden checks or the diagnoses, and nowhere else in the package's
    code (a docstring does not count: one that repeated a solution line would leak it)."""
    return set(_secret_lines(tuple(sorted(parts))))


@functools.lru_cache(maxsize=None)
def _secret_lines(parts):
    inside, outside = set(), set()
    for path in SOURCES:
        rel = path.relative_to(PACKAGE)
        lines = [code(ln) for ln in path.read_text().split("\n")]
        if rel.parts[0] == "fast" or rel.name in SECRET_FILES:
            inside.update(lines)
            continue
        if rel.parts[0] == "assignment":
            if rel.name in SHIPPED_ASSIGNMENT:
                outside.update(lines)
            continue
        ins = set()
        for r in find_regions(path.read_text(), str(rel), PARTS):
            if r.part in parts:
                ins.update(range(r.begin + 1, r.end))
        docstrings = set()
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Expr) and isinstance(node.value, ast.Constant) \
                    and isinstance(node.value.value, str):
                docstrings.update(range(node.lineno - 1, node.end_lineno))
        for i, ln in enumerate(lines):
            if i in ins:
                inside.add(ln)
            elif i not in docstrings:
                outside.add(ln)
    return frozenset(s for s in inside - outside if len(s) >= 12 and not s.startswith("#"))


def secrets_in(text, parts=ORDER):
    """The secret lines that occur in `text` (line by line, and inside longer lines)."""
    secrets = secret_lines(parts)
    lines = {code(ln) for ln in text.split("\n")}
    flat = re.sub(r"\s+", " ", text)
    return sorted(s for s in secrets if s in lines or (len(s) >= 30 and s in flat))


def assert_no_secrets(copy, parts):
    secrets = secret_lines(parts)
    for p in (p for p in copy.rglob("*") if p.is_file()):
        lines = {code(ln) for ln in p.read_bytes().decode("utf-8", "replace").split("\n")}
        assert not secrets & lines, f"{p.relative_to(copy)}: {sorted(secrets & lines)[:3]}"
    return secrets


# --- Gradescope ---------------------------------------------------------------------------
class Autograder:
    """The Gradescope zip unpacked as Gradescope does: ROOT/source holds the zip, setup.sh
    runs once as root, ROOT/run_autograder for every submission (ROOT/submission ->
    ROOT/results/results.json). ROOT is a folder of its own under the system's temporary
    folder, readable by other users like Gradescope's /autograder."""

    def __init__(self, parts, *extra):
        self.root = Path(tempfile.mkdtemp(prefix="minivit-autograder-"))
        self.root.chmod(0o755)
        zpath = self.root / "autograder.zip"
        subprocess.run([sys.executable, "-m", "minivit.assignment", "gradescope", str(zpath),
                        "--parts", *parts, *extra], check=True, env=env(), capture_output=True, timeout=120)
        with zipfile.ZipFile(zpath) as z:
            z.extractall(self.root / "source")
            for info in z.infolist():
                mode = (info.external_attr >> 16) & 0o777
                if mode:
                    (self.root / "source" / info.filename).chmod(mode)
        zpath.unlink()
        shutil.copy(self.root / "source" / "run_autograder", self.root / "run_autograder")

    def env(self, python_dir):
        e = {k: v for k, v in os.environ.items() if not k.startswith(("PYTHON", "VIRTUAL_ENV", "MINIVIT_"))}
        e.update(AUTOGRADER_ROOT=str(self.root), PATH=f"{python_dir}:/usr/sbin:/usr/bin:/sbin:/bin")
        return e

    def setup(self, python=SYSTEM_PYTHON):
        """Run setup.sh with `python` as the system's python3."""
        bindir = self.root / "system-bin"
        bindir.mkdir(exist_ok=True)
        if not (bindir / "python3").exists():
            (bindir / "python3").symlink_to(python)
        return subprocess.run(["bash", str(self.root / "source" / "setup.sh")], env=self.env(bindir),
                              capture_output=True, text=True, timeout=600)

    def submit(self, files, *args, timeout=600):
        """Grade a submission: `files` is a folder (its contents are the upload) or
        {relative path: text}. Returns (results dict, completed process)."""
        sub = self.root / "submission"
        shutil.rmtree(sub, ignore_errors=True)
        if isinstance(files, dict):
            for rel, text in files.items():
                (sub / rel).parent.mkdir(parents=True, exist_ok=True)
                (sub / rel).write_text(text)
        else:
            shutil.copytree(files, sub)
        r = subprocess.run(["bash", str(self.root / "run_autograder"), *args],
                           env=self.env(self.root / "system-bin"), capture_output=True, text=True,
                           timeout=timeout)
        results = self.root / "results" / "results.json"
        assert results.is_file(), f"no results.json (exit {r.returncode}):\n{r.stdout[-3000:]}\n{r.stderr[-3000:]}"
        return json.loads(results.read_text()), r

    def remove(self):
        shutil.rmtree(self.root, ignore_errors=True)
