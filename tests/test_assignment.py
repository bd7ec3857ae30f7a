"""Course assignments (minivit/assignment, INSTRUCTORS.md): make, grade, gradescope.

Gradings run the real grader (one subprocess per part); each test grades one copy in
which every part is in the state that test is about, so few gradings cover everything.
"""
import json
import shutil
import subprocess
import sys
import textwrap
import time

import pytest

from assignment_util import (PACKAGE, SOURCES, STRIP_EDITABLE, assert_no_secrets, edit, env, failed, fresh,
                             outputs, scores, set_region)
from minivit.assignment import grader
from minivit.assignment.make import fill, make
from minivit.assignment.markers import MarkerError, find_regions, student_notebook, student_text
from minivit.assignment.parts import ORDER, PARTS

PART_FILES = {"linear": {"linear.py"}, "layernorm": {"layernorm.py"}, "gelu": {"gelu.py"},
              "softmax": {"softmax.py"}, "attention": {"sdpa.py", "attention.py"},
              "block": {"mlp.py", "block.py"}, "patch_embed": {"patch.py", "patch_embed.py"},
              "cls_pool": {"embed.py", "pool.py"}, "loss": {"loss.py"}, "adamw": {"optim.py"},
              "vit": {"model.py"}}


# --- markers ------------------------------------------------------------------------------
@pytest.mark.parametrize("text, message", [
    ("def f():\n    ### BEGIN SOLUTION linear\n    ### HINT: h\n    return 1\n", r"x\.py:2: unterminated"),
    ("def f():\n    ### BEGIN SOLUTION linear\n    ### HINT: h\n    ### BEGIN SOLUTION gelu\n"
     "    ### END SOLUTION\n    ### END SOLUTION\n", r"x\.py:4: nested"),
    ("def f():\n    ### BEGIN SOLUTION lineaar\n    ### HINT: h\n    return 1\n    ### END SOLUTION\n",
     r"x\.py:2: unknown part 'lineaar'"),
    ("def f():\n    return 1\n    ### END SOLUTION\n", r"x\.py:3: END without a BEGIN"),
    ("def f():\n    ### BEGIN SOLUTION linear\n    return 1\n    ### END SOLUTION\n", r"x\.py:2: .*no '### HINT"),
    ("def f():\n    ### BEGIN SOLUTON linear\n    return 1\n", r"x\.py:2: malformed marker"),
])
def test_bad_markers_are_errors_naming_file_and_line(text, message):
    with pytest.raises(MarkerError, match=message):
        find_regions(text, "x.py", PARTS)


def test_a_region_becomes_todo_and_raise_with_its_indentation():
    src = ("class A:\n    def step(self):\n        x = 1\n        ### BEGIN SOLUTION adamw\n"
           "        ### HINT: move the weights\n        y = secret_formula(x)\n        return y\n"
           "        ### END SOLUTION\n\n\ndef g():\n    ### BEGIN SOLUTION gelu\n    ### HINT: h\n"
           "    return 2\n    ### END SOLUTION\n")
    out, _ = student_text(src, "m.py", {"adamw"}, PARTS)
    assert "secret_formula" not in out and "move the weights" in out
    assert ("        ### BEGIN YOUR CODE adamw\n        # TODO (adamw): move the weights\n"
            "        raise NotImplementedError('adamw: step in m.py')\n        ### END YOUR CODE\n") in out
    assert "    return 2\n" in out and "###" not in out.split("def g")[1]   # unselected: code, no markers
    ns = {}
    exec(compile(out, "m.py", "exec"), ns)
    with pytest.raises(NotImplementedError, match="adamw"):
        ns["A"]().step()
    assert ns["g"]() == 2


