"""The minivit website: the lessons as executed (outputs and figures) and the reference of
the ops (equations rendered, docstrings as written), built with Sphinx and MyST-NB into a
static folder that opens offline. Needs a checkout (the lessons and docs/site/ are not in
the installed package) and the `docs` extra. docs/site.md says how to open and publish it.

    python -m minivit.site build OUT                  # executes every lesson, then builds
    python -m minivit.site build OUT --executed DIR   # from notebooks executed before

The executed notebooks are cleaned before they are built: no execution timings, and no
path of this machine (the checkout, the data directory, the Python installation, the home
directory) in an output; what cannot be cleaned stops the build.
"""
import getpass
import importlib.util
import json
import os
import shutil
import socket
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SOURCE = ROOT / "docs" / "site"
LESSONS = ROOT / "lessons"
INSTALL_HINT = 'building the site needs the docs extra: pip install -e ".[docs]"'
SYNTHETIC_NOTE = (
    "```{note}\nThis copy of the lesson was executed on a **synthetic stand-in** for CIFAR-10 "
    "(random images in the same format), so its printed numbers and figures show the code "
    "working, not what a ViT learns. A site built with $MINIVIT_DATA set runs the lessons on "
    "the real CIFAR-10 (docs/site.md).\n```")


def nbrun():
    """lessons/nbrun.py, the lessons' runner (a file of the checkout, not a package)."""
    path = LESSONS / "nbrun.py"
    if not path.is_file():
        raise FileNotFoundError(f"{path} not found: the site is built from a checkout of "
                                "minivit (the lessons are not part of the installed package)")
    spec = importlib.util.spec_from_file_location("nbrun", path)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


def require():
    """Sphinx, MyST-NB, the theme and math-core, or an ImportError saying how to install."""
    try:
        import furo  # noqa: F401
        import math_core  # noqa: F401
        import myst_nb  # noqa: F401
        import sphinx  # noqa: F401
    except ImportError as e:
        raise ImportError(f"{INSTALL_HINT} ({e})") from e


# --- the notebooks -----------------------------------------------------------------------
def execute_lessons(folder, log=print):
    """Execute every lesson into `folder` (real CIFAR-10 if $MINIVIT_DATA is set, else the
    synthetic stand-in); returns the folder."""
    runner = nbrun()
    with runner.data_dir() as data:
        runs = runner.Executions(data, folder)
        log(f"executing the lessons on {runs.data_name} data")
        for path in runner.notebooks():
            _, seconds = runs.run(path)
            log(f"  {path.name}: {seconds:.1f} s")
    return Path(folder)


def code_of(nb):
    """The code cells' sources (a string or, as saved by Jupyter, a list of lines)."""
    return ["".join(c["source"]) for c in nb["cells"] if c["cell_type"] == "code"]


def read_executed(folder):
    """{name: executed notebook} for every lesson, read from `folder`; a lesson missing there,
    not executed, or executed from other code than the lesson has now, is an error."""
    folder = Path(folder)
    lessons = nbrun().notebooks()
    missing = [p.name for p in lessons if not (folder / p.name).is_file()]
    if missing:
        raise FileNotFoundError(f"{folder} lacks the executed {', '.join(missing)}; build "
                                "without --executed to execute the lessons now")
    out = {}
    for path in lessons:
        nb = json.loads((folder / path.name).read_text(encoding="utf-8"))
        lesson = json.loads(path.read_text(encoding="utf-8"))
        if code_of(nb) != code_of(lesson):
            raise ValueError(f"{folder / path.name} was executed from other code than "
                             f"lessons/{path.name} has now: execute it again")
        if not any(c.get("outputs") for c in nb["cells"] if c["cell_type"] == "code"):
            raise ValueError(f"{folder / path.name} has no outputs: it was not executed")
        out[path.name] = nb
    return out


def machine_paths(extra=()):
    """[(path or name, what the site shows instead)], longest first: the paths and names of
    this machine that an output may print (a warning's file name, a data path)."""
    pairs = [(str(p), shown) for p, shown in extra]
    pairs += [(str(ROOT), "<checkout>"), (sys.prefix, "<python>"), (sys.base_prefix, "<python>"),
              (tempfile.gettempdir().rstrip("/") + "/", "<tmp>/"), (str(Path.home()), "~")]
    pairs = [(p, shown) for p, shown in pairs if len(p) > 1]
    return sorted(set(pairs), key=lambda pair: -len(pair[0]))


