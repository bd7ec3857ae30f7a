"""`python -m minivit.assignment make OUT_DIR [--parts ...]`: the student copy.

OUT_DIR receives

    minivit/          the package: the selected parts' regions turned into TODOs, the other
                      parts' code as it is, without markers; no minivit/fast/ (the fast
                      kernels contain the answers: the copy runs on the reference kernels),
                      no PyTorch twin, no grader, no hidden checks, no compiled files
    tests/            test_<part>.py: the public checks of each selected part, for pytest
    lessons/          the lessons' exercise edition (minivit/lessons/edition.py, as `python -m
                      minivit.lessons exercises` writes it) and their checkpoint, if the
                      source has lessons
    pyproject.toml    so that `pip install -e ".[test,lessons]"` works in the copy
    README.md         what to write and where; set-up, data, lessons, tests, submitting
    assignment.json   the parts and their points (the grader's default selection)

Before it returns, make reads every file it wrote and fails if one contains a line that
only exists inside a selected region or in a left-out file (the leak check).
"""
import json
import re
import shutil
from pathlib import Path

from .markers import MarkerError, cell_source, find_regions, solution_lines, student_text
from .parts import ORDER, PARTS, check_parts

PACKAGE = Path(__file__).resolve().parent.parent          # the solution: minivit/
# left out of the copy: the fast kernels (the answers, written for speed), the PyTorch
# twin of the model and the fast ops' benchmark (which imports minivit.fast)
EXCLUDE = ("fast", "torch_ref.py", "bench_ops.py")
# of minivit/assignment/ only these go to students: the registry, the public checks and
# their glue; of the rest, the hidden checks and the diagnoses (wrong variants of the
# solution) are secret, the grader's machinery is not but stays with the grader
ASSIGNMENT_SHIPPED = ("parts.py", "checks.py", "public.py", "public_model.py", "drivers.py")
ASSIGNMENT_DIR = "assignment"
HIDDEN = ("hidden.py", "diagnoses.py")

PYPROJECT = """\
[build-system]
requires = ["setuptools>=64"]
build-backend = "setuptools.build_meta"

[project]
name = "minivit"
version = "0.1.0+assignment"
description = "minivit, student copy: write the forward and backward passes yourself."
requires-python = ">=3.10"
dependencies = ["numpy>=1.23", "threadpoolctl>=3.1", "tqdm>=4.60"]

[project.optional-dependencies]
test = ["pytest>=7"]
plot = ["matplotlib>=3.5"]
# opening the lessons: jupyter lab lessons/
lessons = ["jupyterlab>=4", "matplotlib>=3.5", "ipykernel>=6", "ipywidgets>=8"]

[tool.setuptools.packages.find]
include = ["minivit*"]

[tool.pytest.ini_options]
testpaths = ["tests"]
"""

STUDENT_INIT = '''"""Your assignment: the public checks of each part (public.py, public_model.py) run with

    python -m pytest tests/                 # every part
    python -m pytest tests/test_linear.py   # one part

The grader runs these and hidden checks, each part on top of the reference solution of
every other part: a bug in one part costs points in that part only.
"""
'''

TEST_FILE = '''"""Public checks of part `{part}`: {title}.

    python -m pytest tests/test_{part}.py -v

The grader runs these and hidden checks (reference values from fixed seeds).
"""
import pytest

from minivit.assignment.checks import checks_for, load

load()
CHECKS = checks_for("{part}", public_only=True)


@pytest.mark.parametrize("check", CHECKS, ids=[c.name for c in CHECKS])
def test_{part}(check):
    output = check.run_standalone()
    if output:
        print(output)
'''


def source_files(package=PACKAGE):
    """Every file of the package that goes into a copy (relative paths), before the
    per-file transformation; __pycache__ and compiled files never do."""
    for path in sorted(package.rglob("*")):
        rel = path.relative_to(package)
        if not path.is_file() or "__pycache__" in rel.parts or path.suffix in (".pyc", ".pyo"):
            continue
        if rel.parts[0] in EXCLUDE:
            continue
        if rel.parts[0] == ASSIGNMENT_DIR and (len(rel.parts) > 2 or rel.name not in ASSIGNMENT_SHIPPED):
            continue
        yield rel


def marked_files(package=PACKAGE):
    """{relative path: [Region]} for every .py file of the library with regions (the
    assignment package itself, whose docstrings show the markers, is not scanned)."""
    out = {}
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if "__pycache__" in rel.parts or rel.parts[0] == ASSIGNMENT_DIR:
            continue
        regions = find_regions(path.read_text(encoding="utf-8"), f"minivit/{rel.as_posix()}", PARTS)
        if regions:
            out[rel] = regions
    return out


def lessons_dir(package=PACKAGE):
    d = package.parent / "lessons"
    return d if d.is_dir() else None


