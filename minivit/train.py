"""Train a ViT on CIFAR-10:  python -m minivit.train cifar10 [--preset cpu|gpu] [options]

Writes to --out: config.json, metrics.jsonl (one record per epoch and every --log-every
steps), last.npz and best.npz checkpoints (atomic), curves.png (if matplotlib is there).
All randomness is derived from (seed, epoch, step): data order and augmentation from
(seed, epoch, batch), dropout masks from (seed, step), so `--resume` continues exactly as
if the run had never stopped. Ctrl-C saves a checkpoint and exits; a second Ctrl-C
aborts at once.
"""
import argparse
import contextlib
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
from .data import Augment, Loader, load_cifar10
from .data_parallel import DataParallel
from .evaluate import evaluate
from .kernels import KERNELS
from .model import ViT
from .nn import device_rng
from .optim import AdamW, clip_grad_norm, cosine_lr

# Every hyper-parameter, with the value of each preset. 'cpu' is sized for a 2-core laptop
# (see README for the time and accuracy it reaches): under a 2-hour budget a small ViT
# underfits, so it trains longer with light augmentation and average-pools the patch tokens
# (Beyer et al. 2022, "Better plain ViT baselines": GAP learns faster than [CLS]).
# 'gpu' is a DeiT-style recipe.
PRESETS = {
    "cpu": dict(patch_size=4, embed_dim=128, depth=6, num_heads=4, mlp_ratio=2.0,
                drop_rate=0.0, attn_drop_rate=0.0, drop_path=0.0, global_pool="avg",
                head="linear", fc_norm=False, epochs=21, batch_size=128, lr=1e-3, min_lr=1e-5,
                weight_decay=0.05, warmup_epochs=2, label_smoothing=0.1, clip_grad=None,
                crop_pad=4, hflip=True, mixup=0.0, cutmix=0.0, mix_prob=1.0),
    "gpu": dict(patch_size=4, embed_dim=384, depth=7, num_heads=12, mlp_ratio=2.0,
                drop_rate=0.0, attn_drop_rate=0.0, drop_path=0.1, global_pool="token",
                head="linear", fc_norm=False, epochs=200, batch_size=256, lr=1e-3, min_lr=1e-5,
                weight_decay=0.05, warmup_epochs=10, label_smoothing=0.1, clip_grad=None,
                crop_pad=4, hflip=True, mixup=0.8, cutmix=1.0, mix_prob=1.0),
}
MODEL_KEYS = ("patch_size", "embed_dim", "depth", "num_heads", "mlp_ratio", "drop_rate",
              "attn_drop_rate", "global_pool", "head", "fc_norm")
# flags that only say where/how to run, allowed together with --resume
RUNTIME_KEYS = ("device", "kernels", "data_dir", "data_archive", "download", "progress", "resume",
                "preset", "dataset")
DEFAULT_SEED = 0