def names_of_this_machine():
    """The user and host names, where they are distinctive enough to search for."""
    names = [getpass.getuser(), socket.gethostname()]
    return [n for n in names if len(n) >= 4 and n not in ("root", "user", "localhost")]


def clean(nb, name, data_dir=None):
    """The notebook as the site shows it: no execution timings or other metadata beyond the
    kernel's, machine paths replaced (the data directory by $MINIVIT_DATA), and a note on
    top when it ran on synthetic data. A user or host name left in an output is an error."""
    nb = json.loads(json.dumps(nb))
    ran_on = nb.get("metadata", {}).get("minivit", {}).get("data")
    nb["metadata"] = {k: v for k, v in nb.get("metadata", {}).items()
                      if k in ("kernelspec", "language_info")}
    replace = machine_paths([(data_dir, "$MINIVIT_DATA")] if data_dir else [])

    def cleaned(value):
        if isinstance(value, list):
            return [cleaned(v) for v in value]
        for path, shown in replace:
            value = value.replace(path, shown)
        return value

    for cell in nb["cells"]:
        cell["metadata"].pop("execution", None)
        for output in cell.get("outputs", []):
            for key in ("text", "traceback", "evalue"):
                if key in output:
                    output[key] = cleaned(output[key])
            for mime in output.get("data", {}):
                if mime.startswith("text/"):     # not images: base64 can hold "/tmp/"
                    output["data"][mime] = cleaned(output["data"][mime])
    found = [n for n in names_of_this_machine() if n in json.dumps(nb)]
    if found:
        raise ValueError(f"{name}'s outputs name this machine ({found}): change the lesson "
                         "so that it does not print them")
    if ran_on == "synthetic":
        note = {"cell_type": "markdown", "metadata": {}, "source": SYNTHETIC_NOTE}
        if (nb.get("nbformat", 4), nb.get("nbformat_minor", 0)) >= (4, 5):
            note["id"] = "executed-on-synthetic-data"      # cells have ids from nbformat 4.5
        nb["cells"].insert(1, note)
    return nb


# --- the build ---------------------------------------------------------------------------
def prepare_out(out):
    """`out` empty or new, or a site built before (then cleared): nothing else is lost."""
    out = Path(out)
    if out.exists() and any(out.iterdir()):
        if not (out / ".buildinfo").is_file():
            raise FileExistsError(f"{out} is not empty and is not a site built before: "
                                  "give a new or empty folder")
        shutil.rmtree(out)
    out.mkdir(parents=True, exist_ok=True)
    return out


def build(out, executed, strict=True, data_dir=None, quiet=True):
    """Build the site into `out` from the executed lessons in folder `executed`; returns
    `out`/index.html. strict: a Sphinx warning (a formula that cannot be rendered, a broken
    reference) is an error. data_dir: the data folder the lessons ran on, if its path may
    show in an output."""
    require()
    from sphinx.application import Sphinx
    notebooks = read_executed(executed)
    out = prepare_out(out)
    with tempfile.TemporaryDirectory(prefix="minivit-site-") as staging:
        src = Path(staging) / "src"
        shutil.copytree(SOURCE, src)
        (src / "lessons").mkdir()
        for name, nb in notebooks.items():
            text = json.dumps(clean(nb, name, data_dir), indent=1, ensure_ascii=False)
            (src / "lessons" / name).write_text(text, encoding="utf-8")
        app = Sphinx(str(src), str(src), str(out), str(Path(staging) / "doctrees"), "html",
                     status=None if quiet else sys.stdout, warning=sys.stderr,
                     warningiserror=strict)
        app.build()
        if app.statuscode:
            raise RuntimeError(f"the site build failed (Sphinx exit status {app.statuscode}); "
                               "its warnings are above")
    return out / "index.html"


def main(out, executed=None, strict=True):
    start = time.monotonic()
    require()
    if executed is None:
        with tempfile.TemporaryDirectory(prefix="minivit-executed-") as folder:
            index = build(out, execute_lessons(folder), strict=strict,
                          data_dir=os.environ.get("MINIVIT_DATA"))
    else:
        index = build(out, executed, strict=strict, data_dir=os.environ.get("MINIVIT_DATA"))
    print(f"built the site in {time.monotonic() - start:.0f} s: open {index.resolve().as_uri()}")
    return index
