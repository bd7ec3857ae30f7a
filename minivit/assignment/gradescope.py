"""`python -m minivit.assignment gradescope OUT.zip [--parts ...]`: the autograder zip.

    setup.sh          once, as root: NumPy into a virtual environment of the autograder's
                      own (Ubuntu's Python is externally managed, PEP 668), readable by
                      everyone; source/ made readable by root only
    run_autograder    for every submission: clears results/, grades /autograder/submission
                      into results/results.json; a zero score with the reason if the grader
                      itself fails
    config.json       the parts and the limits it was made with
    minivit_src/      the reference package with the grader and the hidden checks (never
                      installed: it stays in source/, where only root can read it)

Gradescope unpacks the zip into /autograder/source, runs setup.sh once when it builds the
image, then run_autograder (copied to /autograder/run_autograder) for each submission
(default limits: a share of one CPU, 768 MB, 10 minutes). $AUTOGRADER_ROOT (default
/autograder) lets it run elsewhere, for a dry run (INSTRUCTORS.md).
"""
import json
import math
import stat
import zipfile
from pathlib import Path

from .make import PACKAGE
from .parts import ORDER, check_parts

NUMPY = "numpy>=1.23"

SETUP = """#!/usr/bin/env bash
# Gradescope runs this once, as root, when it builds the autograder's image. Ubuntu's Python
# is "externally managed" (PEP 668), so NumPy goes into a virtual environment of the
# autograder's own. minivit itself (the reference solution, the grader, the hidden checks)
# is never installed: it stays in source/, which only root can read.
set -euo pipefail
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
SOURCE="$(cd "$(dirname "$0")" && pwd)"
if ! python3 -c "import venv, ensurepip" >/dev/null 2>&1; then
    apt-get update && apt-get install -y --no-install-recommends python3 python3-venv python3-pip
fi
rm -rf "$ROOT/venv"
python3 -m venv "$ROOT/venv"
"$ROOT/venv/bin/python" -m pip install --no-cache-dir --disable-pip-version-check -q "{numpy}"
chmod 755 "$ROOT"
chmod -R go+rX "$ROOT/venv"                 # the parts' unprivileged user runs this Python
chmod -R go-rwx "$SOURCE"
cd "$SOURCE/minivit_src" && "$ROOT/venv/bin/python" -c "import minivit.assignment.grader"
"""

RUN = """#!/usr/bin/env bash
# Gradescope runs this for every submission, as root. results.json is the grader's alone:
# results/ is emptied first and written once by the grader, at the end; if the grader itself
# fails, a zero score with the reason. (The working folder is the grader's, never the
# submission's: python -m must not find a student's minivit there.)
ROOT="${{AUTOGRADER_ROOT:-/autograder}}"
rm -rf "$ROOT/results"
mkdir -p -m 755 "$ROOT/results"
chmod -R go-rwx "$ROOT/source" "$ROOT/submission" 2>/dev/null
cd "$ROOT/source/minivit_src" || exit 1
"$ROOT/venv/bin/python" -m minivit.assignment grade "$ROOT/submission" --out "$ROOT/results/results.json" \\
    --parts {parts} --time-limit {time_limit} --memory-mb {memory_mb} --total-time {total_time} "$@"
status=$?
if [ "$status" -ne 0 ] || [ ! -s "$ROOT/results/results.json" ]; then
    printf '{{"score": 0, "visibility": "visible", "stdout_visibility": "hidden", "tests": [], "output": "%s"}}\\n' \\
        "The autograder failed (exit status $status) and could not grade this submission; please tell your instructor." \\
        > "$ROOT/results/results.json"
fi
"""


def part_time_limit(parts, total_time, time_limit=None):
    """Seconds per part: at most 60, and small enough that every part gets its turn."""
    return time_limit or max(10, min(60, math.floor(total_time / len(parts))))


def build(out_zip, parts=None, time_limit=None, memory_mb=512, total_time=540, package=PACKAGE):
    """Write the autograder zip; returns the list of its entries."""
    from .make import marked_files
    parts = check_parts(parts or ORDER)
    time_limit = part_time_limit(parts, total_time, time_limit)
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
        add(z, "setup.sh", SETUP.format(numpy=NUMPY), executable=True)
        add(z, "run_autograder", RUN.format(parts=" ".join(parts), time_limit=time_limit, memory_mb=memory_mb,
                                            total_time=total_time), executable=True)
        add(z, "config.json", json.dumps({"parts": list(parts), "time_limit": time_limit, "memory_mb": memory_mb,
                                          "total_time": total_time}, indent=2) + "\n")
        for path in sorted(package.rglob("*")):
            rel = path.relative_to(package)
            if path.is_file() and "__pycache__" not in rel.parts and path.suffix not in (".pyc", ".pyo"):
                add(z, f"minivit_src/minivit/{rel.as_posix()}", path.read_bytes())
    return names