def build_parser():
    p = argparse.ArgumentParser(
        prog="python -m minivit.train",
        description="Train a Vision Transformer from scratch on CIFAR-10 (NumPy or CuPy).",
        epilog="Presets: " + "; ".join(
            f"{name}: dim {c['embed_dim']}, depth {c['depth']}, heads {c['num_heads']}, "
            f"{c['epochs']} epochs" for name, c in PRESETS.items()),
        formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("dataset", choices=["cifar10"])
    p.add_argument("--preset", choices=list(PRESETS), default="cpu",
                   help="starting values of every hyper-parameter below")
    g = p.add_argument_group("run")
    g.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    g.add_argument("--kernels", choices=KERNELS, default="auto",
                   help="the ops that compute the model: 'reference' (minivit/ops, the math), "
                        "'fast' (minivit/fast, CPU only) or 'auto' (fast on the CPU when present); "
                        "the results are the same to round-off")
    g.add_argument("--seed", type=int, default=None, help=f"(default {DEFAULT_SEED})")
    g.add_argument("--out", type=Path, default=None,
                   help="output directory (default runs/cifar10-<preset>-<time>)")
    g.add_argument("--resume", type=Path, default=None,
                   help="continue a run: its directory or a checkpoint file")
    g.add_argument("--limit-train", type=int, default=None, help="use the first N training images")
    g.add_argument("--limit-test", type=int, default=None, help="use the first N test images")
    g.add_argument("--log-every", type=int, default=None, help="steps between metric records (50)")
    g.add_argument("--eval-batch-size", type=int, default=None, help="(500)")
    g.add_argument("--no-progress", dest="progress", action="store_false",
                   help="no progress bars (summary lines only)")
    d = p.add_argument_group("data")
    d.add_argument("--data-dir", type=Path, default=None,
                   help="default: $MINIVIT_DATA, else $XDG_CACHE_HOME/minivit, else ~/.cache/minivit")
    d.add_argument("--data-archive", type=Path, default=None,
                   help="a local cifar-10-python.tar.gz to use instead of downloading")
    d.add_argument("--no-download", dest="download", action="store_false")
    h = p.add_argument_group("hyper-parameters (default: the preset's)")
    for key, typ in (("epochs", int), ("batch_size", int), ("lr", float), ("min_lr", float),
                     ("weight_decay", float), ("warmup_epochs", float), ("label_smoothing", float),
                     ("clip_grad", float), ("patch_size", int), ("embed_dim", int),
                     ("depth", int), ("num_heads", int), ("mlp_ratio", float),
                     ("drop_rate", float), ("attn_drop_rate", float), ("drop_path", float),
                     ("crop_pad", int), ("mixup", float), ("cutmix", float), ("mix_prob", float)):
        h.add_argument("--" + key.replace("_", "-"), type=typ, default=None)
    h.add_argument("--global-pool", choices=["token", "avg"], default=None)
    h.add_argument("--head", choices=["linear", "mlp"], default=None)
    h.add_argument("--fc-norm", action=argparse.BooleanOptionalAction, default=None,
                   help="apply the final LayerNorm after pooling (timm's fc_norm, its layout "
                        "for --global-pool avg) instead of before it; off in both presets")
    h.add_argument("--hflip", action=argparse.BooleanOptionalAction, default=None)
    return p


def resolve_config(args):
    """The preset, overridden by every flag that was given."""
    cfg = dict(PRESETS[args.preset])
    cfg.update(dataset=args.dataset, preset=args.preset, seed=DEFAULT_SEED, limit_train=None,
               limit_test=None, log_every=50, eval_batch_size=500)
    for k, v in vars(args).items():
        if k in cfg and v is not None and k not in ("dataset", "preset"):
            cfg[k] = v
    checks = [("epochs", cfg["epochs"] >= 1), ("batch_size", cfg["batch_size"] >= 1),
              ("lr", cfg["lr"] > 0), ("log_every", cfg["log_every"] >= 1),
              ("label_smoothing", 0 <= cfg["label_smoothing"] < 1),
              ("warmup_epochs", cfg["warmup_epochs"] >= 0)]
    for name, ok in checks:
        if not ok:
            raise ValueError(f"--{name.replace('_', '-')} has an invalid value {cfg[name]!r}")
    return cfg


def make_model(cfg, device, kernels="auto"):
    """The ViT a config describes (errors for impossible shapes come from ViT itself)."""
    # a config saved before a key existed builds the model as it was then (ViT's default)
    model_kw = {k: cfg[k] for k in MODEL_KEYS if k in cfg}
    return ViT(img_size=32, in_chans=3, num_classes=10, drop_path_rate=cfg["drop_path"],
               seed=cfg["seed"], device=device, kernels=kernels, **model_kw)


def make_loaders(cfg, data):
    x_tr, y_tr, x_te, y_te = data["x_train"], data["y_train"], data["x_test"], data["y_test"]
    if cfg["limit_train"]:
        x_tr, y_tr = x_tr[:cfg["limit_train"]], y_tr[:cfg["limit_train"]]
    if cfg["limit_test"]:
        x_te, y_te = x_te[:cfg["limit_test"]], y_te[:cfg["limit_test"]]
    aug = Augment(crop_pad=cfg["crop_pad"], hflip=cfg["hflip"], mixup_alpha=cfg["mixup"],
                  cutmix_alpha=cfg["cutmix"], mix_prob=cfg["mix_prob"])
    train = Loader(x_tr, y_tr, cfg["batch_size"], shuffle=True, seed=cfg["seed"], augment=aug,
                   drop_last=len(x_tr) >= 2 * cfg["batch_size"])
    test = Loader(x_te, y_te, cfg["eval_batch_size"], shuffle=False, prefetch=True)
    return train, test


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


def train(cfg, out, device="cpu", data=None, resume=None, progress=True, kernels="auto"):
    """Run (or continue) training; returns (metric records, exit code: 0, or 130 if stopped)."""
    xp = xp_for(device)
    out.mkdir(parents=True, exist_ok=True)
    model = make_model(cfg, device, kernels)
    dp = DataParallel(model)            # the batch split over the CPU cores (as is on a GPU)
    opt = AdamW(model.named_parameters(), lr=cfg["lr"], weight_decay=cfg["weight_decay"])
    train_loader, test_loader = make_loaders(cfg, data)
    steps_per_epoch = len(train_loader)
    total_steps = cfg["epochs"] * steps_per_epoch
    warmup_steps = min(round(cfg["warmup_epochs"] * steps_per_epoch), total_steps)
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
        tqdm.write(f"resuming at epoch {epoch + 1}, step {step} (best test acc so far {best_acc:.4f})")
    else:
        (out / "config.json").write_text(json.dumps(cfg, indent=2) + "\n")
    _write_metrics(metrics_path, records)

    def meta(epoch, batch_in_epoch):
        return dict(config=cfg, epoch=epoch, batch_in_epoch=batch_in_epoch, step=step,
                    best_acc=best_acc, partial=partial, rng="derived from (seed, epoch, step)")

    def checkpoint(name, epoch, batch_in_epoch):
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
                        raise FloatingPointError(
                            f"the loss became {loss} at epoch {epoch + 1}, step {step}: training "
                            f"stopped. The last good checkpoint is {out / 'last.npz'} (if any). "
                            "Try a lower --lr, --clip-grad 1.0 or more --warmup-epochs.")
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
                               f"continue with: python -m minivit.train cifar10 --resume {out}")
                    return records, 130
                test_loss, test_acc, _ = evaluate(dp, test_loader, device)
                seen = max(partial["seen"], 1)
                busy = partial["time"] + partial["data_time"]
                rec = dict(type="epoch", epoch=epoch, step=step, train_loss=partial["loss"] / seen,
                           train_acc=partial["correct"] / seen, test_loss=test_loss,
                           test_acc=test_acc, lr=opt.lr, time=busy,
                           images_per_s=partial["seen"] / max(partial["time"], 1e-9),
                           data_wait_fraction=partial["data_time"] / max(busy, 1e-9))
                records.append(rec)
                log.write(json.dumps(rec) + "\n")
                log.flush()
                tqdm.write(f"epoch {epoch + 1:3d}/{cfg['epochs']}  train loss {rec['train_loss']:.4f} "
                           f"acc {rec['train_acc']:.4f} | test loss {test_loss:.4f} acc {test_acc:.4f}"
                           f" | {busy:.0f}s, {rec['images_per_s']:.0f} img/s")
                epoch, start = epoch + 1, 0
                partial = {"loss": 0.0, "correct": 0.0, "seen": 0, "time": 0.0, "data_time": 0.0}
                if test_acc > best_acc:
                    best_acc = test_acc
                    checkpoint("best.npz", epoch, 0)
                checkpoint("last.npz", epoch, 0)
                _plot(records, out)
                if interrupt.requested:
                    tqdm.write(f"stopped after epoch {epoch}; continue with --resume {out}")
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


