"""Train a ViT on CIFAR-10:  python -m minivit.train cifar10 [--preset cpu|gpu] [options]

Writes to --out: config.json, metrics.jsonl (one record per epoch and every --log-every
steps), last.npz and best.npz checkpoints (atomic), curves.png (if matplotlib is there).
All randomness is derived from (seed, epoch, step): data order and augmentation from
(seed, epoch, batch), dropout masks from (seed, step), so `--resume` continues exactly as
if the run had never stopped. Ctrl-C saves a checkpoint and exits; a second Ctrl-C
aborts at once.
"""
import argparse
import json
import math
import signal
import sys
import time
import warnings
from pathlib import Path

from tqdm.auto import tqdm

from .backend import set_device, synchronize, to_device, xp_for
from .checkpoint import load_checkpoint, save_checkpoint
from .cli import USER_ERRORS, cli_warnings, error
from .config import HELP, PRESETS, RUN_DEFAULTS, flag, make_model, setting, validate_config
from .data import Augment, Loader, fingerprint, load_cifar10
from .data_parallel import DataParallel
from .evaluate import evaluate
from .kernels import KERNELS
from .nn import device_rng
from .optim import AdamW, clip_grad_norm, cosine_lr

# flags that only say where/how to run, allowed together with --resume
RUNTIME_KEYS = ("device", "kernels", "data_dir", "data_archive", "download", "progress", "resume",
                "preset", "dataset", "out")
# hyper-parameter flags in the order --help lists them, with their types
HYPER_FLAGS = (("epochs", int), ("batch_size", int), ("lr", float), ("min_lr", float),
               ("weight_decay", float), ("warmup_epochs", float), ("label_smoothing", float),
               ("clip_grad", float), ("patch_size", int), ("embed_dim", int), ("depth", int),
               ("num_heads", int), ("mlp_ratio", float), ("drop_rate", float),
               ("attn_drop_rate", float), ("drop_path", float), ("crop_pad", int),
               ("mixup", float), ("cutmix", float), ("mix_prob", float), ("eval_every", int))


def _preset_values(key):
    return ", ".join(f"{name}: {c[key]}" for name, c in PRESETS.items())


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m minivit.train",
        description="Train a Vision Transformer from scratch on CIFAR-10 (NumPy or CuPy). "
                    "Every hyper-parameter starts at the chosen preset's value; a flag overrides it.")
    p.add_argument("dataset", choices=["cifar10"], help="the dataset (only cifar10)")
    p.add_argument("--preset", choices=list(PRESETS), default="cpu",
                   help="the recipe every hyper-parameter starts from (default: cpu, sized for a "
                        "2-core laptop; gpu: a DeiT-style recipe)")
    g = p.add_argument_group("run")
    g.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where to compute: cpu (NumPy) or cuda (CuPy) (default: cpu)")
    g.add_argument("--kernels", choices=KERNELS, default="auto",
                   help="the ops that compute the model: 'reference' (minivit/ops, the math), "
                        "'fast' (minivit/fast, CPU only) or 'auto' (fast on the CPU when present; "
                        "the default); the results are the same to round-off")
    g.add_argument("--seed", type=int, default=None,
                   help=f"seed of all randomness: weights, data order, augmentation, dropout "
                        f"(default: {RUN_DEFAULTS['seed']})")
    g.add_argument("--out", type=Path, default=None,
                   help="output directory (default: runs/cifar10-<preset>-<date>-<time>)")
    g.add_argument("--resume", type=Path, default=None,
                   help="continue a run exactly: its directory or a checkpoint file in it")
    g.add_argument("--limit-train", type=int, default=None,
                   help="train on the first N training images only (default: all 50,000)")
    g.add_argument("--limit-test", type=int, default=None,
                   help="evaluate on the first N test images only (default: all 10,000)")
    g.add_argument("--val-split", type=int, default=None, metavar="N",
                   help="hold out the last N training images (after --limit-train) as a "
                        "validation set, evaluated with the test set; best.npz is then the epoch "
                        "of the best validation accuracy (default: 0, no validation set: best.npz "
                        "is chosen by test accuracy, so its test accuracy is optimistic)")
    g.add_argument("--log-every", type=int, default=None,
                   help=f"steps between step records in metrics.jsonl (default: {RUN_DEFAULTS['log_every']})")
    g.add_argument("--eval-batch-size", type=int, default=None,
                   help=f"images per batch when evaluating (default: {RUN_DEFAULTS['eval_batch_size']})")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars, only one summary line per epoch")
    d = p.add_argument_group("data")
    d.add_argument("--data-dir", type=Path, default=None,
                   help="where CIFAR-10 is cached (default: $MINIVIT_DATA, else "
                        "$XDG_CACHE_HOME/minivit, else ~/.cache/minivit)")
    d.add_argument("--data-archive", type=Path, default=None,
                   help="a local cifar-10-python.tar.gz to use instead of downloading")
    d.add_argument("--no-download", dest="download", action="store_false",
                   help="never download; fail with a message when CIFAR-10 is not found locally")
    h = p.add_argument_group("hyper-parameters (each shows the value of every preset)")
    for key, typ in HYPER_FLAGS:
        h.add_argument(flag(key), type=typ, default=None, metavar=key.split("_")[-1].upper(),
                       help=f"{HELP[key]} ({_preset_values(key)})")
    h.add_argument("--global-pool", choices=["token", "avg"], default=None,
                   help=f"{HELP['global_pool']} ({_preset_values('global_pool')})")
    h.add_argument("--head", choices=["linear", "mlp"], default=None,
                   help=f"{HELP['head']} ({_preset_values('head')})")
    h.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None,
                   help=f"{HELP['hflip']} ({_preset_values('hflip')})")
    h.add_argument("--fc-norm", action=argparse.BooleanOptionalAction, default=None,
                   help=f"{HELP['fc_norm']} ({_preset_values('fc_norm')})")
    return p


