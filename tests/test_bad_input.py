"""Bad input, as a hostile user gives it: every wrong value is refused with a message that
names it, before any data is read or file written, and nothing already saved is lost."""
import gzip
import json
import pickle
import shutil

import numpy as np
import pytest

from minivit import ViT
from minivit import evaluate as evaluate_cli
from minivit import train as train_cli
from minivit.checkpoint import load_checkpoint, save_checkpoint
from minivit.config import PRESETS
from minivit.data import load_cifar10, make_synthetic_archive
from minivit.data.synthetic import synthetic_files, write_archive

pytestmark = [pytest.mark.filterwarnings("ignore::minivit.data.cifar10.DatasetSizeWarning"),
              pytest.mark.filterwarnings("ignore::minivit.data.cifar10.ChecksumWarning")]

TINY = ["--embed-dim", "16", "--depth", "1", "--num-heads", "2", "--batch-size", "16",
        "--epochs", "2", "--warmup-epochs", "0.5", "--eval-every", "1", "--no-progress"]


@pytest.fixture(scope="module")
def archive(tmp_path_factory):
    return make_synthetic_archive(tmp_path_factory.mktemp("arch") / "cifar-10-python.tar.gz",
                                  n_per_batch=16, n_test=40, seed=0)


def run(args, data_dir, archive=None):
    extra = ["--data-archive", str(archive)] if archive is not None else []
    return train_cli.main(["cifar10", "--data-dir", str(data_dir), *extra, *args])


def one_error_line(err):
    """The command's stderr holds exactly one 'error:' line and no traceback."""
    lines = [line for line in err.splitlines() if not line.startswith("warning:")]
    assert len(lines) == 1 and lines[0].startswith("error: "), err
    assert "Traceback" not in err and ".extract-" not in err
    return lines[0]


# --- every numeric flag is range-checked, before data or disk ------------------------------
@pytest.mark.parametrize("flags, names", [
    (["--clip-grad", "-1"], "--clip-grad"),
    (["--mixup", "-1"], "--mixup"),
    (["--cutmix", "-0.5"], "--cutmix"),
    (["--weight-decay", "-1"], "--weight-decay"),
    (["--min-lr", "0.5"], "--min-lr"),               # above the preset's --lr 1e-3
    (["--mlp-ratio", "0"], "--mlp-ratio"),
    (["--mlp-ratio", "0.001"], "--mlp-ratio"),       # a hidden width of 0
    (["--seed", "-1"], "--seed"),
    (["--crop-pad", "-1"], "--crop-pad"),
    (["--limit-train", "0"], "--limit-train"),
    (["--limit-train", "-5"], "--limit-train"),
    (["--limit-test", "-1"], "--limit-test"),
    (["--val-split", "-1"], "--val-split"),
    (["--lr", "0"], "--lr"),
    (["--lr", "nan"], "--lr"),
    (["--lr", "inf"], "--lr"),
    (["--epochs", "0"], "--epochs"),
    (["--batch-size", "0"], "--batch-size"),
    (["--patch-size", "5"], "--patch-size"),
    (["--patch-size", "0"], "--patch-size"),
    (["--embed-dim", "100", "--num-heads", "3"], "--num-heads"),
    (["--depth", "0"], "--depth"),
    (["--drop-path", "1"], "--drop-path"),
    (["--drop-rate", "-0.1"], "--drop-rate"),
    (["--mix-prob", "2"], "--mix-prob"),
    (["--label-smoothing", "1"], "--label-smoothing"),
    (["--warmup-epochs", str(PRESETS["cpu"]["epochs"])], "--warmup-epochs"),  # the whole run
    (["--epochs", "3", "--warmup-epochs", "3"], "--warmup-epochs"),
    (["--log-every", "0"], "--log-every"),
    (["--eval-batch-size", "0"], "--eval-batch-size"),
])
def test_out_of_range_flag_is_refused_before_data_or_disk(tmp_path, archive, capsys, flags, names):
    out, data = tmp_path / "run", tmp_path / "data"
    assert run(["--out", str(out), *flags], data, archive) == 2
    line = one_error_line(capsys.readouterr().err)
    assert line.startswith(f"error: {names} must be"), line
    assert not out.exists() and not data.exists()