def test_notebook_cells_are_transformed_and_their_outputs_cleared(tmp_path):
    cell = ("x = 1\n### BEGIN SOLUTION softmax\n### HINT: shift first\ny = secret_formula(x)\n"
            "### END SOLUTION\n")
    nb = {"cells": [{"cell_type": "markdown", "metadata": {}, "source": ["### End of the intro"]},
                    {"cell_type": "code", "metadata": {}, "execution_count": 3, "source": cell.splitlines(True),
                     "outputs": [{"output_type": "stream", "name": "stdout", "text": ["secret_formula"]}]}],
          "metadata": {}, "nbformat": 4, "nbformat_minor": 5}
    out, regions = student_notebook(json.dumps(nb), "lesson.ipynb", {"softmax"}, PARTS)
    assert [r.part for r in regions] == ["softmax"] and "secret_formula" not in out
    code_cell = json.loads(out)["cells"][1]
    assert code_cell["outputs"] == [] and code_cell["execution_count"] is None
    assert "".join(code_cell["source"]).startswith("x = 1\n### BEGIN YOUR CODE softmax\n# TODO (softmax): shift first\n")
    bad = json.loads(json.dumps(nb))
    bad["cells"][1]["source"] = cell.replace("### END SOLUTION\n", "")
    with pytest.raises(MarkerError, match="lesson.ipynb cell 1:2: unterminated"):
        student_notebook(json.dumps(bad), "lesson.ipynb", {"softmax"}, PARTS)


def test_every_part_has_regions_with_hints_in_the_source():
    found = {}
    for path in SOURCES:
        if "assignment" in path.parts:
            continue
        for r in find_regions(path.read_text(), str(path), PARTS):
            found.setdefault(r.part, []).append(r)
    assert sorted(found) == sorted(ORDER)
    assert all(r.hint and r.function for rs in found.values() for r in rs)


# --- make ---------------------------------------------------------------------------------
@pytest.mark.parametrize("part", ORDER)
def test_a_one_part_copy_leaks_nothing_of_it(tmp_path, part):
    copy = fresh(tmp_path, parts=[part])
    assert len(assert_no_secrets(copy, [part])) > 100          # fast/ and hidden.py at least
    assert "BEGIN YOUR CODE" not in "".join(
        p.read_text() for p in (copy / "minivit").rglob("*.py") if p.name not in PART_FILES[part])


def test_student_copy_has_no_solution_no_fast_path_no_grader(tmp_path):
    copy = fresh(tmp_path)
    files = [p for p in copy.rglob("*") if p.is_file()]
    rels = {p.relative_to(copy).as_posix() for p in files}
    assert not (copy / "minivit" / "fast").exists()
    for gone in ("torch_ref.py", "bench_ops.py", "assignment/hidden.py", "assignment/grader.py",
                 "assignment/runner.py", "assignment/make.py", "assignment/markers.py",
                 "assignment/gradescope.py", "assignment/__main__.py"):
        assert f"minivit/{gone}" not in rels, gone
    assert not [r for r in rels if r.endswith((".pyc", ".pyo")) or "__pycache__" in r]
    assert {f"tests/test_{p}.py" for p in ORDER} <= rels
    assert {"pyproject.toml", "README.md", "assignment.json", "minivit/assignment/public.py",
            "minivit/assignment/public_model.py", "minivit/assignment/drivers.py"} <= rels
    for gone in ("assignment/diagnoses.py", "assignment/sandbox.py", "assignment/remote.py",
                 "assignment/submission.py", "assignment/feedback.py"):
        assert f"minivit/{gone}" not in rels, gone
    assert len(assert_no_secrets(copy, ORDER)) > 300            # the check has something to look for
    # every solution region is an exercise now, in the same function
    for path in SOURCES:
        rel = path.relative_to(PACKAGE)
        if rel.parts[0] in ("assignment", "fast"):
            continue
        sol = find_regions(path.read_text(), str(rel), PARTS)
        if sol:
            stu = find_regions((copy / "minivit" / rel).read_text(), str(rel), PARTS, kinds=("YOUR CODE",))
            assert [(r.part, r.function) for r in stu] == [(r.part, r.function) for r in sol]
    assert "lineaar" not in (copy / "README.md").read_text()
    assert json.loads((copy / "assignment.json").read_text())["total"] == 100
    # complete: the lessons find their checkpoint, their dependencies are an extra, the README
    # says how to set up, get the data, run the lessons, test and submit
    assert {f"lessons/checkpoints/{p.name}" for p in (PACKAGE.parent / "lessons" / "checkpoints").glob("*.npz")} <= rels
    assert {f"lessons/{p.name}" for p in (PACKAGE.parent / "lessons").glob("*.ipynb")} <= rels
    assert "minivit/lessons/tools.py" in rels
    assert 'lessons = ["jupyterlab' in (copy / "pyproject.toml").read_text()
    readme = (copy / "README.md").read_text()
    for section in ("## Set up", "## Test", "## Data and lessons", "## Submit", "MINIVIT_DATA", "jupyter lab lessons/"):
        assert section in readme, section


