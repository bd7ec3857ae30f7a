"""End to end: the real CLI on a tiny synthetic CIFAR-10 archive (no network)."""
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from minivit import evaluate as evaluate_cli
from minivit import train as train_cli
from minivit.checkpoint import load_checkpoint
from minivit.config import make_model
from minivit.data import Loader, load_cifar10, make_synthetic_archive
from minivit.data_parallel import DataParallel

# two blocks: the drop-path rate rises linearly from 0 at the first block, so with one block
# stochastic depth (on in the CPU preset) would never run, and resume would not test its masks
TINY = ["--embed-dim", "16", "--depth", "2", "--num-heads", "2", "--mlp-ratio", "2",
        "--batch-size", "16", "--epochs", "3", "--warmup-epochs", "1", "--log-every", "2",
        "--drop-rate", "0.1", "--drop-path", "0.1", "--eval-every", "1", "--no-progress"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return make_synthetic_archive(tmp_path_factory.mktemp("arch") / "cifar-10-python.tar.gz",
                                  n_per_batch=16, n_test=40, seed=0)


def run(args, tmp_path, archive):
    return train_cli.main(["cifar10", "--data-dir", str(tmp_path / "data"),
                           "--data-archive", str(archive), *args])


def epochs(out):
    recs = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return [r for r in recs if r["type"] == "epoch"], [r for r in recs if r["type"] == "step"]


def same_metrics(a, b):
    keys = ("epoch", "step", "train_loss", "train_acc", "test_loss", "test_acc", "val_loss", "val_acc",
            "loss", "acc", "lr")
    strip = [{k: r[k] for k in keys if k in r} for r in a]
    return strip == [{k: r[k] for k in keys if k in r} for r in b]


def ctrl_c_at_check(n):
    """An _Interrupt whose flag reads as "Ctrl-C pressed" from its n-th check on."""
    class CtrlC(train_cli._Interrupt):
        calls = 0

        @property
        def requested(self):
            CtrlC.calls += 1
            return CtrlC.calls >= n

        @requested.setter
        def requested(self, v):
            pass
    return CtrlC


def test_help_lists_presets_and_flags(capsys):
    with pytest.raises(SystemExit) as e:
        train_cli.main(["cifar10", "--help"])
    assert e.value.code == 0
    text = capsys.readouterr().out
    for flag in ("--preset", "--epochs", "--lr", "--label-smoothing", "--embed-dim", "--device",
                 "--resume", "--limit-train", "--out", "--data-archive", "--mixup"):
        assert flag in text


def test_bad_flag_is_a_clear_error(tmp_path, archive, capsys):
    with pytest.raises(SystemExit) as e:
        train_cli.main(["cifar10", "--epochs", "many"])
    assert e.value.code == 2 and "invalid int value" in capsys.readouterr().err
    assert run(["--out", str(tmp_path / "r"), "--embed-dim", "30", "--num-heads", "4"], tmp_path, archive) == 2
    assert "--num-heads must be an integer >= 1 and a divisor of --embed-dim (30), got 4" in capsys.readouterr().err
    assert not (tmp_path / "r").exists() and not (tmp_path / "data").exists()   # checked first


def test_train_resume_evaluate(tmp_path, archive, capsys, monkeypatch):
    # 1. an uninterrupted run
    full = tmp_path / "full"
    assert run(["--out", str(full), *TINY], tmp_path, archive) == 0
    for name in ("config.json", "metrics.jsonl", "last.npz", "best.npz"):
        assert (full / name).is_file(), name
    try:
        import matplotlib  # noqa: F401
        assert (full / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    except ImportError:
        pass
    ep_full, steps_full = epochs(full)
    assert [r["epoch"] for r in ep_full] == [0, 1, 2]
    assert steps_full and all(np.isfinite(r["loss"]) for r in steps_full)

    # 2. the same run, stopped by "Ctrl-C" in the middle of epoch 2 ...
    # (checked after every step and at epoch ends: 5 steps per epoch -> after step 2 of epoch 2)
    monkeypatch.setattr(train_cli, "_Interrupt", ctrl_c_at_check(9))
    part = tmp_path / "part"
    assert run(["--out", str(part), *TINY], tmp_path, archive) == 130
    _, _, meta = load_checkpoint(part / "last.npz")
    assert (meta["epoch"], meta["batch_in_epoch"]) == (1, 2)
    monkeypatch.undo()
    # ... and --resume finishes it exactly as the uninterrupted run did
    assert run(["--resume", str(part), "--no-progress"], tmp_path, archive) == 0
    ep_part, steps_part = epochs(part)
    assert same_metrics(ep_part, ep_full)
    assert same_metrics(steps_part, steps_full)
    a, _, _ = load_checkpoint(full / "last.npz")
    b, _, _ = load_checkpoint(part / "last.npz")
    assert all(np.array_equal(a[k], b[k]) for k in a)

    # 3. evaluate prints accuracy, per-class accuracy and the confusion matrix
    capsys.readouterr()
    assert evaluate_cli.main([str(full / "best.npz"), "--data-dir", str(tmp_path / "data")]) == 0
    out = capsys.readouterr().out
    best = max(r["test_acc"] for r in ep_full)
    assert f"test accuracy: {best:.4f}" in out
    assert "per-class accuracy" in out and "confusion matrix" in out and "airplane" in out


def test_existing_run_is_not_overwritten(tmp_path, archive, capsys):
    out = tmp_path / "r"
    assert run(["--out", str(out), *TINY[:-5], "--epochs", "1", "--warmup-epochs", "0.5", "--no-progress"], tmp_path, archive) == 0
    before = (out / "last.npz").read_bytes()
    assert run(["--out", str(out), *TINY], tmp_path, archive) == 2
    assert "already holds a run" in capsys.readouterr().err
    assert (out / "last.npz").read_bytes() == before


def test_resume_rejects_other_shapes_and_corrupt_checkpoints(tmp_path, archive, capsys):
    out = tmp_path / "r"
    assert run(["--out", str(out), *TINY[:-5], "--epochs", "1", "--warmup-epochs", "0.5", "--no-progress"], tmp_path, archive) == 0
    last = out / "last.npz"
    good = last.read_bytes()
    # a hyper-parameter together with --resume
    assert run(["--resume", str(out), "--embed-dim", "32"], tmp_path, archive) == 2
    assert "drop --embed-dim" in capsys.readouterr().err
    # a truncated checkpoint
    last.write_bytes(good[: len(good) // 2])
    assert run(["--resume", str(out)], tmp_path, archive) == 2
    assert "truncated or corrupt" in capsys.readouterr().err
    assert last.read_bytes() == good[: len(good) // 2]           # left as it was
    # a checkpoint of another model shape
    other = tmp_path / "other"
    assert run(["--out", str(other), "--embed-dim", "8", "--depth", "1", "--num-heads", "2",
                "--epochs", "1", "--warmup-epochs", "0.5", "--no-progress"], tmp_path, archive) == 0
    import shutil
    shutil.copy(other / "last.npz", tmp_path / "x.npz")
    last.write_bytes(good)
    model, optim, meta = load_checkpoint(tmp_path / "x.npz")
    from minivit.checkpoint import save_checkpoint
    _, _, good_meta = load_checkpoint(last)
    save_checkpoint(tmp_path / "mixed.npz", model, optim, good_meta)   # weights of another shape
    assert run(["--resume", str(tmp_path / "mixed.npz")], tmp_path, archive) == 2
    err = capsys.readouterr().err
    assert "state dict does not match" in err and "shape mismatch" in err
    assert evaluate_cli.main([str(tmp_path / "mixed.npz"), "--data-dir", str(tmp_path / "data")]) == 2


def test_nan_loss_stops_and_keeps_last_good_checkpoint(tmp_path, archive, capsys):
    out = tmp_path / "r"
    assert run(["--out", str(out), *TINY[:-5], "--epochs", "1", "--warmup-epochs", "0.5", "--no-progress"], tmp_path, archive) == 0
    good = (out / "last.npz").read_bytes()
    shutil_out = tmp_path / "nan"
    import shutil
    shutil.copytree(out, shutil_out)
    # an absurd learning rate makes the loss overflow
    code = run(["--out", str(tmp_path / "nan2"), *TINY[:-5], "--lr", "1e30", "--epochs", "2",
                "--no-progress"], tmp_path, archive)
    assert code == 1
    assert "the loss became" in capsys.readouterr().err
    assert (out / "last.npz").read_bytes() == good


def test_real_sigint_saves_and_resumes(tmp_path, archive):
    """A real Ctrl-C (SIGINT) to the CLI process: checkpoint, exit 130, then --resume."""
    out = tmp_path / "sig"
    cmd = [sys.executable, "-m", "minivit.train", "cifar10", "--data-dir", str(tmp_path / "data"),
           "--data-archive", str(archive), "--out", str(out), *TINY[:-5], "--epochs", "200",
           "--log-every", "1", "--no-progress"]
    env = dict(os.environ, PYTHONPATH=str(Path(__file__).resolve().parents[1]))
    proc = subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    deadline = time.time() + 60
    while time.time() < deadline and not (out / "best.npz").exists():
        time.sleep(0.1)
    proc.send_signal(signal.SIGINT)
    text, _ = proc.communicate(timeout=60)
    assert proc.returncode == 130, text
    assert "Traceback" not in text and "--resume" in text
    _, _, meta = load_checkpoint(out / "last.npz")
    assert 0 < meta["step"]


def test_kernels_flag_trains_the_same_run_on_either_kernel_set(tmp_path, archive):
    """--kernels reference (the math of minivit/ops) and fast give the same run to
    round-off; --kernels is a runtime flag, so a run may be resumed on the other set."""
    runs = {}
    for kernels in ("fast", "reference"):
        out = tmp_path / kernels
        assert run(["--out", str(out), "--kernels", kernels, *TINY], tmp_path, archive) == 0
        runs[kernels] = epochs(out)[0]
    for f, r in zip(runs["fast"], runs["reference"]):
        assert f["train_loss"] == pytest.approx(r["train_loss"], rel=1e-4)
        assert f["test_loss"] == pytest.approx(r["test_loss"], rel=1e-4)
    assert run(["--resume", str(tmp_path / "fast"), "--kernels", "reference", "--no-progress"],
               tmp_path, archive) == 0
    with pytest.raises(SystemExit):
        run(["--kernels", "quick"], tmp_path, archive)


def test_fc_norm_flag_trains_saves_and_evaluates(tmp_path, archive, capsys):
    """--fc-norm builds timm's avg layout; its checkpoint holds fc_norm.* (no norm.*) and
    records the choice, so evaluate rebuilds the same model. A config saved before the
    flag existed (no fc_norm key) still builds the norm-before-pooling model."""
    out = tmp_path / "fc"
    args = [*TINY[:-5], "--epochs", "1", "--warmup-epochs", "0.5", "--no-progress", "--global-pool", "avg", "--fc-norm"]
    assert run(["--out", str(out), *args], tmp_path, archive) == 0
    state, _, meta = load_checkpoint(out / "last.npz")
    assert meta["config"]["fc_norm"] is True
    assert "fc_norm.weight" in state and "norm.weight" not in state
    assert json.loads((out / "config.json").read_text())["fc_norm"] is True
    capsys.readouterr()
    assert evaluate_cli.main([str(out / "last.npz"), "--data-dir", str(tmp_path / "data")]) == 0
    old = dict(meta["config"])
    del old["fc_norm"]
    assert "norm.weight" in train_cli.make_model(old, "cpu").state_dict()
    assert not train_cli.resolve_config(train_cli.build_parser().parse_args(["cifar10"]))["fc_norm"]


def test_eval_every_skips_test_passes_but_always_tests_the_last_epoch(tmp_path, archive, capsys, monkeypatch):
    """--eval-every 2 over 3 epochs: epochs 2 and 3 are tested, epoch 1 is not (its record
    has no test values, its line says so), best.npz comes from a tested epoch, and a resume
    from the untested epoch's checkpoint finishes exactly like the uninterrupted run."""
    args = [*TINY, "--eval-every", "2"]
    full = tmp_path / "full"
    assert run(["--out", str(full), *args], tmp_path, archive) == 0
    assert "test not evaluated (every 2 epochs)" in capsys.readouterr().out
    ep_full, steps_full = epochs(full)
    assert ["test_acc" in r for r in ep_full] == [False, True, True]
    _, _, best = load_checkpoint(full / "best.npz")
    assert best["epoch"] in (2, 3) and best["best_acc"] == max(r["test_acc"] for r in ep_full[1:])

    # 5 checks in epoch 1, then its end-of-epoch check
    monkeypatch.setattr(train_cli, "_Interrupt", ctrl_c_at_check(6))
    part = tmp_path / "part"
    assert run(["--out", str(part), *args], tmp_path, archive) == 130
    assert not (part / "best.npz").exists()               # nothing tested yet
    monkeypatch.undo()
    assert run(["--resume", str(part), "--no-progress"], tmp_path, archive) == 0
    ep_part, steps_part = epochs(part)
    assert same_metrics(ep_part, ep_full) and same_metrics(steps_part, steps_full)

    # a run saved before --eval-every existed resumes, testing after every epoch
    old = dict(train_cli.resolve_config(train_cli.build_parser().parse_args(["cifar10"])))
    del old["eval_every"]
    assert train_cli.validate_config(old) is old
    with pytest.raises(ValueError, match="--eval-every must be an integer >= 1, got 0"):
        train_cli.validate_config(dict(old, eval_every=0))


def test_val_split_holds_out_training_images_and_chooses_best_npz_by_them(tmp_path, archive, capsys,
                                                                          monkeypatch):
    """--val-split 32 of the 80 training images: 48 are trained on (3 steps of 16 per epoch),
    every tested epoch records validation loss/accuracy on the 32, best.npz is the epoch
    of the best validation accuracy (not of the best test accuracy), the done line says
    which, and a split that leaves nothing to train on is refused before any file is written."""
    out = tmp_path / "val"
    assert run(["--out", str(out), *TINY, "--val-split", "32", "--epochs", "4"], tmp_path, archive) == 0
    ep, steps = epochs(out)
    assert [r["step"] for r in ep] == [3, 6, 9, 12]
    assert all(0 <= r["val_acc"] <= 1 and np.isfinite(r["val_loss"]) for r in ep)
    best_epoch = max(range(4), key=lambda i: ep[i]["val_acc"])     # first of equals, as train
    _, _, best = load_checkpoint(out / "best.npz")
    assert best["epoch"] == best_epoch + 1 and best["best_acc"] == ep[best_epoch]["val_acc"]
    assert f"best.npz is epoch {best_epoch + 1}, val accuracy" in capsys.readouterr().out

    # the validation images are the last 32 training images: evaluating best.npz on them
    # (the checkpoint as a model, the held-out images as a 'test set') gives its val_acc
    with pytest.warns(Warning, match="differ from the official"):    # a synthetic archive
        data = load_cifar10(tmp_path / "data", archive)
    model_state, _, meta = load_checkpoint(out / "best.npz")
    model = make_model(meta["config"])
    model.load_state_dict(model_state)
    held_out = Loader(data["x_train"][-32:], data["y_train"][-32:], 500, shuffle=False)
    assert evaluate_cli.evaluate(DataParallel(model), held_out, "cpu")[1] == ep[best_epoch]["val_acc"]

    # Ctrl-C at the first step of epoch 2 (epoch 1: 3 step checks, 2 at its end), then --resume:
    # the same records, validation included, and the same best.npz
    monkeypatch.setattr(train_cli, "_Interrupt", ctrl_c_at_check(6))
    part = tmp_path / "part"
    assert run(["--out", str(part), *TINY, "--val-split", "32", "--epochs", "4"], tmp_path, archive) == 130
    assert load_checkpoint(part / "last.npz")[2]["step"] == 4
    monkeypatch.undo()
    assert run(["--resume", str(part), "--no-progress"], tmp_path, archive) == 0
    ep_part, steps_part = epochs(part)
    assert same_metrics(ep_part, ep) and same_metrics(steps_part, steps)
    assert load_checkpoint(part / "best.npz")[2]["epoch"] == best["epoch"]
    capsys.readouterr()

    bad = tmp_path / "bad"
    assert run(["--out", str(bad), *TINY, "--val-split", "80"], tmp_path, archive) == 2
    assert "--val-split 80 leaves no training images (there are 80)" in capsys.readouterr().err
    assert not bad.exists()