def make(out_dir, parts=None, package=PACKAGE):
    """Write the student copy; returns {"parts": ..., "files": [written paths]}."""
    parts = check_parts(parts or ORDER)
    package, out = Path(package), Path(out_dir)
    regions = marked_files(package)
    missing = [p for p in parts if not any(r.part == p for rs in regions.values() for r in rs)]
    if missing:
        raise MarkerError(f"no region of part(s) {', '.join(missing)} in {package}")
    if out.exists() and any(out.iterdir()):
        raise FileExistsError(f"{out} exists and is not empty")
    out.mkdir(parents=True, exist_ok=True)

    written, by_part = [], {p: [] for p in parts}
    for rel in source_files(package):
        src, dst = package / rel, out / "minivit" / rel
        dst.parent.mkdir(parents=True, exist_ok=True)
        if rel.suffix == ".py" and rel.parts[0] != ASSIGNMENT_DIR:
            text, found = student_text(src.read_text(encoding="utf-8"), f"minivit/{rel.as_posix()}",
                                       parts, PARTS, relpath=f"minivit/{rel.as_posix()}")
            dst.write_text(text, encoding="utf-8")
            for r in found:
                if r.part in parts:
                    by_part[r.part].append((f"minivit/{rel.as_posix()}", r.function))
        else:
            shutil.copyfile(src, dst)
        written.append(dst)
    init = out / "minivit" / ASSIGNMENT_DIR / "__init__.py"
    init.write_text(STUDENT_INIT, encoding="utf-8")
    written.append(init)

    tests = out / "tests"
    tests.mkdir(exist_ok=True)
    for p in parts:
        f = tests / f"test_{p}.py"
        f.write_text(TEST_FILE.format(part=p, title=PARTS[p][1]), encoding="utf-8")
        written.append(f)

    lessons = lessons_dir(package)
    if lessons is not None:    # the lessons' exercise edition, as `python -m minivit.lessons exercises`
        from ..lessons.edition import write_exercises
        written += write_exercises(out / "lessons", lessons, checkpoints=True)

    for name, text in (("pyproject.toml", PYPROJECT),
                       ("README.md", readme(parts, by_part, regions, lessons is not None)),
                       ("assignment.json", json.dumps(manifest(parts), indent=2) + "\n")):
        (out / name).write_text(text, encoding="utf-8")
        written.append(out / name)

    leaks = find_leaks(out, parts, package)
    if leaks:
        raise RuntimeError("solution text in the student copy:\n  " + "\n  ".join(leaks[:20]))
    return {"parts": parts, "files": written}


def manifest(parts):
    return {"parts": list(parts), "points": {p: PARTS[p][0] for p in parts},
            "total": sum(PARTS[p][0] for p in parts)}


def readme(parts, by_part, regions, with_lessons=False):
    hints = {}
    for rel, rs in regions.items():
        for r in rs:
            hints.setdefault(r.part, []).append((f"minivit/{rel.as_posix()}", r.function, r.hint))
    lines = ["# minivit: your assignment", "",
             "Write the forward and backward passes of a Vision Transformer yourself. Each place",
             "to write is marked in the source:", "",
             "```python", "    ### BEGIN YOUR CODE <part>", "    # TODO (<part>): a hint",
             "    raise NotImplementedError(...)", "    ### END YOUR CODE", "```", "",
             "Replace the `raise` line with your code, **between the two marker lines**, and keep",
             "the markers: the grader takes exactly what is between them, so a helper function or an",
             "import you need goes there too, inside the function (indented like the markers: code",
             "outside the function is refused). Everything outside the markers is given and runs as it",
             "is; the model runs on the reference kernels of `minivit/ops/` (yours).", "",
             "## Set up", "",
             "```bash", "python -m venv .venv && . .venv/bin/activate",
             'pip install -e ".[test]"' + ('              # add ",lessons" for the notebooks' if with_lessons else ""),
             "```", "",
             "## Test", "",
             "```bash", "python -m pytest tests/                 # the public checks of every part",
             f"python -m pytest tests/test_{parts[0]}.py   # one part", "```", "",
             "Each check says what is wrong: which output, where, and by how much. The grader runs these",
             "public checks and hidden ones (your outputs against reference values on fixed inputs, with",
             "a diagnosis of common mistakes), each part on top of the reference solution of the others,",
             "so a bug in one part costs points there only. What your code prints costs nothing (the",
             "grader does not show it to anyone).", ""]
    if with_lessons:
        lines += ["## Data and lessons", "",
                  "The lessons (`lessons/*.ipynb`) use CIFAR-10: on first use `minivit.data.load_cifar10`",
                  "downloads it (163 MB, checked against its md5) into `~/.cache/minivit`; set `MINIVIT_DATA`",
                  "to a folder holding `cifar-10-python.tar.gz` to use a copy you have. Lessons 6 and 7 load",
                  "the trained model in `lessons/checkpoints/`.", "",
                  "```bash", 'pip install -e ".[test,lessons]"', "jupyter lab lessons/", "```", "",
                  "Where a lesson calls code of a part you have not written yet, that cell raises",
                  "`NotImplementedError` naming the part: write the part, then run the lesson again.", ""]
    lines += ["## Submit", "",
              "Upload your `minivit` folder (zipped or not), or just the files you edited: the grader",
              "finds each file by its path (e.g. `minivit/ops/linear.py`) and reads only the text between",
              "your markers.", "",
              "| part | points | where |", "|---|---|---|"]
    for p in parts:
        where = ", ".join(f"`{f}` ({fn})" if fn else f"`{f}`" for f, fn in by_part[p])
        lines.append(f"| {p} | {PARTS[p][0]} | {where} |")
    lines += ["", f"Total: {sum(PARTS[p][0] for p in parts)} points.", "", "## Hints", ""]
    for p in parts:
        lines.append(f"* **{p}**: {PARTS[p][1]}")
        for f, fn, h in hints.get(p, []):
            lines.append(f"  * `{fn or f}`: {h}")
    return "\n".join(lines) + "\n"