def resolve_config(args):
    """The preset, overridden by every flag that was given, checked (ValueError naming the
    flag). A preset's warm-up is a share of its schedule: given only --epochs, the warm-up
    keeps that share, so a short run still warms up, peaks and decays."""
    preset = PRESETS[args.preset]
    cfg = dict(preset, dataset=args.dataset, preset=args.preset, **RUN_DEFAULTS)
    for k, v in vars(args).items():
        if k in cfg and v is not None and k not in ("dataset", "preset"):
            cfg[k] = v
    if args.epochs is not None and args.warmup_epochs is None and isinstance(args.epochs, int):
        cfg["warmup_epochs"] = preset["warmup_epochs"] * args.epochs / preset["epochs"]
    return validate_config(cfg)


def make_loaders(cfg, data):
    x_tr, y_tr, x_te, y_te = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    if cfg["limit_train"] is not None:
        x_tr, y_tr = x_tr[:cfg["limit_train"]], y_tr[:cfg["limit_train"]]
    if cfg["limit_test"] is not None:
        x_te, y_te = x_te[:cfg["limit_test"]], y_te[:cfg["limit_test"]]
    n_val = setting(cfg, "val_split")
    if n_val >= len(x_tr):
        raise ValueError(f"--val-split {n_val} leaves no training images (there are {len(x_tr)}); "
                         "hold out fewer")
    cut = len(x_tr) - n_val
    x_tr, y_tr, x_val, y_val = x_tr[:cut], y_tr[:cut], x_tr[cut:], y_tr[cut:]
    aug = Augment(crop_pad=cfg["crop_pad"], hflip=cfg["hflip"], mixup_alpha=cfg["mixup"],
                  cutmix_alpha=cfg["cutmix"], mix_prob=cfg["mix_prob"])
    train = Loader(x_tr, y_tr, cfg["batch_size"], shuffle=True, seed=cfg["seed"], augment=aug,
                   drop_last=len(x_tr) >= 2 * cfg["batch_size"])
    test = Loader(x_te, y_te, cfg["eval_batch_size"], shuffle=False, prefetch=True)
    val = Loader(x_val, y_val, cfg["eval_batch_size"], shuffle=False, prefetch=True) if n_val else None
    return train, test, val


class _Interrupt:
    """First Ctrl-C: set a flag the loop checks between steps (never mid-update).
    Second Ctrl-C: the default behaviour (KeyboardInterrupt at once)."""

    def __init__(self):
        self.requested = False

    def __enter__(self):
        self.old = signal.signal(signal.SIGINT, self._handler)
        return self

    def _handler(self, signum, frame):
        if self.requested:
            raise KeyboardInterrupt
        self.requested = True
        tqdm.write("\nCtrl-C: finishing this step and saving a checkpoint (Ctrl-C again to abort)")

    def __exit__(self, *exc):
        signal.signal(signal.SIGINT, self.old)


def _write_metrics(path, records):
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(json.dumps(r) + "\n" for r in records))
    tmp.replace(path)


