"""Execute the lesson notebooks: the one helper behind tests/test_lessons.py and
lessons/render_figures.py.

A notebook runs top to bottom in a real `python3` Jupyter kernel, with the lessons folder as
its working directory and a deadline for the whole notebook. The kernel imports minivit
from this checkout (its root goes first on PYTHONPATH), so a fresh clone tests itself and
not some other installed copy. The data is the real CIFAR-10 when $MINIVIT_DATA is set,
otherwise a synthetic archive in the same format (minivit.data.synthetic), so the lessons
always run, offline too; on synthetic data only their shape and sanity checks mean anything.
"""
import contextlib
import json
import os
import tempfile
import time
from pathlib import Path

LESSONS = Path(__file__).resolve().parent
ROOT = LESSONS.parent
FIGURES = LESSONS / "figures"
NOTEBOOK_TIMEOUT = 300        # seconds for a whole notebook (each is meant to take < 90 s)
INSTALL_HINT = ('executing the lesson notebooks needs nbclient, nbformat and ipykernel: '
                'pip install -e ".[test]"')
# enough synthetic images for lesson 5's "few thousand" and a test subset
SYNTHETIC = dict(n_per_batch=600, n_test=500, seed=0)


def notebooks():
    """Every lesson notebook, in order."""
    return sorted(LESSONS.glob("*.ipynb"))


def require():
    """nbclient, nbformat and ipykernel, or an ImportError saying how to install them."""
    try:
        import ipykernel  # noqa: F401
        import nbclient
        import nbformat
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from e
    return nbclient, nbformat


def data_is_synthetic():
    """Whether data_dir() gives the synthetic stand-in ($MINIVIT_DATA unset)."""
    return not os.environ.get("MINIVIT_DATA")


@contextlib.contextmanager
def data_dir():
    """The CIFAR-10 directory the notebooks read: $MINIVIT_DATA if set, else a temporary one
    holding a synthetic `cifar-10-python.tar.gz` (found by the normal lookup)."""
    if os.environ.get("MINIVIT_DATA"):
        # resolved: the kernel runs in lessons/, where a relative path would mean another place
        yield Path(os.environ["MINIVIT_DATA"]).expanduser().resolve()
        return
    from minivit.data import ARCHIVE_NAME, make_synthetic_archive
    with tempfile.TemporaryDirectory(prefix="minivit-lessons-") as d:
        make_synthetic_archive(Path(d) / ARCHIVE_NAME, **SYNTHETIC)
        yield Path(d)


def kernel_env(data):
    """The kernel's environment: this checkout first on PYTHONPATH, the data dir, inline
    figures (whatever MPLBACKEND the caller has)."""
    env = dict(os.environ)
    env["PYTHONPATH"] = os.pathsep.join([str(ROOT)] + [p for p in [env.get("PYTHONPATH")] if p])
    env["MINIVIT_DATA"] = str(data)
    env["MPLBACKEND"] = "module://matplotlib_inline.backend_inline"
    return env


def execute(path, data, timeout=NOTEBOOK_TIMEOUT, kernel_name="python3", allow_errors=False):
    """Run the notebook at `path`, in its folder; returns (executed notebook, seconds). A
    failing cell raises nbclient's CellExecutionError (with the traceback), unless
    allow_errors: then every cell runs and errors are outputs of their cells (the exercise
    edition). Running past `timeout` seconds in all raises a TimeoutError naming the
    notebook."""
    nbclient, nbformat = require()
    path = Path(path)
    nb = nbformat.read(path, as_version=4)
    start = time.monotonic()
    deadline = start + timeout
    client = nbclient.NotebookClient(
        nb, kernel_name=kernel_name, resources={"metadata": {"path": str(path.parent)}},
        allow_errors=allow_errors, timeout_func=lambda cell: max(1, int(deadline - time.monotonic())))
    try:
        client.execute(env=kernel_env(data))
    except nbclient.exceptions.CellTimeoutError as e:
        raise TimeoutError(f"{path.name} ran past its {timeout} s budget: {e}") from None
    return nb, time.monotonic() - start


def figure_cells(nb):
    """[(figure_name, cell)] for the code cells tagged 'figure'."""
    return [(c.metadata.get("figure_name"), c) for c in nb.cells
            if c.cell_type == "code" and "figure" in c.metadata.get("tags", [])]


def figures(nb):
    """{figure_name: PNG bytes}: the first image/png output of each tagged cell."""
    import base64
    out = {}
    for name, cell in figure_cells(nb):
        pngs = [o["data"]["image/png"] for o in cell.get("outputs", [])
                if o.get("output_type") in ("display_data", "execute_result")
                and "image/png" in o.get("data", {})]
        if not pngs:
            raise ValueError(f"the cell tagged as figure {name!r} showed no PNG image")
        out[name] = base64.b64decode(pngs[0])
    return out


class Executions:
    """The lessons executed on `data`, each at most once, and kept as .ipynb files in
    `folder`: the site (python -m minivit.site) is built from them, so the test run executes
    every notebook once for the lesson test and the site test. A failure is remembered and
    raised again for that notebook, not paid for twice. The kept notebooks have outputs:
    keep `folder` out of the repository."""

    def __init__(self, data, folder):
        self.data, self.folder = Path(data), Path(folder)
        self.data_name = "synthetic" if data_is_synthetic() else "CIFAR-10"
        self._results = {}

    def run(self, path):
        """(executed notebook, seconds) for the lesson at `path`, executed on the first call."""
        path = Path(path)
        if path.name not in self._results:
            try:
                nb, seconds = execute(path, self.data)
            except Exception as e:
                self._results[path.name] = e
                raise
            nb.metadata["minivit"] = {"data": self.data_name}     # the site says which
            self.folder.mkdir(parents=True, exist_ok=True)
            (self.folder / path.name).write_text(json.dumps(nb, ensure_ascii=False),
                                                 encoding="utf-8")
            self._results[path.name] = (nb, seconds)
        result = self._results[path.name]
        if isinstance(result, Exception):
            raise RuntimeError(f"{path.name} failed when it was executed earlier in this run: "
                               f"{type(result).__name__}: {result}") from result
        return result