# --- the leak check -----------------------------------------------------------------------
def _norm(line):
    s = line.strip()
    if not s or s.startswith("#"):
        return ""
    s = re.sub(r"\s+#.*$", "", s) if "#" in s and not re.search(r"['\"].*#", s) else s
    return re.sub(r"\s+", " ", s).strip()


MIN_LEAK = 12       # shorter lines (`return dx`, `x = x + h`) prove nothing
MIN_SUBSTRING = 30  # searched inside other lines too (a docstring may name a short formula)


def leak_candidates(parts, package=PACKAGE, with_outside=False):
    """Normalised code lines that exist only inside the selected regions or in files left
    out of the copy, never in what the copy legitimately contains."""
    package = Path(package)
    inside, outside = set(), set()
    shipped_files = set(source_files(package))
    for path in sorted(package.rglob("*.py")):
        rel = path.relative_to(package)
        if "__pycache__" in rel.parts:
            continue
        text = path.read_text(encoding="utf-8")
        shipped = rel in shipped_files
        if rel.parts[0] == ASSIGNMENT_DIR:        # of the grader only the hidden checks are secret
            if shipped or rel.name in HIDDEN:
                (outside if shipped else inside).update(map(_norm, text.split("\n")))
            continue
        ins, outs = solution_lines(text, str(rel), parts, PARTS)
        if shipped:
            inside.update(map(_norm, ins))
            outside.update(map(_norm, outs))
        else:
            inside.update(map(_norm, text.split("\n")))
    lessons = lessons_dir(package)
    for nb in sorted(lessons.glob("*.ipynb")) if lessons is not None else ():
        for n, cell in enumerate(json.loads(nb.read_text(encoding="utf-8")).get("cells", [])):
            src, where = cell_source(cell), f"{nb.name} cell {n}"
            if cell.get("cell_type") == "code":     # every region of a lesson is an exercise
                ins, outs = solution_lines(src, where, {r.part for r in find_regions(src, where)})
                inside.update(map(_norm, ins))
                outside.update(map(_norm, outs))
    candidates = {s for s in inside - outside if len(s) >= MIN_LEAK}
    if with_outside:
        return candidates, "\n".join(sorted(outside))
    return candidates


def find_leaks(out_dir, parts, package=PACKAGE):
    """["file: line"] for every candidate line found in any file under out_dir (read as
    bytes, so compiled or binary files are searched too); also any compiled file."""
    out_dir = Path(out_dir)
    candidates, outside = leak_candidates(parts, package, with_outside=True)
    # searched inside longer lines too: those not part of a legitimate line of code
    fragments = {c for c in candidates if len(c) >= MIN_SUBSTRING and c not in outside}
    leaks = []
    for path in sorted(out_dir.rglob("*")):
        if not path.is_file():
            continue
        rel = path.relative_to(out_dir).as_posix()
        if path.suffix in (".pyc", ".pyo") or "__pycache__" in path.parts:
            leaks.append(f"{rel}: a compiled file")
            continue
        text = path.read_bytes().decode("utf-8", errors="replace")
        norm = {_norm(ln) for ln in text.split("\n")}
        for c in sorted(candidates & norm):
            leaks.append(f"{rel}: {c}")
        flat = re.sub(r"\s+", " ", text)
        for c in sorted(fragments - norm):
            if c in flat:
                leaks.append(f"{rel}: {c}")
    return leaks


def fill(copy_dir, parts=None, package=PACKAGE):
    """Fill the student copy's regions (of `parts`, default all) from the solution, in
    place: what a student who gets everything right hands in. Returns the files changed."""
    from .markers import fill_text
    package, copy_dir = Path(package), Path(copy_dir)
    changed = []
    for rel in marked_files(package):
        dst = copy_dir / "minivit" / rel
        if not dst.is_file():
            continue
        text = dst.read_text(encoding="utf-8")
        filled = fill_text(text, (package / rel).read_text(encoding="utf-8"), f"minivit/{rel.as_posix()}",
                           PARTS, only=None if parts is None else set(parts))
        if filled != text:
            dst.write_text(filled, encoding="utf-8")
            changed.append(dst)
    return changed