def test_make_refuses_a_leak_bad_markers_unknown_parts_and_a_full_folder(tmp_path):
    pkg = tmp_path / "pkg" / "minivit"
    shutil.copytree(PACKAGE, pkg, ignore=shutil.ignore_patterns("__pycache__"))
    pool = pkg / "ops" / "pool.py"
    original = pool.read_text()
    pool.write_text(original.replace("\n'token':", "\n    y = gamma * xhat + beta\n'token':"))
    with pytest.raises(RuntimeError, match=r"minivit/ops/pool.py: y = gamma \* xhat \+ beta"):
        make(tmp_path / "leaky", ["layernorm"], package=pkg)
    pool.write_text(original.replace("def pool_forward(x, mode):\n",
                                     "def pool_forward(x, mode):\n    ### BEGIN SOLUTION vit\n"))
    with pytest.raises(MarkerError, match=r"minivit/ops/pool.py:\d+: (unterminated|nested)"):
        make(tmp_path / "broken", package=pkg)
    with pytest.raises(ValueError, match="unknown part"):
        make(tmp_path / "x", ["linear", "convolution"])
    (tmp_path / "full").mkdir()
    (tmp_path / "full" / "a").write_text("")
    with pytest.raises(FileExistsError):
        make(tmp_path / "full")


def test_copy_of_some_parts_imports_runs_on_reference_and_untouched_parts_work(tmp_path):
    copy = fresh(tmp_path, parts=["softmax", "adamw"])
    assert "BEGIN YOUR CODE" not in (copy / "minivit" / "ops" / "linear.py").read_text()
    assert "BEGIN YOUR CODE softmax" in (copy / "minivit" / "ops" / "softmax.py").read_text()
    code = STRIP_EDITABLE + textwrap.dedent("""
        import numpy as np, minivit
        from minivit import ops
        from minivit.assignment.checks import checks_for, load
        assert minivit.__file__.startswith(sys.argv[1]), minivit.__file__
        load()
        for part in ("linear", "layernorm", "gelu", "loss"):
            for c in checks_for(part):
                c.run_standalone()
        m = minivit.ViT(img_size=8, patch_size=4, embed_dim=8, depth=1, num_heads=2)
        assert m.kernel_set() is ops.reference
        try:
            m(np.zeros((1, 3, 8, 8), np.float32))
        except NotImplementedError as e:
            print("todo:", e)
        assert not any(k.startswith("minivit.fast") for k in sys.modules)
    """)
    r = subprocess.run([sys.executable, "-c", code, str(copy)], cwd=copy, env=env(), capture_output=True,
                       text=True, timeout=120)
    assert r.returncode == 0, r.stderr
    assert "todo: softmax: softmax_forward in minivit/ops/softmax.py" in r.stdout


# --- grade --------------------------------------------------------------------------------
def test_fresh_copy_scores_zero_and_lists_every_part(tmp_path):
    copy = fresh(tmp_path)
    out = tmp_path / "results" / "results.json"
    grader.grade(copy, out=out, quiet=True)
    result = json.loads(out.read_text())
    assert result["score"] == 0 and result["execution_time"] > 0
    assert {"score", "execution_time", "output", "visibility", "tests"} <= set(result)
    s = scores(result)
    assert list(s) == list(ORDER)
    assert all(v == (0.0, pytest.approx(PARTS[p][0])) for p, v in s.items())
    for t in result["tests"]:
        assert {"name", "score", "max_score", "status", "output", "visibility"} <= set(t)
        assert t["status"] == "failed" and "NotImplementedError" in t["output"]
    assert {t["visibility"] for t in result["tests"]} == {"visible", "after_published"}