@contextlib.contextmanager
def cli_warnings():
    """Warnings as one plain line on stderr ("warning: ..."), not Python's source echo."""
    with warnings.catch_warnings():
        warnings.simplefilter("default")
        warnings.showwarning = lambda msg, *a, **k: print(f"warning: {msg}", file=sys.stderr)
        yield


def main(argv=None):
    parser = build_parser()
    args = parser.parse_args(argv)
    with cli_warnings():
        return _main(parser, args)


def _main(parser, args):
    try:
        set_device(args.device)
        resume = None
        if args.resume is not None:
            given = [k for k, v in vars(args).items()
                     if v is not None and k not in RUNTIME_KEYS and k != "out"]
            if given:
                parser.error("--resume continues a run with its saved configuration; drop "
                             + ", ".join("--" + k.replace("_", "-") for k in given))
            resume = load_checkpoint(args.resume)
            cfg = resume[2]["config"]
            out = args.resume if args.resume.is_dir() else args.resume.parent
            if args.out is not None and args.out.resolve() != out.resolve():
                parser.error(f"--resume writes into the run's own directory {out}; drop --out")
        else:
            cfg = resolve_config(args)
            out = args.out or Path("runs") / f"cifar10-{args.preset}-{time.strftime('%Y%m%d-%H%M%S')}"
            if (out / "last.npz").exists() or (out / "best.npz").exists():
                parser.error(f"{out} already holds a run; continue it with --resume {out} "
                             "or choose another --out")
        data = load_cifar10(args.data_dir, args.data_archive, download=args.download,
                            progress=args.progress)
        print(f"minivit: {cfg['preset']} preset on {args.device}, output in {out}")
        records, code = train(cfg, out, args.device, data, resume, args.progress, args.kernels)
    except (ValueError, RuntimeError, OSError, FloatingPointError) as e:   # OSError: e.g. a read-only data dir
        print(f"error: {e}", file=sys.stderr)
        return 2 if not isinstance(e, FloatingPointError) else 1
    if code == 0 and records:
        last = [r for r in records if r["type"] == "epoch"][-1]
        print(f"done: test accuracy {last['test_acc']:.4f} (best {max(r['test_acc'] for r in records if r['type'] == 'epoch'):.4f}); "
              f"checkpoints in {out}")
    return code


if __name__ == "__main__":
    sys.exit(main())
