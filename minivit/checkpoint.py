"""Checkpoints: one .npz file holding the model weights (timm names), the optimiser state
and a JSON record (config, epoch, step, best accuracy, ...). Loaded with
allow_pickle=False, so a checkpoint is data, never code.

Written atomically: to a temporary file in the same folder, flushed, then renamed over the
old one, so a crash or Ctrl-C mid-write never leaves a half-written checkpoint behind.
"""
import json
import os
import tempfile
import zipfile
from pathlib import Path

import numpy as np

FORMAT = "minivit-checkpoint-1"


def save_checkpoint(path, model_state, optim_state=None, meta=None):
    path = Path(path)
    arrays = {f"model/{k}": np.asarray(v) for k, v in model_state.items()}
    arrays.update({f"optim/{k}": np.asarray(v) for k, v in (optim_state or {}).items()})
    arrays["meta"] = np.asarray(json.dumps({"format": FORMAT, **(meta or {})}))
    fd, tmp = tempfile.mkstemp(prefix=path.name + ".", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "wb") as f:
            np.savez(f, **arrays)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return path


def load_checkpoint(path):
    """Returns (model_state, optim_state, meta). Any damage is a ValueError naming the file."""
    path = Path(path)
    if path.is_dir():
        path = path / "last.npz"
    if not path.is_file():
        raise FileNotFoundError(f"no checkpoint at {path}")
    with open(path, "rb") as f:
        if f.read(4) != b"PK\x03\x04":     # every .npz is a zip archive and starts so
            raise ValueError(f"{path} is not a minivit checkpoint (the .npz files that python "
                             "-m minivit.train writes, e.g. last.npz or best.npz)")
    try:
        with np.load(path, allow_pickle=False) as z:
            data = {k: z[k] for k in z.files}
    except (zipfile.BadZipFile, OSError, EOFError, KeyError, ValueError) as e:
        raise ValueError(f"checkpoint {path} is truncated or corrupt ({type(e).__name__}: {e}); "
                         "use another checkpoint (e.g. best.npz) or start a new run") from None
    try:
        meta = json.loads(str(data.pop("meta")))
    except (KeyError, ValueError):
        meta = None
    if not isinstance(meta, dict) or meta.get("format") != FORMAT:
        found = f"format {meta.get('format')!r}" if isinstance(meta, dict) else "no minivit metadata"
        raise ValueError(f"{path} is not a minivit checkpoint ({found})")
    model = {k[6:]: v for k, v in data.items() if k.startswith("model/")}
    optim = {k[6:]: v for k, v in data.items() if k.startswith("optim/")}
    return model, optim, meta
