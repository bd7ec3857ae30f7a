"""minivit.lessons: the check cells' comparisons and messages, the setup cell's helpers
(images, checkpoint, source without markers), and the exercise edition's transformation."""
import json
import subprocess
import sys

import numpy as np
import pytest

from minivit import ops
from minivit.assignment.markers import (ANSWER_PLACEHOLDER, MarkerError, exercise_notebook,
                                        find_answers)
from minivit.lessons import check, checkpoint_path, load_images, show_source
from minivit.lessons.check import CheckFailed, ExerciseNotDone
from minivit.lessons.edition import write_exercises


# --- check --------------------------------------------------------------------------------
def test_a_passing_exercise_prints_a_line_per_tensor_and_a_verdict(capsys):
    x = np.arange(6.0).reshape(2, 3)
    with check.exercise("demo"):
        assert check.exact("same", x.copy(), x)
        assert check.close("round-off", x + 1e-12, x)
        assert check.rel_error("gradient", x * (1 + 1e-10), x)
    out = capsys.readouterr().out.split("\n")
    assert out[0].startswith("same") and "exact: True  | close: True  | max diff 0.0e+00" in out[0]
    assert "exact: False | close: True " in out[1] and "rel error" in out[2]
    assert "exercise demo: all 3 checks passed" in out[3]


def test_a_failing_case_is_named_with_where_and_what(capsys):
    x = np.zeros((2, 3))
    wrong = x.copy()
    wrong[1, 2] = 0.5
    with pytest.raises(CheckFailed) as e:
        with check.exercise("demo"):
            check.exact("case A", x.copy(), x)
            check.close("case B", wrong, x)
            check.close("case C", x, x)
    msg = str(e.value)
    assert msg.startswith("exercise demo: 1 of 3 checks failed:") and "case B" in msg
    assert "worst at [1, 2]: got 0.5, expected 0" in msg and "case A" not in msg
    out = capsys.readouterr().out
    assert "max diff 5.0e-01" in out and "<- FAILED" in out and out.count("<- FAILED") == 1


@pytest.mark.parametrize("got, expected, words", [
    (None, np.zeros(3), "got None: does the function end with `return`"),
    ((np.zeros(3), None), np.zeros(3), "got a tuple of 2"),
    (np.zeros((3, 2)), np.zeros((2, 4)), "shape (3, 2), expected (2, 4)"),
    (np.arange(6.0).reshape(3, 2), np.ones((2, 3)), "the right number of values, in the wrong shape"),
    (np.arange(6.0).reshape(3, 2), np.arange(6.0).reshape(2, 3), "the same values in another order"),
    (np.ones(5), np.ones(6), "shape (5,), expected (6,)"),
    (np.array([1.0, np.nan, 2.0]), np.ones(3), "NaN in your result (first at [1])"),
    (np.array([1.0, np.inf]), np.ones(2), "inf in your result"),
    (np.zeros(4), np.ones(4), "your result is all zeros"),
    (np.float64(2.0), np.float64(3.0), "got 2, expected 3"),
    ("text", np.zeros(2), "got str"),
])
def test_each_kind_of_wrong_result_gets_its_own_message(got, expected, words, capsys):
    with pytest.raises(CheckFailed) as e:
        check.close("t", got, expected)           # outside an exercise block: fails at once
    assert words in str(e.value), str(e.value)
    assert words in capsys.readouterr().out


def test_rel_error_uses_its_tolerance():
    a = np.array([1.0, 2.0])
    assert check.rel_error("fine", a * (1 + 1e-9), a, tol=1e-7)
    with pytest.raises(CheckFailed, match="worst at"):
        check.rel_error("coarse", a * (1 + 1e-5), a, tol=1e-7)


def test_an_unfinished_exercise_fails_in_one_line():
    def todo(x):
        raise NotImplementedError("patchify: patchify in lessons/01.ipynb cell 6")

    with pytest.raises(ExerciseNotDone) as e:
        with check.exercise("patchify"):
            check.exact("x", todo(1), np.zeros(1))
    assert str(e.value) == "exercise patchify is not done yet: fill in the cell above"
    assert e.value._render_traceback_() == [
        "\x1b[31mExerciseNotDone: exercise patchify is not done yet: fill in the cell above\x1b[0m"]
    with pytest.raises(ExerciseNotDone, match="exercise embed uses exercise patchify, which is not done yet"):
        with check.exercise("embed"):
            todo(1)


def test_other_errors_in_the_learners_code_keep_their_traceback():
    with pytest.raises(ValueError, match="mismatch"):
        with check.exercise("demo"):
            np.zeros(3) @ np.zeros(4)  # noqa: B018  (the learner's bug)
    # the block is closed: a later comparison outside any block fails at once again
    with pytest.raises(CheckFailed):
        check.exact("after", np.ones(1), np.zeros(1))


