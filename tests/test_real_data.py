"""On the real CIFAR-10 (only when MINIVIT_DATA holds it; .ci/run points it at ../shared/data):
a tiny ViT trained for one short epoch on 5,000 real images beats 30% test accuracy."""
import json
import os
from pathlib import Path

import pytest

from minivit import train as train_cli

DATA = os.environ.get("MINIVIT_DATA")
HAVE = bool(DATA) and ((Path(DATA) / "cifar-10-python.tar.gz").exists()
                       or (Path(DATA) / "cifar-10-batches-py").is_dir())
pytestmark = pytest.mark.skipif(not HAVE, reason="MINIVIT_DATA does not hold CIFAR-10")


def test_tiny_vit_one_epoch_on_5000_real_images(tmp_path):
    out = tmp_path / "run"
    code = train_cli.main(["cifar10", "--no-download", "--limit-train", "5000", "--limit-test", "2000",
                           "--epochs", "1", "--batch-size", "16", "--lr", "1e-3", "--warmup-epochs", "0.1",
                           "--crop-pad", "0", "--no-hflip",
                           "--patch-size", "8", "--embed-dim", "96", "--depth", "2", "--num-heads", "4",
                           "--mlp-ratio", "2", "--global-pool", "avg",
                           "--label-smoothing", "0", "--out", str(out), "--no-progress"])
    assert code == 0
    rec = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()][-1]
    assert rec["type"] == "epoch" and rec["test_acc"] > 0.30, rec
