"""`python -m minivit.assignment gradescope OUT.zip [--parts ...]`: the autograder zip.

    setup.sh          installs the reference package (with the hidden checks) and NumPy
    run_autograder    grades /autograder/submission into /autograder/results/results.json
    config.json       the parts and the limits it was made with
    minivit_src/      the reference solution: pyproject.toml and the whole package

Gradescope unpacks the zip into /autograder/source, runs setup.sh once when the image
is built, then run_autograder for each submission (default limits: a share of one CPU,
768 MB, 10 minutes). $AUTOGRADER_ROOT (default /autograder) lets it run elsewhere.
"""
import json
import stat
import zipfile
from pathlib import Path

from .make import PACKAGE, PYPROJECT
from .parts import ORDER, check_parts

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder image.
set -euo pipefail
cd "$(dirname "$0")"
if ! command -v python3 >/dev/null || ! python3 -m pip --version >/dev/null 2>&1; then
    apt-get update && apt-get install -y python3 python3-pip
fi
python3 -m pip install --no-cache-dir ./minivit_src
python3 -c "import minivit.assignment.grader, minivit.assignment.hidden"
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this for every submission; results.json is written whatever happens.
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
mkdir -p "$ROOT/results"
cd "$ROOT/source"
python3 -m minivit.assignment grade "$ROOT/submission" --out "$ROOT/results/results.json" \\
    --parts {parts} --time-limit {time_limit} --memory-mb {memory_mb}
if [ ! -s "$ROOT/results/results.json" ]; then
    echo '{{"score": 0, "output": "The autograder could not start; please tell your instructor.", "tests": []}}' \\
        > "$ROOT/results/results.json"
fi
"""


def build(out_zip, parts=None, time_limit=60, memory_mb=512, package=PACKAGE):
    """Write the autograder zip; returns the list of its entries."""
    from .make import marked_files
    parts = check_parts(parts or ORDER)
    package = Path(package)
    marked_files(package)                    # malformed markers fail here, not on Gradescope
    out_zip = Path(out_zip)
    out_zip.parent.mkdir(parents=True, exist_ok=True)
    names = []

    def add(z, name, data, executable=False):
        info = zipfile.ZipInfo(name, date_time=(2020, 1, 1, 0, 0, 0))
        info.external_attr = ((0o755 if executable else 0o644) | stat.S_IFREG) << 16
        info.compress_type = zipfile.ZIP_DEFLATED
        z.writestr(info, data)
        names.append(name)

    with zipfile.ZipFile(out_zip, "w") as z:
        add(z, "setup.sh", SETUP, executable=True)
        add(z, "run_autograder", RUN.format(parts=" ".join(parts), time_limit=time_limit,
                                            memory_mb=memory_mb), executable=True)
        add(z, "config.json", json.dumps({"parts": list(parts), "time_limit": time_limit,
                                          "memory_mb": memory_mb}, indent=2) + "\n")
        add(z, "minivit_src/pyproject.toml", PYPROJECT.replace("+assignment", "+grader"))
        for path in sorted(package.rglob("*")):
            rel = path.relative_to(package)
            if path.is_file() and "__pycache__" not in rel.parts and path.suffix not in (".pyc", ".pyo"):
                add(z, f"minivit_src/minivit/{rel.as_posix()}", path.read_bytes())
    return names