# --- the setup cell's helpers --------------------------------------------------------------
def test_show_source_leaves_out_the_markers(capsys):
    import inspect
    raw = inspect.getsource(ops.softmax_forward)
    assert "### BEGIN SOLUTION softmax" in raw and "### HINT:" in raw        # the library marks it
    show_source(ops.softmax_forward)
    shown = capsys.readouterr().out
    assert "###" not in shown and "def softmax_forward" in shown
    rest = "\n".join(ln for ln in raw.split("\n") if not ln.lstrip().startswith("### "))
    assert shown == rest.rstrip("\n") + "\n"          # every other line, as it is


SYNTHETIC_WARNINGS = ("ignore::minivit.data.DatasetSizeWarning", "ignore::minivit.data.ChecksumWarning")


@pytest.mark.filterwarnings(*SYNTHETIC_WARNINGS)
def test_load_images_reads_one_batch_and_matches_load_cifar10(tmp_path, monkeypatch):
    from minivit.data import cifar10, make_synthetic_archive
    from minivit.lessons import tools
    make_synthetic_archive(tmp_path / cifar10.ARCHIVE_NAME, n_per_batch=50, n_test=30, seed=1)
    full = cifar10.load_cifar10(tmp_path, progress=False)            # extracts it
    monkeypatch.setenv("MINIVIT_DATA", str(tmp_path))

    def no_full_load(*a, **k):
        raise AssertionError("load_images loaded the whole data set")
    monkeypatch.setattr(tools, "load_cifar10", no_full_load)
    x, y, classes = load_images(20)
    assert x.shape == (20, 3, 32, 32) and x.dtype == np.uint8 and y.dtype == np.int64
    assert np.array_equal(x, full["x_train"][:20]) and np.array_equal(y, full["y_train"][:20])
    assert classes == full["classes"]
    xt, yt, _ = load_images(7, split="test")
    assert np.array_equal(xt, full["x_test"][:7]) and np.array_equal(yt, full["y_test"][:7])
    with pytest.raises(ValueError, match="split must be"):
        load_images(3, split="validation")


@pytest.mark.filterwarnings(*SYNTHETIC_WARNINGS)
def test_load_images_extracts_the_archive_the_first_time(tmp_path, monkeypatch):
    from minivit.data import ARCHIVE_NAME, make_synthetic_archive
    make_synthetic_archive(tmp_path / ARCHIVE_NAME, n_per_batch=40, n_test=20, seed=2)
    monkeypatch.setenv("MINIVIT_DATA", str(tmp_path))
    x, y, classes = load_images(5)
    assert x.shape == (5, 3, 32, 32) and len(classes) == 10
    assert np.array_equal(load_images(5).x, x)        # now from the extracted folder


def test_checkpoint_path_from_the_package_or_the_environment(tmp_path, monkeypatch):
    monkeypatch.delenv("MINIVIT_LESSONS_CHECKPOINT", raising=False)
    assert checkpoint_path().is_file() and checkpoint_path().parent.name == "checkpoints"
    mine = tmp_path / "mine.npz"
    mine.write_bytes(b"x")
    monkeypatch.setenv("MINIVIT_LESSONS_CHECKPOINT", str(mine))
    assert checkpoint_path() == mine
    monkeypatch.setenv("MINIVIT_LESSONS_CHECKPOINT", str(tmp_path / "missing.npz"))
    with pytest.raises(FileNotFoundError, match="MINIVIT_LESSONS_CHECKPOINT"):
        checkpoint_path()
    monkeypatch.delenv("MINIVIT_LESSONS_CHECKPOINT")
    with pytest.raises(FileNotFoundError, match="pip install -e"):
        checkpoint_path("no-such-checkpoint.npz")


# --- the exercise edition -----------------------------------------------------------------
def notebook(*cells):
    return json.dumps({"cells": [{"cell_type": t, "metadata": {}, "source": s,
                                  **({"outputs": [{"output_type": "stream", "name": "stdout",
                                                   "text": "secret output"}], "execution_count": 1}
                                     if t == "code" else {})} for t, s in cells],
                       "metadata": {}, "nbformat": 4, "nbformat_minor": 4})


EXERCISE = ("import numpy as np\n\ndef f(x):\n    \"\"\"doubles\"\"\"\n    ### BEGIN SOLUTION f\n"
            "    ### HINT: twice x\n    y = 2 * x\n    return y\n    ### END SOLUTION\n")
QUESTION = ("**Question.** Why?\n\n<!-- BEGIN ANSWER -->\nBecause of the secret reason.\n"
            "<!-- END ANSWER -->\n\nMore text.")


def test_the_exercise_edition_turns_regions_into_todos_and_answers_into_placeholders():
    text, regions = exercise_notebook(notebook(("code", EXERCISE), ("markdown", QUESTION)), "l.ipynb")
    assert [(r.part, r.function) for r in regions] == [("f", "f")]
    assert "secret" not in text and "2 * x" not in text
    code, md = (("".join(c["source"])) for c in json.loads(text)["cells"])
    assert ("    ### BEGIN YOUR CODE f\n    # TODO (f): twice x\n"
            "    raise NotImplementedError('f: f in l.ipynb cell 0')\n    ### END YOUR CODE\n") in code
    ns = {}
    exec(code, ns)                                # the exercise cell runs; calling f raises
    with pytest.raises(NotImplementedError, match="^f: "):
        ns["f"](1)
    assert md == f"**Question.** Why?\n\n<!-- BEGIN ANSWER -->\n{ANSWER_PLACEHOLDER}\n<!-- END ANSWER -->\n\nMore text."
    cell = json.loads(text)["cells"][0]
    assert cell["outputs"] == [] and cell["execution_count"] is None