def _remove_stale_temporaries(out):
    """Checkpoint and metrics files half-written by a killed run (never renamed into place)."""
    for tmp in [*out.glob("*.npz.*.tmp"), out / "metrics.jsonl.tmp"]:
        tmp.unlink(missing_ok=True)


def train(cfg, out, device="cpu", data=None, resume=None, progress=True, kernels="auto", *,
          data_info=None, resume_hint=None):
    """Run (or continue) training; returns (metric records, exit code: 0, or 130 if stopped).
    `data_info` (where the data came from, its fingerprint) is stored in every checkpoint so
    that a resume can check it; `resume_hint` is the command printed to continue the run."""
    xp = xp_for(device)
    train_loader, test_loader, val_loader = make_loaders(cfg, data)   # may refuse the split
    out.mkdir(parents=True, exist_ok=True)
    _remove_stale_temporaries(out)
    resume_hint = resume_hint or f"python -m minivit.train cifar10 --resume {out}"
    model = make_model(cfg, device, kernels)
    dp = DataParallel(model)            # the batch split over the CPU cores (as is on a GPU)
    opt = AdamW(model.named_parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    chooser = "validation" if val_loader else "test"      # what best.npz is chosen by
    steps_per_epoch = len(train_loader)
    total_steps = cfg["epochs"] * steps_per_epoch
    warmup_steps = min(round(cfg["warmup_epochs"] * steps_per_epoch), total_steps)
    eval_every = setting(cfg, "eval_every")
    metrics_path = out / "metrics.jsonl"

    epoch, start, step, best_acc, records = 0, 0, 0, -1.0, []
    partial = {"loss": 0.0, "correct": 0.0, "seen": 0, "time": 0.0, "data_time": 0.0}
    if resume is not None:
        model_state, optim_state, meta = resume
        model.load_state_dict(model_state)
        opt.load_state_dict(optim_state)
        epoch, start, step = meta["epoch"], meta["batch_in_epoch"], meta["step"]
        best_acc, partial = meta["best_acc"], meta["partial"]
        if metrics_path.exists():   # drop what was logged after this checkpoint
            records = [json.loads(line) for line in metrics_path.read_text().splitlines() if line]
            records = [r for r in records if r["step"] <= step
                       and not (r["type"] == "epoch" and r["epoch"] >= epoch)]
        tqdm.write(f"resuming at epoch {epoch + 1}, step {step} (best {chooser} acc so far {best_acc:.4f})")
    else:
        (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    _write_metrics(metrics_path, records)

    def meta(epoch, batch_in_epoch):
        return dict(config=cfg, epoch=epoch, batch_in_epoch=batch_in_epoch, step=step,
                    best_acc=best_acc, partial=partial, rng="derived from (seed, epoch, step)",
                    data=data_info)

    def stop(what):
        raise FloatingPointError(
            f"{what} at epoch {epoch + 1}, step {step}: training stopped. The last good "
            f"checkpoint is {out / 'last.npz'} (if any). Try a lower --lr, --clip-grad 1.0 or "
            "more --warmup-epochs.")

    def checkpoint(name, epoch, batch_in_epoch):
        if not all(bool(xp.isfinite(p.data).all()) for _, p in model.named_parameters()):
            stop("the weights became NaN or infinite")     # never save them over good ones
        save_checkpoint(out / name, model.state_dict(), opt.state_dict(), meta(epoch, batch_in_epoch))

    log = metrics_path.open("a")
    try:
        with _Interrupt() as interrupt:
            while epoch < cfg["epochs"]:
                model.train()
                train_loader.set_epoch(epoch, start)
                bar = tqdm(total=steps_per_epoch, initial=start, desc=f"epoch {epoch + 1}/{cfg['epochs']}",
                           disable=not progress, leave=False, dynamic_ncols=True)
                t_wait = time.perf_counter()
                for xb, yb in train_loader:
                    t0 = time.perf_counter()
                    partial["data_time"] += t0 - t_wait
                    x, y = to_device(xb, device), to_device(yb, device)   # one transfer per batch
                    opt.lr = cosine_lr(step, total_steps, cfg["lr"], warmup_steps, cfg["min_lr"])
                    model.rng = device_rng([cfg["seed"], 1, step], x)   # dropout masks
                    model.zero_grad()
                    loss, logits = dp.forward_backward(x, y, cfg["label_smoothing"])
                    loss = float(loss)
                    if not math.isfinite(loss):    # before the update: the weights stay good
                        stop(f"the loss became {loss}")
                    if cfg["clip_grad"]:
                        clip_grad_norm(model.named_parameters(), cfg["clip_grad"])
                    opt.step()
                    labels = y if y.ndim == 1 else y.argmax(1)
                    correct = float((logits.argmax(1) == labels).sum())
                    synchronize(xp)
                    t_wait = time.perf_counter()
                    n = len(xb)
                    step, start = step + 1, start + 1
                    partial["loss"] += loss * n
                    partial["correct"] += correct
                    partial["seen"] += n
                    partial["time"] += t_wait - t0
                    ips = n / max(t_wait - t0, 1e-9)
                    bar.set_postfix(loss=f"{loss:.3f}", acc=f"{correct / n:.3f}",
                                    lr=f"{opt.lr:.2e}", img_s=f"{ips:.0f}")
                    bar.update(1)
                    if step % cfg["log_every"] == 0:
                        rec = dict(type="step", epoch=epoch, step=step, loss=loss, acc=correct / n,
                                   lr=opt.lr, images_per_s=ips)
                        records.append(rec)
                        log.write(json.dumps(rec) + "\n")
                        log.flush()
                    if interrupt.requested:
                        break
                bar.close()
                if interrupt.requested and start < steps_per_epoch:
                    checkpoint("last.npz", epoch, start)
                    tqdm.write(f"saved {out / 'last.npz'} (epoch {epoch + 1}, step {step}); "
                               f"continue with: {resume_hint}")
                    return records, 130
                seen = max(partial["seen"], 1)
                busy = partial["time"] + partial["data_time"]
                rec = dict(type="epoch", epoch=epoch, step=step, train_loss=partial["loss"] / seen,
                           train_acc=partial["correct"] / seen, lr=opt.lr, time=busy,
                           images_per_s=partial["seen"] / max(partial["time"], 1e-9),
                           data_wait_fraction=partial["data_time"] / max(busy, 1e-9))
                tested = (epoch + 1) % eval_every == 0 or epoch + 1 == cfg["epochs"]
                summary = f"test not evaluated (every {eval_every} epochs)"
                if tested:
                    test_loss, test_acc, _ = evaluate(dp, test_loader, device)
                    if not math.isfinite(test_loss):
                        stop(f"the test loss became {test_loss}")
                    rec.update(test_loss=test_loss, test_acc=test_acc)
                    summary = f"test loss {test_loss:.4f} acc {test_acc:.4f}"
                    chosen_by = test_acc
                    if val_loader is not None:
                        val_loss, val_acc, _ = evaluate(dp, val_loader, device)
                        if not math.isfinite(val_loss):
                            stop(f"the validation loss became {val_loss}")
                        rec.update(val_loss=val_loss, val_acc=val_acc)
                        summary += f" | val acc {val_acc:.4f}"
                        chosen_by = val_acc
                records.append(rec)
                log.write(json.dumps(rec) + "\n")
                log.flush()
                tqdm.write(f"epoch {epoch + 1:3d}/{cfg['epochs']}  train loss {rec['train_loss']:.4f} "
                           f"acc {rec['train_acc']:.4f} | {summary} | {busy:.0f}s, "
                           f"{rec['images_per_s']:.0f} img/s")
                epoch, start = epoch + 1, 0
                partial = {"loss": 0.0, "correct": 0.0, "seen": 0, "time": 0.0, "data_time": 0.0}
                if tested and chosen_by > best_acc:
                    best_acc = chosen_by
                    checkpoint("best.npz", epoch, 0)
                checkpoint("last.npz", epoch, 0)
                _plot(records, out)
                if interrupt.requested:
                    tqdm.write(f"stopped after epoch {epoch}; continue with: {resume_hint}")
                    return records, 130
    finally:
        log.close()
    return records, 0


def _plot(records, out):
    try:
        from .plot import plot_curves
    except ImportError:      # matplotlib is optional
        return
    plot_curves(records, out / "curves.png")


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    with cli_warnings():
        return _main(args)


def resume_command(out, args):
    """The command that continues this run, with the data and device flags it needs."""
    parts = ["python -m minivit.train cifar10 --resume", str(out)]
    for key in ("data_dir", "data_archive"):
        if getattr(args, key) is not None:
            parts += [flag(key), str(getattr(args, key))]
    if args.device != "cpu":
        parts += ["--device", args.device]
    return " ".join(parts)


RESUME_META = ("config", "epoch", "batch_in_epoch", "step", "best_acc", "partial")


def _load_resume(path):
    """(checkpoint, its config, the run directory), every promise of a resume checked."""
    model_state, optim_state, meta = load_checkpoint(path)
    missing = [k for k in RESUME_META if k not in meta]
    if missing:
        raise ValueError(f"{path} has no {', '.join(missing)} in its metadata: it is not a "
                         "checkpoint written by python -m minivit.train, so it cannot be resumed")
    try:
        cfg = validate_config(meta["config"])
    except ValueError as e:
        raise ValueError(f"{path}: its configuration is invalid ({e})") from None
    out = path if path.is_dir() else path.parent
    saved = out / "config.json"
    if saved.is_file():
        try:
            run_cfg = json.loads(saved.read_text())
        except (ValueError, UnicodeDecodeError) as e:
            raise ValueError(f"{saved} is not valid JSON ({e}); restore it or start a new run") from None
        if run_cfg != cfg:
            diff = sorted(k for k in set(cfg) | set(run_cfg) if cfg.get(k) != run_cfg.get(k))
            raise ValueError(
                f"the checkpoint does not belong to this run: {saved} and the checkpoint differ in "
                + ", ".join(f"{k} ({run_cfg.get(k)!r} vs {cfg.get(k)!r})" for k in diff)
                + ". Resume from a checkpoint this run wrote, or start a new run with --out")
    return (model_state, optim_state, meta), cfg, out


def _check_same_data(meta, data_info, args):
    saved = meta.get("data")
    if saved is None:
        warnings.warn("this checkpoint does not record its training data (written by an older "
                      "minivit); make sure you resume on the same data")
    elif saved["fingerprint"] != data_info["fingerprint"]:
        raise ValueError(
            f"this run was trained on the CIFAR-10 copy at {saved['source']} (fingerprint "
            f"{saved['fingerprint'][:12]}), but the data found now at {data_info['source']} is "
            f"different (fingerprint {data_info['fingerprint'][:12]}). Resume with the run's own "
            f"data: {flag('data_dir')} {saved['data_dir'] or '(the default)'}"
            + (f" {flag('data_archive')} {saved['data_archive']}" if saved["data_archive"] else ""))


def _main(args):
    try:
        set_device(args.device)
        resume = None
        if args.resume is not None:
            given = [k for k, v in vars(args).items() if v is not None and k not in RUNTIME_KEYS]
            if given:
                return error("--resume continues a run with its saved configuration; drop "
                             + ", ".join(flag(k) for k in given))
            resume, cfg, out = _load_resume(args.resume)
            if args.out is not None and args.out.resolve() != out.resolve():
                return error(f"--resume writes into the run's own directory {out}; drop --out")
        else:
            cfg = resolve_config(args)      # every value checked before data or disk is touched
            out = args.out or Path("runs") / f"cifar10-{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
            if out.exists() and not out.is_dir():
                return error(f"--out {out} is a file, not a directory; choose another --out")
            if (out / "last.npz").exists() or (out / "best.npz").exists():
                return error(f"{out} already holds a run; continue it with --resume {out} "
                             "or choose another --out")
        data = load_cifar10(args.data_dir, args.data_archive, download=args.download,
                            progress=args.progress)
        data_info = dict(source=data["source"], fingerprint=fingerprint(data),
                         data_dir=args.data_dir and str(args.data_dir),
                         data_archive=args.data_archive and str(args.data_archive))
        if resume is not None:
            _check_same_data(resume[2], data_info, args)
        print(f"minivit: {cfg['preset']} preset on {args.device}, output in {out}")
        records, code = train(cfg, out, args.device, data, resume, args.progress, args.kernels,
                              data_info=data_info, resume_hint=resume_command(out, args))
    except FloatingPointError as e:
        print(f"error: {e}", file=sys.stderr)
        return 1
    except USER_ERRORS as e:
        return error(e)
    if code == 0 and records:
        ep = [r for r in records if r["type"] == "epoch" and "test_acc" in r]
        key = "val_acc" if "val_acc" in ep[-1] else "test_acc"
        best = max(ep, key=lambda r: r[key])
        print(f"done: test accuracy {ep[-1]['test_acc']:.4f} (last.npz); best.npz is epoch "
              f"{best['epoch'] + 1}, {key.replace('_acc', '')} accuracy {best[key]:.4f}; "
              f"checkpoints in {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
