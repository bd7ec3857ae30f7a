"""The lesson notebooks: each runs top to bottom in a real kernel (on the real CIFAR-10 when
$MINIVIT_DATA is set, else on a synthetic archive: never skipped), is committed without
outputs, and every figure the README links to exists. Their exercise edition
(minivit/lessons/__init__.py) runs too, from another folder, failing in its check cells
only, and gives the notebook back when the solutions are put back in."""
import getpass
import importlib.util
import json
import re
import socket
from pathlib import Path

import pytest

from minivit.assignment.markers import MarkerError, cell_source, find_answers, find_regions
from minivit.lessons.edition import write_exercises

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ROOT / "lessons"
_spec = importlib.util.spec_from_file_location("nbrun", LESSONS / "nbrun.py")
nbrun = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nbrun)

NOTEBOOKS = nbrun.notebooks()
NB_METADATA = {"kernelspec", "language_info"}
CELL_METADATA = {"tags", "figure_name"}
TAGS = {"figure", "exercise", "check", "question"}     # minivit/lessons/__init__.py
FIGURE_NAME = re.compile(r"^\d\d-[a-z0-9-]+$")


def test_there_are_lessons():
    assert NOTEBOOKS, f"no notebooks in {LESSONS}"


@pytest.fixture(scope="session")
def exercise_dir(tmp_path_factory):
    """The exercise edition of the lessons, in a folder of its own (not lessons/)."""
    d = tmp_path_factory.mktemp("exercise-edition")
    write_exercises(d, LESSONS)
    return d


@pytest.fixture(scope="session")
def executed(lesson_data, lesson_runs):
    """executed(path, allow_errors=False) -> the executed notebook; each notebook runs once
    per session, whichever tests look at it. The solution edition (lessons/) runs through
    conftest's lesson_runs, which keeps the executed notebooks for the site test."""
    cache = {}

    def run(path, allow_errors=False):
        try:
            nbrun.require()
        except ImportError as e:
            pytest.fail(str(e), pytrace=False)
        if path.parent == LESSONS and not allow_errors:
            nb, seconds = lesson_runs.run(path)
        elif path not in cache:
            nb, seconds = nbrun.execute(path, lesson_data, allow_errors=allow_errors)
            cache[path] = nb
        else:
            return cache[path]
        print(f"{path.parent.name}/{path.name}: {seconds:.1f} s")
        return nb
    return run


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, executed):
    nb = executed(path)
    nbrun.figures(nb)          # every cell tagged as a figure did show one


# --- the exercise edition ----------------------------------------------------------------
def _tags(cell):
    return cell.get("metadata", {}).get("tags", [])


def _first_line(cell):
    return cell_source(cell).strip().split("\n")[0][:60]


def exercise_edition_problems(nb):
    """What is wrong with an executed exercise edition ([] if nothing): every check cell must
    fail with ExerciseNotDone ("exercise <name> is not done yet"), every exercise must be
    named by a check cell, and no other cell may fail (a later cell that uses an exercise's
    function or result crashes in the exercise edition)."""
    problems, checked = [], set()
    names = {r.part for n, c in enumerate(nb["cells"]) if c["cell_type"] == "code"
             for r in find_regions(cell_source(c), f"cell {n}", kinds=("YOUR CODE",))}
    for n, cell in enumerate(nb["cells"]):
        if cell["cell_type"] != "code":
            continue
        errors = [o for o in cell.get("outputs", []) if o.get("output_type") == "error"]
        where = f"cell {n} ({_first_line(cell)!r})"
        if "check" in _tags(cell):
            if [e["ename"] for e in errors] != ["ExerciseNotDone"]:
                found = "; ".join(f"{e['ename']}: {e['evalue']}" for e in errors) or "no error"
                problems.append(f"check {where} should fail with ExerciseNotDone, got {found}")
                continue
            checked.add(re.match(r"exercise (\S+)", errors[0]["evalue"])[1])
        elif errors:
            problems.append(f"{where} fails in the exercise edition ({errors[0]['ename']}: "
                            f"{errors[0]['evalue'][:120]}): only check cells may use an exercise's "
                            f"function or results; later cells use the library's")
    if names - checked:
        problems.append(f"exercise(s) {sorted(names - checked)} have no check cell naming them "
                        f"(with check.exercise(name) in a cell tagged 'check')")
    return problems


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_exercise_edition_fails_only_in_its_check_cells(path, exercise_dir, executed):
    nb = json.loads(path.read_text(encoding="utf-8"))
    if not any(find_regions(cell_source(c), path.name) for c in nb["cells"] if c["cell_type"] == "code"):
        # no exercise: its code is the notebook's, which test_notebook_runs runs
        assert not [c for c in nb["cells"] if "check" in _tags(c)], f"{path.name}: check cells, no exercise"
        return
    problems = exercise_edition_problems(executed(exercise_dir / path.name, allow_errors=True))
    assert not problems, f"{path.name}, exercise edition:\n  " + "\n  ".join(problems)


