"""A tiny stand-in for the CIFAR-10 archive, for tests and offline demos.

Same layout and pickle format as the official `cifar-10-python.tar.gz` (a
`cifar-10-batches-py/` folder of protocol-2 pickles with bytes keys), so it goes through
exactly the code path of the real file. Every class has its own mean colour and stripe
orientation, plus noise, so a model trained on it for a few steps does better than chance.
"""
import gzip
import io
import pickle
import tarfile
from pathlib import Path

import numpy as np

from .cifar10 import FOLDER, TRAIN_BATCHES

LABEL_NAMES = ("airplane", "automobile", "bird", "cat", "deer",
               "dog", "frog", "horse", "ship", "truck")


def _images(labels, rng):
    """uint8 (n, 3072): class colour + class-oriented stripes + noise."""
    colours = np.linspace(40, 215, 10)[[3, 7, 1, 9, 5, 0, 8, 2, 6, 4]]  # fixed per class
    colour = np.stack([colours[labels], colours[(labels + 3) % 10],
                       colours[(labels + 6) % 10]], axis=1)            # (n, 3)
    yy, xx = np.mgrid[0:32, 0:32]
    angle = labels[:, None, None] * np.pi / 10
    stripes = 40 * np.sin((np.cos(angle) * xx + np.sin(angle) * yy) * 0.8)  # (n, 32, 32)
    img = colour[:, :, None, None] + stripes[:, None] + rng.normal(0, 20, (len(labels), 3, 32, 32))
    return np.clip(img, 0, 255).astype(np.uint8).reshape(len(labels), -1)


def _batch(name, n, rng):
    labels = rng.permutation(np.arange(n) % 10)  # every class present when n >= 10
    return pickle.dumps({
        b"batch_label": name.encode(),
        b"labels": labels.tolist(),
        b"data": _images(labels, rng),
        b"filenames": [f"synthetic_{i:05d}.png".encode() for i in range(n)],
    }, protocol=2)


def synthetic_files(n_per_batch=20, n_test=20, seed=0):
    """{file name: pickled bytes} for the seven files of the official folder."""
    rng = np.random.default_rng(seed)
    files = {name: _batch(f"training batch {i} of 5", n_per_batch, rng)
             for i, name in enumerate(TRAIN_BATCHES, 1)}
    files["test_batch"] = _batch("testing batch 1 of 1", n_test, rng)
    files["batches.meta"] = pickle.dumps({
        b"num_cases_per_batch": n_per_batch,
        b"label_names": [n.encode() for n in LABEL_NAMES],
        b"num_vis": 3072,
    }, protocol=2)
    return files


def write_archive(path, files, folder=FOLDER):
    """Write {name: bytes} as `<folder>/<name>` into a .tar.gz. Fixed mtimes make the bytes
    (and so the md5) depend only on the contents."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as raw, gzip.GzipFile("", "wb", fileobj=raw, mtime=0) as gz, \
            tarfile.open(fileobj=gz, mode="w", format=tarfile.GNU_FORMAT) as tar:
        info = tarfile.TarInfo(folder)
        info.type, info.mode = tarfile.DIRTYPE, 0o755
        tar.addfile(info)
        for name, blob in files.items():
            info = tarfile.TarInfo(f"{folder}/{name}")
            info.size, info.mode = len(blob), 0o644
            tar.addfile(info, io.BytesIO(blob))
    return path


def make_synthetic_archive(path, n_per_batch=20, n_test=20, seed=0):
    """Write a small CIFAR-10-format archive to `path` and return `path`."""
    return write_archive(path, synthetic_files(n_per_batch, n_test, seed))
