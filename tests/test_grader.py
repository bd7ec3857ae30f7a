"""The grader's pieces (minivit/assignment/{submission,feedback,sandbox}.py): what a part's
tree holds, how a submission is read, points, redaction, and what a student is told."""
import json
import os
import shutil
import zipfile

import pytest

from assignment_util import PACKAGE, code, fresh, grade_cli, outputs, scores, secret_lines, set_region
from minivit.assignment import feedback
from minivit.assignment.checks import CHECKS, load
from minivit.assignment.make import fill, marked_files
from minivit.assignment.parts import ORDER, PARTS, needs
from minivit.assignment.submission import Submission, part_tree


@pytest.fixture(scope="module")
def empty_copy(tmp_path_factory):
    return fresh(tmp_path_factory.mktemp("copy"))


@pytest.mark.parametrize("part", ORDER)
def test_a_parts_tree_holds_only_what_it_runs(empty_copy, part):
    """No grader, no hidden checks, no fast kernels; no line of the part's own solution, nor
    of any part it does not build on (those regions are stubs)."""
    files, _, problem = part_tree(part, Submission.read(empty_copy), PACKAGE, marked_files(PACKAGE))
    assert problem is None, problem
    names = set(files)
    assert not {n for n in names if "fast/" in n or n.endswith(("hidden.py", "diagnoses.py", "grader.py",
                                                                 "torch_ref.py", "public.py", "checks.py"))}
    assert "minivit/assignment/drivers.py" in names and "minivit/ops/linear.py" in names
    lines = {code(ln) for text in files.values() for ln in text.split("\n")}
    for other in [part] + [p for p in ORDER if p != part and p not in needs(part)]:
        leaked = secret_lines([other]) & lines
        assert not leaked, (other, sorted(leaked)[:3])


def test_points_add_up_exactly_in_quarter_points():
    load()
    for part, (points, _) in PARTS.items():
        shares = feedback.points(points, [c.weight for c in CHECKS.values() if c.part == part])
        assert sum(shares) == points, (part, shares)                  # exactly, as floats
        assert all(s > 0 and (s * 4).is_integer() for s in shares), (part, shares)
    assert sum(feedback.points(15, [1.5, 2, 2, 1, 1, 1, 2])) == 15


def test_redaction_removes_solution_and_hidden_lines_and_keeps_the_rest():
    redact = feedback.redactor(["softmax", "loss"], PACKAGE)
    text = ("your code raised RuntimeError: e = xp.exp(x - x.max(axis=axis, keepdims=True))\n"
            "    logp = z - xp.log(s)\n"
            "    out[f\"y ({key})\"], out[f\"dx ({key})\"] = y, run(SOFTMAX + \"backward\", dy, cache)\n"
            "  y (axis 1, float32): WRONG: 3 of 84 values differ")
    out = redact(text)
    assert "xp.exp(x - x.max" not in out and "logp = z - xp.log(s)" not in out
    assert 'run(SOFTMAX + "backward", dy, cache)' not in out          # a line of hidden.py
    assert out.count(feedback.REDACTED) == 3
    assert out.endswith("y (axis 1, float32): WRONG: 3 of 84 values differ")
    result = {"output": "ok", "tests": [{"name": "softmax: x", "output": text}]}
    assert feedback.REDACTED in feedback.redact_result(result, redact)["tests"][0]["output"]


def test_a_zip_upload_is_graded_like_the_folder_and_a_symlink_is_not_followed(tmp_path):
    copy = fresh(tmp_path, parts=["linear", "softmax"])
    fill(copy, ["linear"])
    upload = tmp_path / "upload.zip"
    with zipfile.ZipFile(upload, "w") as z:                  # as Gradescope's upload holds it
        for p in copy.rglob("*.py"):
            z.write(p, "hw1/" + p.relative_to(copy).as_posix())
    result, _ = grade_cli(upload, tmp_path / "zip.json", ["linear", "softmax"])
    assert scores(result)["linear"] == (PARTS["linear"][0], PARTS["linear"][0])
    assert scores(result)["softmax"][0] == 0
    # softmax.py replaced by a link to the reference solution: the grader does not follow it
    linked = copy / "minivit" / "ops" / "softmax.py"
    linked.unlink()
    linked.symlink_to(PACKAGE / "ops" / "softmax.py")
    result, _ = grade_cli(copy, tmp_path / "link.json", ["linear", "softmax"])
    assert scores(result)["softmax"][0] == 0
    assert "minivit/ops/softmax.py was not found in the submission" in outputs(result, "softmax")


def test_errors_name_the_students_own_file_and_line_and_nothing_else(tmp_path):
    parts = ["linear", "layernorm"]
    copy = fresh(tmp_path, parts=parts)
    # loose files in a folder of their own, as a student may upload them
    set_region(copy, "ops/linear.py", "linear", "y = x @ w.T\nreturn y, (x, w, b is not None) +", index=0)
    set_region(copy, "ops/layernorm.py", "layernorm", "mu = x.mean(axis=-1, keepdims=True)\n"
                                                      "raise ValueError('bad ' * 1000)", index=0)
    sub = tmp_path / "upload"
    sub.mkdir()
    for rel in ("ops/linear.py", "ops/layernorm.py"):
        shutil.copy(copy / "minivit" / rel, sub)
    result, _ = grade_cli(sub, tmp_path / "r.json", parts)
    lines = (sub / "linear.py").read_text().split("\n")
    n = next(i for i, ln in enumerate(lines, 1) if ln.strip().startswith("return y, (x, w, b is not None) +"))
    assert f"linear.py, line {n}: SyntaxError" in outputs(result, "linear")
    lines = (sub / "layernorm.py").read_text().split("\n")
    n = next(i for i, ln in enumerate(lines, 1) if "raise ValueError('bad '" in ln)
    out = outputs(result, "layernorm")
    assert f"layernorm.py, line {n}, in layernorm_forward" in out and "your code raised ValueError: bad bad" in out
    assert len(out) < 6 * (feedback.MAX_MESSAGE + 600)         # the message is capped, per check
    assert str(PACKAGE) not in json.dumps(result) and "/tmp/" not in json.dumps(result)


def test_a_submission_that_is_not_there_scores_zero_with_the_reason(tmp_path):
    result, r = grade_cli(tmp_path / "nothing", tmp_path / "r.json", ["linear"])
    assert r.returncode == 0 and result["score"] == 0
    assert "is not a folder or a .zip file" in result["tests"][0]["output"]
    assert os.path.getsize(tmp_path / "r.json") < 5000