@pytest.mark.parametrize("cells, message", [
    ((("code", "### BEGIN SOLUTION f\n### HINT: h\ny = 1\n### END SOLUTION\n"),), "not inside a function"),
    ((("code", EXERCISE.replace("    ### HINT: twice x\n", "")),), "no '### HINT: ...' line"),
    ((("markdown", "<!-- BEGIN ANSWER -->\nx\n"),), "cell 0:1: unterminated answer"),
    ((("markdown", "x\n<!-- END ANSWER -->"),), "cell 0:2: '<!-- END ANSWER -->' without"),
    ((("markdown", "<!-- BEGIN ANSWER -->\n<!-- BEGIN ANSWER -->\n<!-- END ANSWER -->"),), "nested answer"),
    ((("markdown", "<!-- BEGIN ANSWER -->\n\n<!-- END ANSWER -->"),), "an empty answer"),
    ((("markdown", "<!--BEGIN ANSWER-->\nx\n<!-- END ANSWER -->"),), "malformed answer marker"),
    ((("code", "# <!-- BEGIN ANSWER -->\n"),), "only allowed in markdown cells"),
])
def test_bad_lesson_markup_is_an_error_naming_the_cell_and_line(cells, message):
    with pytest.raises(MarkerError, match=message.replace("(", r"\(").replace(")", r"\)")):
        exercise_notebook(notebook(*cells), "l.ipynb")


def test_find_answers_lines():
    assert find_answers(QUESTION, "q") == [(2, 4)]


def test_the_exercises_command_writes_the_edition_and_keeps_existing_work(tmp_path):
    cmd = [sys.executable, "-m", "minivit.lessons", "exercises", str(tmp_path / "mine")]
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 0, r.stderr
    written = sorted(p.name for p in (tmp_path / "mine").iterdir())
    assert "README.md" in written and "01-images-as-sequences.ipynb" in written
    first = (tmp_path / "mine" / "01-images-as-sequences.ipynb").read_text()
    assert "### BEGIN YOUR CODE patchify" in first and "### BEGIN SOLUTION" not in first
    (tmp_path / "mine" / "01-images-as-sequences.ipynb").write_text("my work")
    r = subprocess.run(cmd, capture_output=True, text=True)
    assert r.returncode == 2 and "exist already" in r.stderr
    assert (tmp_path / "mine" / "01-images-as-sequences.ipynb").read_text() == "my work"


def test_write_exercises_with_checkpoints_copies_them(tmp_path):
    written = write_exercises(tmp_path / "copy", checkpoints=True)
    assert (tmp_path / "copy" / "checkpoints" / "cifar10-cpu.npz").is_file()
    assert all(p.is_file() for p in written)


def test_the_assignment_ships_the_exercise_edition_and_the_lessons_run_in_the_copy(tmp_path):
    """make's lessons/ is what `python -m minivit.lessons exercises` writes, with the
    checkpoint; the copy's minivit.lessons works without the assignment's tools."""
    import os
    from minivit.assignment.make import make
    make(tmp_path / "hw", ["softmax"])
    write_exercises(tmp_path / "self", checkpoints=True)
    shipped = sorted(p.relative_to(tmp_path / "hw" / "lessons") for p in (tmp_path / "hw" / "lessons").rglob("*"))
    assert shipped == sorted(p.relative_to(tmp_path / "self") for p in (tmp_path / "self").rglob("*"))
    for p in (tmp_path / "self").rglob("*.ipynb"):
        assert (tmp_path / "hw" / "lessons" / p.name).read_text() == p.read_text()
    code = ("import sys; sys.meta_path[:] = [f for f in sys.meta_path if 'editable' not in repr(f).lower()]; "
            "sys.path.insert(0, '.'); import minivit.lessons as L; "
            "assert L.__file__.startswith(sys.argv[1]), L.__file__; print(L.checkpoint_path())")
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "MINIVIT_LESSONS_CHECKPOINT")}
    r = subprocess.run([sys.executable, "-c", code, str(tmp_path / "hw")], cwd=tmp_path / "hw",
                       env=env, capture_output=True, text=True, timeout=60)
    assert r.returncode == 0, r.stderr[-2000:]
    assert r.stdout.strip() == str(tmp_path / "hw" / "lessons" / "checkpoints" / "cifar10-cpu.npz")


def test_check_cells_do_not_stop_run_all_in_the_exercise_edition():
    nb = json.loads(notebook(("code", EXERCISE), ("code", "check_it()")))
    nb["cells"][1]["metadata"]["tags"] = ["check"]
    text, _ = exercise_notebook(json.dumps(nb), "l.ipynb")
    assert json.loads(text)["cells"][1]["metadata"]["tags"] == ["check", "raises-exception"]
    assert "tags" not in json.loads(text)["cells"][0]["metadata"]