def test_out_naming_a_file_is_a_message(tmp_path, archive, capsys):
    (tmp_path / "f").write_text("mine")
    assert run(["--out", str(tmp_path / "f"), *TINY], tmp_path / "data", archive) == 2
    assert "is a file, not a directory" in one_error_line(capsys.readouterr().err)
    assert (tmp_path / "f").read_text() == "mine"


def test_quick_run_scales_the_warmup_with_epochs():
    args = train_cli.build_parser().parse_args(["cifar10", "--epochs", "1"])
    cfg = train_cli.resolve_config(args)
    preset = train_cli.PRESETS["cpu"]
    assert cfg["warmup_epochs"] == pytest.approx(preset["warmup_epochs"] / preset["epochs"])
    given = train_cli.build_parser().parse_args(["cifar10", "--epochs", "4", "--warmup-epochs", "1"])
    assert train_cli.resolve_config(given)["warmup_epochs"] == 1


def test_quick_run_warms_up_peaks_and_decays(tmp_path, archive):
    """`--epochs 1` used to keep the preset's 2 warm-up epochs: the rate climbed all run."""
    out = tmp_path / "r"
    assert run(["--out", str(out), "--embed-dim", "16", "--depth", "1", "--num-heads", "2",
                "--batch-size", "2", "--epochs", "1", "--log-every", "1", "--no-progress"],
               tmp_path / "data", archive) == 0
    lrs = [json.loads(line)["lr"] for line in (out / "metrics.jsonl").read_text().splitlines()
           if json.loads(line)["type"] == "step"]
    peak = lrs.index(max(lrs))
    assert max(lrs) == pytest.approx(1e-3, rel=0.05)          # the preset's --lr is reached
    assert 0 < peak < len(lrs) - 1 and lrs[-1] < 0.1 * max(lrs)   # ... and decays afterwards


# --- resume: the data, the config and the checkpoint must be the run's ---------------------
def test_resume_refuses_other_data_and_accepts_the_same_data_elsewhere(tmp_path, archive, capsys):
    out = tmp_path / "r"
    assert run(["--out", str(out), *TINY], tmp_path / "a", archive) == 0
    meta = load_checkpoint(out / "last.npz")[2]
    assert meta["data"]["data_dir"] == str(tmp_path / "a") and len(meta["data"]["fingerprint"]) == 64
    other = make_synthetic_archive(tmp_path / "other.tar.gz", n_per_batch=16, n_test=40, seed=1)
    assert run(["--resume", str(out)], tmp_path / "b", other) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "different" in line and f"--data-dir {tmp_path / 'a'}" in line
    # the same images in another place are the same data
    copy = tmp_path / "copy" / "cifar-10-python.tar.gz"
    copy.parent.mkdir()
    shutil.copy(archive, copy)
    assert run(["--resume", str(out)], tmp_path / "c", copy) == 0


def test_resume_hint_names_the_data_flags(tmp_path):
    args = train_cli.build_parser().parse_args(
        ["cifar10", "--data-dir", "d", "--data-archive", "a.tar.gz", "--device", "cuda"])
    hint = train_cli.resume_command(tmp_path, args)
    assert hint == f"python -m minivit.train cifar10 --resume {tmp_path} --data-dir d --data-archive a.tar.gz --device cuda"


def test_resume_refuses_a_checkpoint_of_another_run(tmp_path, archive, capsys):
    out, other = tmp_path / "r", tmp_path / "o"
    assert run(["--out", str(out), *TINY], tmp_path / "data", archive) == 0
    assert run(["--out", str(other), *TINY, "--embed-dim", "8"], tmp_path / "data", archive) == 0
    mine = (out / "last.npz").read_bytes()
    shutil.copy(other / "last.npz", out / "last.npz")       # its own config is consistent
    assert run(["--resume", str(out)], tmp_path / "data", archive) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "does not belong to this run" in line and "embed_dim (16 vs 8)" in line
    (out / "last.npz").write_bytes(mine)
    assert run(["--resume", str(out)], tmp_path / "data", archive) == 0


