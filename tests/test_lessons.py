"""The lesson notebooks: each runs top to bottom in a real kernel (on the real CIFAR-10 when
$MINIVIT_DATA is set, else on a synthetic archive: never skipped), is committed without
outputs, and every figure the README links to exists."""
import getpass
import importlib.util
import json
import re
import socket
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
LESSONS = ROOT / "lessons"
_spec = importlib.util.spec_from_file_location("nbrun", LESSONS / "nbrun.py")
nbrun = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nbrun)

NOTEBOOKS = nbrun.notebooks()
NB_METADATA = {"kernelspec", "language_info"}
CELL_METADATA = {"tags", "figure_name"}
FIGURE_NAME = re.compile(r"^\d\d-[a-z0-9-]+$")


def test_there_are_lessons():
    assert NOTEBOOKS, f"no notebooks in {LESSONS}"


@pytest.mark.slow
@pytest.mark.parametrize("path", NOTEBOOKS, ids=[p.name for p in NOTEBOOKS])
def test_notebook_runs(path, lesson_runs):
    try:
        nbrun.require()
    except ImportError as e:
        pytest.fail(str(e), pytrace=False)
    nb, seconds = lesson_runs.run(path)     # kept for the site test (tests/test_site.py)
    print(f"{path.name}: {seconds:.1f} s")
    nbrun.figures(nb)          # every cell tagged as a figure did show one


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
        if "figure" in meta.get("tags", []) and not FIGURE_NAME.match(str(meta.get("figure_name"))):
            problems.append(f"{where} is tagged 'figure' but its figure_name "
                            f"{meta.get('figure_name')!r} is not like '05-learning-curves'")
    for s in _machine_strings():
        if s in raw_text:
            problems.append(f"the notebook contains {s!r} (a machine path or name)")
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


def test_relative_data_dir_means_the_callers_folder(tmp_path, monkeypatch):
    """The kernel runs in lessons/: a relative $MINIVIT_DATA must reach it resolved, or the
    lessons would look for (and download) CIFAR-10 under lessons/."""
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("MINIVIT_DATA", "data")
    with nbrun.data_dir() as d:
        assert d == tmp_path.resolve() / "data"
        assert nbrun.kernel_env(d)["MINIVIT_DATA"] == str(tmp_path.resolve() / "data")