def test_one_part_filled_scores_exactly_that_part(tmp_path):
    copy = fresh(tmp_path)
    fill(copy, ["layernorm"])
    result = grader.grade(copy, out=tmp_path / "r.json", quiet=True)
    assert result["score"] == PARTS["layernorm"][0]
    assert scores(result)["layernorm"] == (PARTS["layernorm"][0], PARTS["layernorm"][0])
    assert not failed(result, "layernorm")


def test_broken_parts_lose_only_their_own_points_within_the_time_limit(tmp_path):
    copy = fresh(tmp_path)
    fill(copy, ["linear", "loss", "vit"])
    set_region(copy, "ops/layernorm.py", "layernorm", "raise RuntimeError('my bug')", index=0)
    set_region(copy, "ops/gelu.py", "gelu", "return dy * (cache", index=1)          # syntax error
    set_region(copy, "ops/softmax.py", "softmax", "while True:\n    pass", index=0)  # never returns
    set_region(copy, "ops/sdpa.py", "attention", """
        import numpy as np
        hoard = []
        while True:
            hoard.append(np.ones(1 << 24))""", index=0)                           # unbounded allocation
    set_region(copy, "ops/block.py", "block", "import ctypes\nctypes.string_at(0)", index=0)   # a crash
    set_region(copy, "optim.py", "adamw", "import os\nos._exit(0)")               # leaves early
    # correct code that writes warnings to stderr costs nothing
    edit(copy, "ops/loss.py", "    probs, t = cache\n",
         "    probs, t = cache\n    import sys, warnings\n    warnings.warn('a warning')\n"
         "    print('noise ' * 50, file=sys.stderr)\n", count=1)
    limit = 8.0
    t0 = time.perf_counter()
    result = grader.grade(copy, out=tmp_path / "r.json", time_limit=limit, memory_mb=1024, quiet=True)
    elapsed = time.perf_counter() - t0
    s = scores(result)
    for p in ("linear", "loss", "vit"):
        assert s[p][0] == pytest.approx(s[p][1]), (p, failed(result, p))
    for p in ("layernorm", "gelu", "softmax", "attention", "block", "adamw"):
        assert s[p][0] == 0.0, (p, s[p])
    assert result["score"] == pytest.approx(PARTS["linear"][0] + PARTS["loss"][0] + PARTS["vit"][0])
    out = {p: "\n".join(t["output"] for t in result["tests"] if t["name"].startswith(p + ":"))
           for p in ORDER}
    assert "RuntimeError: my bug" in out["layernorm"]
    assert "SyntaxError" in out["gelu"]
    assert f"time limit exceeded: the part's checks did not finish within {limit:g} s" in out["softmax"]
    assert "MemoryError" in out["attention"]
    assert "SIGSEGV" in out["block"]
    assert "ended early" in out["adamw"]
    assert elapsed < limit + 60, elapsed                  # the endless loop was stopped at its limit


