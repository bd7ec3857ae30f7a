"""What a lesson's setup cell needs, found through the library and not the working
directory, so a notebook runs wherever it is opened from: a few CIFAR-10 images, the
lessons' trained checkpoint, and the library's source to read."""
import inspect
import os
import re
from pathlib import Path
from typing import NamedTuple

import numpy as np

from ..data.cifar10 import FOLDER, default_data_dir, load_cifar10, read_batch, read_classes

CHECKPOINT_ENV = "MINIVIT_LESSONS_CHECKPOINT"
CHECKPOINT_NAME = "cifar10-cpu.npz"
# the assignment's marker lines, solution and student forms (minivit/assignment/markers.py;
# not imported: a student copy of the package leaves the assignment's tools out)
_MARKER_LINE = re.compile(r"^\s*### (BEGIN|END) (SOLUTION|YOUR\s+CODE)\b|^\s*### HINT:")


class Images(NamedTuple):
    x: np.ndarray          # uint8 (n, 3, 32, 32)
    y: np.ndarray          # int64 (n,)
    classes: list          # the 10 class names


def load_images(n, split="train", data_dir=None):
    """The first `n` images of CIFAR-10's training set (from its first batch file, at most
    10,000) or test set, without loading the other 50,000: Images(x, y, classes).

    The data is found as `minivit.data.load_cifar10` finds it ($MINIVIT_DATA, else the cache
    dir); if it is not extracted yet, load_cifar10 extracts it (or downloads it) first."""
    batch = {"train": "data_batch_1", "test": "test_batch"}.get(split)
    if batch is None:
        raise ValueError(f"split must be 'train' or 'test', got {split!r}")
    folder = default_data_dir(data_dir) / FOLDER
    if not ((folder / batch).is_file() and (folder / "batches.meta").is_file()):
        data = load_cifar10(data_dir, progress=False)
        x, y = (data["x_train"], data["y_train"]) if split == "train" else (data["x_test"], data["y_test"])
        return Images(x[:n], y[:n], data["classes"])
    x, y = read_batch(folder / batch)
    return Images(x[:n].copy(), y[:n].copy(), read_classes(folder / "batches.meta"))


def checkpoint_path(name=CHECKPOINT_NAME):
    """The lessons' trained ViT (weights only): $MINIVIT_LESSONS_CHECKPOINT if set, else
    lessons/checkpoints/<name> beside the installed package (a clone, `pip install -e .`,
    or an assignment's student copy)."""
    if os.environ.get(CHECKPOINT_ENV):
        path = Path(os.environ[CHECKPOINT_ENV]).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"${CHECKPOINT_ENV} is {path}, which is not a file")
        return path
    path = Path(__file__).resolve().parent.parent.parent / "lessons" / "checkpoints" / name
    if not path.is_file():
        raise FileNotFoundError(
            f"the lessons' checkpoint {name} is not at {path}: install minivit from a clone "
            f"(pip install -e .), or set ${CHECKPOINT_ENV} to the file's path")
    return path


def show_source(obj):
    """Print the source of a function or class as the lesson reads it: the library's
    exercise markers (### BEGIN SOLUTION, ### HINT, ### END SOLUTION) left out."""
    lines = inspect.getsource(obj).split("\n")
    print("\n".join(ln for ln in lines if not _MARKER_LINE.match(ln)).rstrip("\n"))