def put_solutions_back(exercise_text, solution_text, path):
    """The exercise edition with every exercise region and answer replaced by the solution
    edition's (markers, hints and all), matched in order, and without the check cells'
    'raises-exception' tag; outputs as the exercise edition's."""
    ex, sol = json.loads(exercise_text), json.loads(solution_text)
    assert len(ex["cells"]) == len(sol["cells"]), f"{path}: the editions have different cells"
    for n, (e, s) in enumerate(zip(ex["cells"], sol["cells"])):
        if "check" in _tags(e):     # the exercise edition's Run All goes past its checks
            e["metadata"]["tags"] = [t for t in _tags(e) if t != "raises-exception"]
        e_src, s_src, where = cell_source(e).split("\n"), cell_source(s).split("\n"), f"{path} cell {n}"
        if e["cell_type"] == "code":
            spans = [(r.begin, r.end, r.part) for r in find_regions(cell_source(e), where, kinds=("YOUR CODE",))]
            fills = [(r.begin, r.end, r.part) for r in find_regions(cell_source(s), where)]
        else:
            spans = [(b, end, "answer") for b, end in find_answers(cell_source(e), where)]
            fills = [(b, end, "answer") for b, end in find_answers(cell_source(s), where)]
        assert [p for *_, p in spans] == [p for *_, p in fills], f"{path} cell {n}: other regions"
        out, last = [], 0
        for (b, end, _), (sb, se, _) in zip(spans, fills):
            out += e_src[last:b] + s_src[sb:se + 1]
            last = end + 1
        e["source"] = "\n".join(out + e_src[last:])
        s["source"] = cell_source(s)
    return ex, sol


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_solutions_put_back_give_the_notebook(path, exercise_dir):
    restored, solution = put_solutions_back((exercise_dir / path.name).read_text(encoding="utf-8"),
                                            path.read_text(encoding="utf-8"), path.name)
    assert restored == solution


# --- the outputs policy: committed notebooks are clean -----------------------------------
def _machine_strings():
    """Substrings that would tie a notebook to a machine or a person."""
    found = ["/home/", "/Users/", "/root/", "/tmp/", "/work/", "C:\\\\Users", str(Path.home())]
    user, host = getpass.getuser(), socket.gethostname()
    found += [s for s in (user, host) if len(s) >= 4 and s not in ("root", "user", "localhost")]
    return found