def test_stale_temporaries_are_removed_on_the_next_start(tmp_path, archive):
    out = tmp_path / "r"
    assert run(["--out", str(out), *TINY, "--epochs", "1"], tmp_path / "data", archive) == 0
    stale = [out / "last.npz.k1ll3d.tmp", out / "best.npz.x.tmp", out / "metrics.jsonl.tmp"]
    for p in stale:
        p.write_bytes(b"half a checkpoint")
    (out / "notes.tmp").write_text("not ours")
    assert run(["--resume", str(out)], tmp_path / "data", archive) == 0
    assert not any(p.exists() for p in stale) and (out / "notes.tmp").exists()


def test_nan_test_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, archive, capsys, monkeypatch):
    calls = []
    real = train_cli.evaluate

    def nan_on_second_epoch(*a, **k):
        loss, acc, confusion = real(*a, **k)
        calls.append(1)
        return (float("nan") if len(calls) == 2 else loss), acc, confusion

    monkeypatch.setattr(train_cli, "evaluate", nan_on_second_epoch)
    out = tmp_path / "r"
    assert run(["--out", str(out), *TINY], tmp_path / "data", archive) == 1
    assert "test loss became nan" in capsys.readouterr().err
    assert load_checkpoint(out / "last.npz")[2]["epoch"] == 1      # the epoch-1 checkpoint


def test_nan_validation_loss_stops_and_keeps_the_last_good_checkpoint(tmp_path, archive, capsys,
                                                                    monkeypatch):
    calls = []
    real = train_cli.evaluate

    def nan_on_second_validation(*a, **k):
        loss, acc, confusion = real(*a, **k)
        calls.append(1)
        return (float("nan") if len(calls) == 4 else loss), acc, confusion   # test, val, test, val

    monkeypatch.setattr(train_cli, "evaluate", nan_on_second_validation)
    out = tmp_path / "r"
    assert run(["--out", str(out), *TINY, "--val-split", "16"], tmp_path / "data", archive) == 1
    assert "validation loss became nan" in capsys.readouterr().err
    assert load_checkpoint(out / "last.npz")[2]["epoch"] == 1      # the epoch-1 checkpoint
    assert load_checkpoint(out / "best.npz")[2]["epoch"] == 1


def test_non_finite_weights_are_never_saved(tmp_path, archive, capsys, monkeypatch):
    """Weights that overflow in the last update of an epoch (no later forward pass sees
    them) must not be written over the last good checkpoint."""
    real_step = train_cli.AdamW.step
    steps = []

    def overflow_on_the_last_step(self):
        real_step(self)
        steps.append(1)
        if len(steps) == 10:                   # 80 images / 16 = 5 steps an epoch: end of epoch 2
            self.params[0][1].data[...] = np.inf

    monkeypatch.setattr(train_cli.AdamW, "step", overflow_on_the_last_step)
    monkeypatch.setattr(train_cli, "evaluate", lambda *a, **k: (1.0, 0.5, None))
    out = tmp_path / "r"
    assert run(["--out", str(out), *TINY], tmp_path / "data", archive) == 1
    assert "weights became NaN or infinite" in capsys.readouterr().err
    assert load_checkpoint(out / "last.npz")[2]["epoch"] == 1          # epoch 1's, kept
    assert all(np.isfinite(w).all() for w in load_checkpoint(out / "last.npz")[0].values())