def test_plausible_wrong_answers_fail_with_a_diagnosis_and_cost_nothing_elsewhere(tmp_path):
    """The mistakes students really make, each in its own part: the failing checks name them,
    and a diagnosis computed by the grader says what is likely wrong."""
    copy = fresh(tmp_path)
    fill(copy)
    # LayerNorm over the wrong axis (statistics over the batch, consistently in both passes)
    edit(copy, "ops/layernorm.py", "axis=-1", "axis=0")
    # softmax without the max shift
    edit(copy, "ops/softmax.py", "xp.exp(x - x.max(axis=axis, keepdims=True))", "xp.exp(x)", count=1)
    # attention without 1/sqrt(Dh) (the backward pass uses the same cached scale: consistent)
    edit(copy, "ops/sdpa.py", "scale = q.shape[-1] ** -0.5", "scale = 1.0", count=1)
    # backward passes missing a term: GELU'(x) without x phi(x); the block without its residual
    edit(copy, "ops/gelu.py", "return x * cdf, cdf + x * pdf", "return x * cdf, cdf", count=1)
    edit(copy, "ops/block.py", "    dx = dy + dh ", "    dx = dh ", count=1)
    # patches flattened channel-last; 'avg' pooling over the [CLS] token too
    edit(copy, "ops/patch.py", "x = x.transpose(0, 2, 4, 1, 3, 5)", "x = x.transpose(0, 2, 4, 3, 5, 1)", count=1)
    edit(copy, "ops/pool.py", "return x[:, 1:].mean(axis=1), (x.shape, mode)", "return x.mean(axis=1), (x.shape, mode)",
         count=1)
    result = grader.grade(copy, out=tmp_path / "r.json", quiet=True)
    s = scores(result)
    for p in ("linear", "loss", "adamw", "vit"):
        assert s[p][0] == s[p][1], (p, failed(result, p))
    wrong = {"layernorm": ("mean 0 and variance 1", "the means along axis 0 are 0 instead",
                           "Likely cause: the mean and variance are taken over axis 0"),
             "softmax": ("large logits", "Subtract the max", "Likely cause: exp overflows on large logits"),
             "attention": ("sdpa equals the reference", "", "Likely cause: the scores are not scaled"),
             "gelu": ("gradient check in float64, exact", "wrong gradient(s): dx",
                      "Likely cause: the derivative misses a term of the product rule"),
             "block": ("gradient check of the block", "wrong gradient(s): dx",
                       "Likely cause: the backward pass drops the gradient of the MLP branch's residual path"),
             "patch_embed": ("patch i is the image's i-th", "flatten each patch in (C, P, P) order",
                             "Likely cause: each patch is flattened in (P, P, C) order"),
             "cls_pool": ("'avg' the mean of the patch tokens", "yours includes the [CLS] token",
                          "Likely cause: 'avg' pooling includes the [CLS] token")}
    for part, (check, public_hint, diagnosis) in wrong.items():
        assert s[part][0] < s[part][1], part
        assert any(check in n for n in failed(result, part)), (part, failed(result, part))
        assert public_hint in outputs(result, part), (part, outputs(result, part)[:3000])
        assert diagnosis in outputs(result, part), (part, outputs(result, part)[:3000])
    # a diagnosis is only given where it fits: none for the parts that are right
    assert "Likely cause" not in "".join(outputs(result, p) for p in ("linear", "loss", "adamw", "vit"))


def test_end_to_end_make_fill_grade_train(tmp_path):
    copy = fresh(tmp_path)
    fill(copy)
    r = subprocess.run([sys.executable, "-m", "minivit.assignment", "grade", str(copy),
                        "--out", str(tmp_path / "results.json")], capture_output=True, text=True,
                       timeout=600, env=env())
    assert r.returncode == 0, r.stderr
    result = json.loads((tmp_path / "results.json").read_text())
    assert result["score"] == 100, [t["name"] for t in result["tests"] if t["status"] != "passed"]
    assert all(t["status"] == "passed" for t in result["tests"])
    # the filled copy is the solution again, marker lines aside
    for rel in ("ops/layernorm.py", "optim.py", "model.py"):
        strip = lambda t: [ln for ln in t.split("\n") if "###" not in ln]   # noqa: E731
        assert strip((copy / "minivit" / rel).read_text()) == strip((PACKAGE / rel).read_text())
    # one short epoch with the copy's own training command, on a tiny synthetic CIFAR-10
    from minivit.data import make_synthetic_archive
    archive = make_synthetic_archive(tmp_path / "cifar-10-python.tar.gz", n_per_batch=16, n_test=16)
    code = STRIP_EDITABLE + ("import runpy; assert __import__('minivit').__file__.startswith(sys.argv[1]); "
                             "sys.argv = ['minivit.train'] + sys.argv[2:]; "
                             "runpy.run_module('minivit.train', run_name='__main__')")
    args = ["cifar10", "--data-dir", str(tmp_path / "data"), "--data-archive", str(archive),
            "--embed-dim", "16", "--depth", "1", "--num-heads", "2", "--batch-size", "16",
            "--epochs", "1", "--warmup-epochs", "0", "--no-progress", "--out", str(tmp_path / "run")]
    r = subprocess.run([sys.executable, "-c", code, str(copy), *args], cwd=copy, env=env(),
                       capture_output=True, text=True, timeout=300)
    assert r.returncode == 0, r.stdout[-2000:] + r.stderr[-2000:]
    epochs = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines()]
    assert [e["epoch"] for e in epochs if e["type"] == "epoch"] == [0]
    assert (tmp_path / "run" / "last.npz").is_file()