def policy_problems(raw_text):
    """What is wrong with a notebook file's text under the outputs policy ([] if nothing)."""
    nb = json.loads(raw_text)
    problems = []
    extra = set(nb.get("metadata", {})) - NB_METADATA
    if extra:
        problems.append(f"notebook metadata beyond {sorted(NB_METADATA)}: {sorted(extra)}")
    for i, cell in enumerate(nb["cells"]):
        where = f"cell {i} ({cell['cell_type']})"
        if cell["cell_type"] == "code":
            if cell.get("outputs"):
                problems.append(f"{where} has outputs")
            if cell.get("execution_count") is not None:
                problems.append(f"{where} has execution_count {cell['execution_count']}")
        extra = set(cell.get("metadata", {})) - CELL_METADATA
        if extra:
            problems.append(f"{where} metadata beyond {sorted(CELL_METADATA)}: {sorted(extra)}")
        meta = cell.get("metadata", {})
        problems += tag_problems(cell, where)
        if "figure" in meta.get("tags", []) and not FIGURE_NAME.match(str(meta.get("figure_name"))):
            problems.append(f"{where} is tagged 'figure' but its figure_name "
                            f"{meta.get('figure_name')!r} is not like '05-learning-curves'")
    for s in _machine_strings():
        if s in raw_text:
            problems.append(f"the notebook contains {s!r} (a machine path or name)")
    return problems


def tag_problems(cell, where):
    """The tags of minivit/lessons/__init__.py: known ones only; `exercise` on exactly the
    code cells with regions, `question` on exactly the markdown cells with answers, `check`
    on code cells."""
    tags, src, problems = set(_tags(cell)), cell_source(cell), []
    if tags - TAGS:
        problems.append(f"{where} has tags {sorted(tags - TAGS)} (known: {sorted(TAGS)})")
    try:
        regions = find_regions(src, where) if cell["cell_type"] == "code" else []
        answers = find_answers(src, where) if cell["cell_type"] == "markdown" else []
    except MarkerError as e:
        return problems + [str(e)]
    if bool(regions) != ("exercise" in tags):
        problems.append(f"{where}: {'regions but no' if regions else 'no region but a'} tag 'exercise'")
    if bool(answers) != ("question" in tags):
        problems.append(f"{where}: {'an answer but no' if answers else 'no answer but a'} tag 'question'")
    if "check" in tags and cell["cell_type"] != "code":
        problems.append(f"{where} is tagged 'check' but is not a code cell")
    return problems


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_is_committed_without_outputs(path):
    problems = policy_problems(path.read_text(encoding="utf-8"))
    assert not problems, (f"{path.name}: " + "; ".join(problems)
                          + ". Clear the outputs before committing (Jupyter: Edit > Clear "
                            "Outputs of All Cells; or jupyter nbconvert --clear-output --inplace)")


def test_policy_catches_outputs_and_paths():
    """The policy check itself, on a clean notebook and on dirty copies of it."""
    cell = {"cell_type": "code", "source": "1", "metadata": {}, "outputs": [],
            "execution_count": None}
    clean = {"cells": [cell], "metadata": {"kernelspec": {"name": "python3"}},
             "nbformat": 4, "nbformat_minor": 5}
    assert policy_problems(json.dumps(clean)) == []

    def dirty(**change):
        nb = json.loads(json.dumps(clean))
        nb["cells"][0].update(change.get("cell", {}))
        nb["metadata"].update(change.get("meta", {}))
        return policy_problems(json.dumps(nb))

    assert dirty(cell={"outputs": [{"output_type": "stream", "name": "stdout", "text": "1"}]})
    assert dirty(cell={"execution_count": 3})
    assert dirty(cell={"metadata": {"scrolled": True}})
    assert dirty(cell={"metadata": {"tags": ["figure"]}})             # no figure_name
    assert dirty(cell={"metadata": {"tags": ["exercize"]}})           # an unknown tag
    assert dirty(cell={"metadata": {"tags": ["exercise"]}})           # ... with no region
    assert dirty(cell={"source": "def f():\n    ### BEGIN SOLUTION f\n    ### HINT: h\n"
                                 "    return 1\n    ### END SOLUTION"})   # a region, no tag
    assert dirty(cell={"source": "open('/home/alice/data.npz')"})
    assert dirty(meta={"widgets": {}})


def test_shipped_checkpoint_names_no_machine_path():
    """The checkpoint the lessons load is committed too: its metadata (config, data source)
    must not carry the paths of the machine that trained it."""
    from minivit.checkpoint import load_checkpoint
    path = LESSONS / "checkpoints" / "cifar10-cpu.npz"
    _, optim_state, meta = load_checkpoint(path)
    raw = json.dumps(meta)
    found = [s for s in _machine_strings() if s in raw]
    assert not found, (f"{path.name}'s metadata contains {found} (machine paths or names): "
                       "remake it with the README's command, which keeps only the archive's "
                       "file name")
    assert not optim_state, f"{path.name} should carry the weights only (README's command)"