# --- the data: an explicit archive is used; damage is one clear line ------------------------
def test_explicit_archive_is_never_ignored(tmp_path, archive, capsys):
    data_dir = tmp_path / "data"
    load_cifar10(data_dir, archive, download=False, progress=False)        # extracted, cached
    truncated = tmp_path / "cut.tar.gz"
    truncated.write_bytes(archive.read_bytes()[: archive.stat().st_size // 2])
    with pytest.raises(RuntimeError, match="cut.tar.gz"):
        load_cifar10(data_dir, truncated, download=False, progress=False)
    other = make_synthetic_archive(tmp_path / "other.tar.gz", n_per_batch=16, n_test=40, seed=1)
    got = load_cifar10(data_dir, other, download=False, progress=False)
    want = load_cifar10(tmp_path / "fresh", other, download=False, progress=False)
    assert np.array_equal(got["x_train"], want["x_train"]) and got["source"] == str(other)
    # the cache serves the archive it was extracted from, without extracting again
    assert load_cifar10(data_dir, other, download=False)["source"].endswith("cifar-10-batches-py")


def _flip(src, dest, offset, bit=0x10):
    blob = bytearray(src.read_bytes())
    blob[offset] ^= bit
    dest.write_bytes(bytes(blob))
    return dest


def test_gzip_crc_catches_a_flipped_bit_that_still_inflates(tmp_path, archive):
    bad = _flip(archive, tmp_path / "crc.tar.gz", archive.stat().st_size - 6)   # in the CRC-32
    with gzip.open(archive) as g:
        assert len(g.read()) > 0                                # the original is fine
    with pytest.raises(RuntimeError, match="gzip stream does not check out"):
        load_cifar10(tmp_path / "d", bad, download=False, progress=False)
    assert not (tmp_path / "d" / "cifar-10-batches-py").exists()


def test_corrupt_archive_is_one_line_and_exit_2(tmp_path, archive, capsys):
    bad = _flip(archive, tmp_path / "flipped.tar.gz", archive.stat().st_size // 2)
    assert run(["--out", str(tmp_path / "r"), *TINY], tmp_path / "data", bad) == 2
    assert "flipped.tar.gz" in one_error_line(capsys.readouterr().err)


def test_code_running_pickle_is_one_line_and_exit_2(tmp_path, capsys):
    class Evil:
        def __reduce__(self):
            return (print, ("pwned",))

    files = synthetic_files(n_per_batch=4, n_test=4)
    files["data_batch_3"] = pickle.dumps({b"data": Evil()}, protocol=2)
    path = write_archive(tmp_path / "evil.tar.gz", files)
    assert run(["--out", str(tmp_path / "r"), *TINY], tmp_path / "data", path) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "refusing to load __builtin__.print" in line and "data_batch_3" in line
    assert "pwned" not in capsys.readouterr().out


def test_directory_as_archive_says_so(tmp_path, capsys):
    assert run(["--out", str(tmp_path / "r"), *TINY], tmp_path / "data", tmp_path) == 2
    assert "is a directory" in one_error_line(capsys.readouterr().err)


@pytest.mark.parametrize("protocol", [2, 3, 4, 5])
def test_batches_pickled_by_any_protocol_load(tmp_path, protocol):
    """A course mirror re-saved by a newer Python: protocol 5 names numpy's _frombuffer,
    protocol 2 stores an empty b"" as bytes()."""
    rng = np.random.default_rng(protocol)

    def batch(n):
        return pickle.dumps({b"batch_label": b"", b"labels": rng.integers(0, 10, n).tolist(),
                             b"data": rng.integers(0, 256, (n, 3072), dtype=np.uint8),
                             b"filenames": [b"x.png"] * n}, protocol=protocol)

    files = {f"data_batch_{i}": batch(3) for i in range(1, 6)}
    files["test_batch"] = batch(2)
    files["batches.meta"] = pickle.dumps({b"label_names": [b"c%d" % i for i in range(10)]},
                                         protocol=protocol)
    data = load_cifar10(tmp_path / "d", write_archive(tmp_path / "p.tar.gz", files),
                        download=False, progress=False)
    assert data["x_train"].shape == (15, 3, 32, 32) and data["classes"][3] == "c3"


def test_non_string_class_names_are_refused(tmp_path):
    files = synthetic_files(n_per_batch=4, n_test=4)
    files["batches.meta"] = pickle.dumps({b"label_names": list(range(10))}, protocol=2)
    with pytest.raises(ValueError, match="label names must be strings"):
        load_cifar10(tmp_path / "d", write_archive(tmp_path / "n.tar.gz", files), download=False)


# --- checkpoints that are not what minivit writes -------------------------------------------
@pytest.mark.parametrize("content", [b"just some text\n", b"\x89PNG\r\n\x1a\n" + b"\0" * 64,
                                     gzip.compress(b"a tarball, maybe")])
def test_evaluate_on_a_file_that_is_not_a_checkpoint(tmp_path, capsys, content):
    path = tmp_path / "x.npz"
    path.write_bytes(content)
    assert evaluate_cli.main([str(path), "--data-dir", str(tmp_path / "data")]) == 2
    line = one_error_line(capsys.readouterr().err)
    assert "is not a minivit checkpoint" in line and "pickle" not in line


def test_checkpoint_metadata_that_minivit_did_not_write(tmp_path, archive, capsys):
    weights = ViT(embed_dim=16, depth=1, num_heads=2).state_dict()
    listed = tmp_path / "list.npz"
    np.savez(listed, meta=np.asarray(json.dumps([1, 2])), **{"model/" + k: v for k, v in weights.items()})
    with pytest.raises(ValueError, match="not a minivit checkpoint"):
        load_checkpoint(listed)
    bare = save_checkpoint(tmp_path / "bare.npz", weights, meta={"epoch": 3})   # no config
    assert evaluate_cli.main([str(bare), "--data-dir", str(tmp_path / "data")]) == 2
    assert "no training configuration" in one_error_line(capsys.readouterr().err)
    assert run(["--resume", str(bare)], tmp_path / "data", archive) == 2
    assert "not a checkpoint written by python -m minivit.train" in one_error_line(capsys.readouterr().err)


# --- from Python ------------------------------------------------------------------------------
@pytest.mark.parametrize("kwargs, match", [
    (dict(patch_size=0), "patch_size must be an integer >= 1"),
    (dict(mlp_ratio=0), "mlp_ratio must be a number > 0"),
    (dict(depth=-1), "depth must be an integer >= 0"),
    (dict(embed_dim=0), "embed_dim must be an integer >= 1"),
    (dict(num_heads=0), "num_heads must be an integer >= 1"),
    (dict(num_classes=0), "num_classes must be an integer >= 1"),
    (dict(patch_size=2.5), "patch_size must be an integer"),
])
def test_vit_refuses_impossible_shapes(kwargs, match):
    with pytest.raises(ValueError, match=match):
        ViT(**kwargs)


def test_backward_before_forward_says_what_to_do():
    with pytest.raises(RuntimeError, match="call model\\(x\\) first"):
        ViT(embed_dim=16, depth=1, num_heads=2).backward(np.zeros((1, 10), np.float32))


def test_load_state_dict_refuses_non_mappings_and_non_finite_weights():
    model = ViT(embed_dim=16, depth=1, num_heads=2)
    with pytest.raises(TypeError, match="expects a mapping"):
        model.load_state_dict(list(model.state_dict().items()))
    before = model.state_dict()
    bad = dict(before, **{"head.weight": np.full_like(before["head.weight"], np.nan)})
    with pytest.raises(ValueError, match="NaN or infinite values in head.weight"):
        model.load_state_dict(bad)
    assert all(np.array_equal(before[k], v) for k, v in model.state_dict().items())   # unchanged


def test_torch_tensor_input_runs_like_numpy():
    torch = pytest.importorskip("torch")
    model = ViT(embed_dim=16, depth=1, num_heads=2).eval()
    x = np.random.default_rng(0).standard_normal((2, 3, 32, 32)).astype(np.float32)
    assert np.array_equal(model(torch.from_numpy(x)), model(x))
    with pytest.raises(ValueError, match="detach"):
        model(torch.from_numpy(x).requires_grad_())


# --- the commands' help -------------------------------------------------------------------------
def test_train_help_gives_every_flag_a_line_and_the_preset_values(capsys):
    with pytest.raises(SystemExit):
        train_cli.main(["cifar10", "--help"])
    text = capsys.readouterr().out
    assert "(default: None)" not in text and "(default: True)" not in text
    parser = train_cli.build_parser()
    for action in parser._actions:
        assert action.help, f"{action.option_strings or action.dest} has no help"
    for key, _ in train_cli.HYPER_FLAGS:
        help_line = next(a.help for a in parser._actions if a.dest == key)
        assert f"cpu: {train_cli.PRESETS['cpu'][key]}" in help_line
    assert "cpu: 0.001, gpu: 0.001" in " ".join(text.split())        # the preset's --lr


def test_evaluate_help_reads_as_a_sentence(capsys):
    with pytest.raises(SystemExit):
        evaluate_cli.main(["--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "Evaluate a checkpoint written by python -m minivit.train on the CIFAR-10 test set" in text
    assert "(default: None)" not in text and "never download" in text
