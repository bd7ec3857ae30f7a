"""The lessons' exercise edition (`python -m minivit.lessons exercises DIR`; the assignment's
`make` ships the same): the solution edition in `lessons/` with every exercise region turned
into a TODO and every written answer into a placeholder (minivit.assignment.markers)."""
import shutil
from pathlib import Path

from ..assignment.markers import exercise_notebook

LESSONS = Path(__file__).resolve().parent.parent.parent / "lessons"   # beside the package

README = """\
# minivit lessons: your exercise edition

```bash
jupyter lab .          # or: jupyter notebook .   (pip install -e ".[lessons]" in minivit)
```

Work through each notebook from the top, one cell at a time. (Run All works too: the check
cells are tagged `raises-exception`, so an unfinished exercise does not stop it.)

* **Exercises.** A cell tagged `exercise` defines a function with a part for you to
  write, between two marker lines (`### BEGIN ...` and `### END ...`): replace
  the `raise NotImplementedError(...)` there with your code (the TODO above it is a hint),
  run the cell, then run the check cell below it. It prints one line per tensor it compares
  (exact / close / max difference, and where) and fails, naming the cases, until your code
  is right; while the exercise is untouched it says `exercise <name> is not done yet`. The
  cells after a check use the library's version, so they run whether or not you have
  finished it.
* **Predict before you run** and **questions**: write your answer where a cell says
  *Your answer here.* (double-click it to edit).

The notebooks find CIFAR-10 and the trained checkpoint through the library, wherever this
folder is: the data in `$MINIVIT_DATA` or the cache folder (downloaded once, ~170 MB), the
checkpoint beside the installed minivit or in `$MINIVIT_LESSONS_CHECKPOINT`.
"""


def notebooks(lessons=LESSONS):
    """The lesson notebooks of a folder, in order."""
    return sorted(Path(lessons).glob("*.ipynb"))


def write_exercises(out_dir, lessons=LESSONS, checkpoints=False):
    """Write the exercise edition of every notebook in `lessons` and a README.md to
    `out_dir`; with checkpoints=True also its checkpoints/ folder (a student copy of the
    package has it beside the package, where the library looks). Refuses to overwrite a
    file (a learner's work). Returns the written paths."""
    lessons, out = Path(lessons), Path(out_dir)
    sources = notebooks(lessons)
    if not sources:
        raise FileNotFoundError(f"no lesson notebooks in {lessons} (the lessons come with a clone "
                                f"of minivit, installed with pip install -e .)")
    copies = {out / "checkpoints" / p.name: p for p in sorted((lessons / "checkpoints").glob("*.npz"))
              } if checkpoints else {}
    targets = [out / p.name for p in sources] + [out / "README.md"] + list(copies)
    existing = [str(t) for t in targets if t.exists()]
    if existing:
        raise FileExistsError(f"{', '.join(existing[:3])}{' ...' if len(existing) > 3 else ''} "
                              f"exist already: choose an empty folder (your work there is kept)")
    out.mkdir(parents=True, exist_ok=True)
    for src in sources:
        text, _ = exercise_notebook(src.read_text(encoding="utf-8"), f"lessons/{src.name}")
        (out / src.name).write_text(text, encoding="utf-8")
    (out / "README.md").write_text(README, encoding="utf-8")
    for dst, src in copies.items():
        dst.parent.mkdir(exist_ok=True)
        shutil.copyfile(src, dst)
    return targets