# --- figures -----------------------------------------------------------------------------
def readme_figures():
    text = (ROOT / "README.md").read_text(encoding="utf-8")
    return sorted(set(re.findall(r"\((lessons/figures/[^)\s]+\.png)\)", text)))


def test_readme_lesson_figures_exist():
    linked = readme_figures()
    assert linked, "the README's Lessons section links no figure under lessons/figures/"
    missing = [f for f in linked if not (ROOT / f).is_file()]
    assert not missing, (f"README links figures that do not exist: {missing}; "
                         "run python lessons/render_figures.py")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_tagged_figures_are_rendered(path):
    nb = json.loads(path.read_text(encoding="utf-8"))
    names = [c["metadata"].get("figure_name") for c in nb["cells"]
             if "figure" in c.get("metadata", {}).get("tags", [])]
    missing = [n for n in names if not (nbrun.FIGURES / f"{n}.png").is_file()]
    assert not missing, (f"{path.name} tags figures that lessons/figures/ lacks: {missing}; "
                         f"run python lessons/render_figures.py {path.name[:2]}")


@pytest.mark.slow
def test_the_edition_check_catches_a_later_cell_that_uses_an_exercise(tmp_path, lesson_data):
    """exercise_edition_problems on a small lesson whose last cell uses the exercise's
    function: the check cell fails as it should (one line), the last cell is reported."""
    import nbformat
    nb = nbformat.v4.new_notebook(metadata={"kernelspec": {"name": "python3", "display_name": "Python 3",
                                                           "language": "python"}})
    nb.cells = [nbformat.v4.new_code_cell("import numpy as np\nfrom minivit.lessons import check"),
                nbformat.v4.new_code_cell("def double(x):\n    ### BEGIN SOLUTION double\n"
                                          "    ### HINT: twice x\n    return 2 * x\n    ### END SOLUTION",
                                          metadata={"tags": ["exercise"]}),
                nbformat.v4.new_code_cell('with check.exercise("double"):\n'
                                          '    check.exact("x = 1", double(np.ones(2)), np.full(2, 2.0))',
                                          metadata={"tags": ["check"]}),
                nbformat.v4.new_code_cell("y = double(np.ones(2)) + 1    # uses the learner's function")]
    (tmp_path / "src").mkdir()
    nbformat.write(nb, tmp_path / "src" / "99-test.ipynb")
    assert not policy_problems((tmp_path / "src" / "99-test.ipynb").read_text())
    assert nbrun.execute(tmp_path / "src" / "99-test.ipynb", lesson_data)   # the solution runs clean
    write_exercises(tmp_path / "ex", tmp_path / "src")
    executed_nb, _ = nbrun.execute(tmp_path / "ex" / "99-test.ipynb", lesson_data, allow_errors=True)
    problems = exercise_edition_problems(executed_nb)
    assert len(problems) == 1 and problems[0].startswith("cell 3 (") and "y = double" in problems[0] \
        and "NotImplementedError" in problems[0], problems
    [error] = [o for o in executed_nb.cells[2].outputs if o.output_type == "error"]
    assert len(error.traceback) == 1 and "exercise double is not done yet: fill in the cell above" \
        in error.traceback[0]                  # one line, no traceback into minivit


def test_relative_data_dir_means_the_callers_folder(tmp_path, monkeypatch):
    """The kernel runs in lessons/: a relative $MINIVIT_DATA must reach it resolved, or the
    lessons would look for (and download) CIFAR-10 under lessons/."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINIVIT_DATA", "data")
    with nbrun.data_dir() as d:
        assert d == tmp_path.resolve() / "data"
        assert nbrun.kernel_env(d)["MINIVIT_DATA"] == str(tmp_path.resolve() / "data")
