"""Evaluate a checkpoint on the CIFAR-10 test set:

    python -m minivit.evaluate runs/cifar10-cpu-.../last.npz

prints the test accuracy, the accuracy of every class and the confusion matrix.
"""
import argparse
import sys
from pathlib import Path

import numpy as np

from . import ops
from .backend import set_device, to_device, to_numpy
from .checkpoint import load_checkpoint
from .cli import USER_ERRORS, cli_warnings, error
from .config import make_model, validate_config
from .data import Loader, load_cifar10
from .data_parallel import DataParallel

DESCRIPTION = ("Evaluate a checkpoint written by python -m minivit.train on the CIFAR-10 test "
               "set, and print its accuracy, the accuracy of every class and the confusion matrix.")


def evaluate(model, loader, device, num_classes=10):
    """Mean loss, accuracy and confusion matrix (rows: true class, columns: predicted)."""
    model.eval()
    loader.set_epoch(0)
    total_loss, n = 0.0, 0
    confusion = np.zeros((num_classes, num_classes), dtype=np.int64)
    for xb, yb in loader:
        logits = model(to_device(xb, device))
        loss, _ = ops.cross_entropy_forward(logits, to_device(yb, device))
        pred = to_numpy(logits.argmax(1))
        np.add.at(confusion, (yb, pred), 1)
        total_loss += float(loss) * len(yb)
        n += len(yb)
    return total_loss / max(n, 1), float(np.trace(confusion)) / max(n, 1), confusion


def format_report(confusion, classes):
    total = confusion.sum()
    lines = [f"test accuracy: {np.trace(confusion) / total:.4f} ({np.trace(confusion)}/{total})", "",
             "per-class accuracy:"]
    for i, name in enumerate(classes):
        row = confusion[i].sum()
        lines.append(f"  {name:>12s}  {confusion[i, i] / max(row, 1):.4f}  ({confusion[i, i]}/{row})")
    w = max(6, len(str(confusion.max())) + 1)
    lines += ["", "confusion matrix (rows: true class, columns: predicted):",
              " " * 14 + "".join(f"{c[:w - 1]:>{w}s}" for c in classes)]
    for i, name in enumerate(classes):
        lines.append(f"  {name:>12s}" + "".join(f"{v:>{w}d}" for v in confusion[i]))
    return "\n".join(lines)


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minivit.evaluate", description=DESCRIPTION)
    p.add_argument("checkpoint", type=Path,
                   help="a checkpoint (.npz), or a run directory to evaluate its last.npz")
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu",
                   help="where to compute: cpu (NumPy) or cuda (CuPy) (default: cpu)")
    p.add_argument("--data-dir", type=Path, default=None,
                   help="where CIFAR-10 is cached (default: as for python -m minivit.train)")
    p.add_argument("--data-archive", type=Path, default=None,
                   help="a local cifar-10-python.tar.gz to use instead of downloading")
    p.add_argument("--no-download", dest="download", action="store_false",
                   help="never download; fail with a message when CIFAR-10 is not found locally")
    p.add_argument("--batch-size", type=int, default=500,
                   help="images per batch (default: 500)")
    p.add_argument("--limit-test", type=int, default=None,
                   help="evaluate on the first N test images only (default: all 10,000)")
    args = p.parse_args(argv)
    with cli_warnings():
        return _main(args)


def _main(args):
    try:
        for name in ("batch_size", "limit_test"):
            value = getattr(args, name)
            if value is not None and value < 1:
                return error(f"--{name.replace('_', '-')} must be >= 1, got {value}")
        set_device(args.device)
        model_state, _, meta = load_checkpoint(args.checkpoint)
        if "config" not in meta:
            return error(f"{args.checkpoint} has no training configuration in its metadata: it "
                         "was not written by python -m minivit.train")
        try:
            cfg = validate_config(meta["config"])
        except ValueError as e:
            return error(f"{args.checkpoint}: its configuration is invalid ({e})")
        model = make_model(cfg, args.device)
        model.load_state_dict(model_state)
        data = load_cifar10(args.data_dir, args.data_archive, download=args.download)
        x, y = data["x_test"], data["y_test"]
        if args.limit_test:
            x, y = x[:args.limit_test], y[:args.limit_test]
        _, _, confusion = evaluate(DataParallel(model), Loader(x, y, args.batch_size), args.device)
    except USER_ERRORS as e:
        return error(e)
    print(f"checkpoint: {args.checkpoint} (epoch {meta.get('epoch', '?')})")
    print(format_report(confusion, data["classes"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
