"""Every test that takes `device` / `xp` runs on NumPy, and on CuPy when a GPU is usable.
The lessons are executed once per run, for the lesson test and the site test alike."""
import importlib.util
import os
from pathlib import Path

import numpy as np
import pytest

from minivit.backend import cuda_available, set_device, xp_for

_CUDA = cuda_available()


@pytest.fixture(params=[
    pytest.param("cpu", id="numpy"),
    pytest.param("cuda", id="cupy", marks=pytest.mark.skipif(
        not _CUDA, reason="CuPy with a usable CUDA GPU not available")),
])
def device(request):
    set_device(request.param)
    yield request.param
    set_device("cpu")


@pytest.fixture
def xp(device):
    return xp_for(device)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)


# --- the lessons, executed once per run --------------------------------------------------
_spec = importlib.util.spec_from_file_location(
    "nbrun", Path(__file__).resolve().parent.parent / "lessons" / "nbrun.py")
nbrun = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(nbrun)
EXECUTED_ENV = "MINIVIT_EXECUTED_NOTEBOOKS"    # a folder to keep the executed notebooks in


@pytest.fixture(scope="session")
def lesson_data():
    with nbrun.data_dir() as d:
        yield d


@pytest.fixture(scope="session")
def lesson_runs(lesson_data, tmp_path_factory):
    """nbrun.Executions: test_lessons.py executes each lesson through it and test_site.py
    builds the site from the same executed notebooks. They are kept in $MINIVIT_EXECUTED_NOTEBOOKS
    when set (for python -m minivit.site build OUT --executed DIR), else in a temporary folder."""
    folder = os.environ.get(EXECUTED_ENV) or tmp_path_factory.mktemp("executed-lessons")
    return nbrun.Executions(lesson_data, folder)


@pytest.fixture(scope="session")
def autograder():
    """The Gradescope zip of linear, softmax and loss, unpacked as Gradescope does and set up
    once by its setup.sh with Debian's own python3 (externally managed, PEP 668), as on
    Gradescope's Ubuntu images. Needs root, like Gradescope."""
    from assignment_util import SYSTEM_PYTHON, Autograder
    if not (Path(SYSTEM_PYTHON).is_file() and os.geteuid() == 0):
        pytest.skip(f"needs root and the system's {SYSTEM_PYTHON} (as on Gradescope's images)")
    ag = Autograder(["linear", "softmax", "loss"])
    r = ag.setup()
    assert r.returncode == 0, r.stdout[-3000:] + r.stderr[-3000:]
    yield ag
    ag.remove()
