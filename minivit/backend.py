"""The array backend: NumPy on the CPU, CuPy on a CUDA GPU.

Every op in minivit asks its *inputs* which module they belong to
(`get_array_module(x)`), so the same code runs on either. Which device new arrays go to
(model parameters, data batches) is a global choice:

    import minivit
    minivit.set_device("cuda")          # or the environment variable MINIVIT_DEVICE=cuda

Parameters are always initialised on the host with `np.random.default_rng(seed)` and then
moved, so a CPU and a GPU model built with the same seed start bit-identical.
"""
import os

import numpy as np

DEVICES = ("cpu", "cuda")
_INSTALL_HINT = (
    "install CuPy with the extra that matches your CUDA driver, ONE of: "
    "pip install 'minivit[cuda12]'  or  pip install 'minivit[cuda13]'"
)
_device = None  # resolved lazily from MINIVIT_DEVICE on first use


def _import_cupy():
    try:
        import cupy
    except ImportError as e:  # not installed, or a broken install
        raise RuntimeError(f"device 'cuda' needs CuPy, which could not be imported ({e}); "
                           f"{_INSTALL_HINT}") from e
    return cupy


def cuda_available():
    """True when CuPy imports *and* CUDA answers with at least one usable device.

    CuPy imports fine on machines without a GPU or driver, so importing is not enough:
    ask the runtime, then make a tiny allocation to be sure a context can be created.
    """
    try:
        cupy = _import_cupy()
        if cupy.cuda.runtime.getDeviceCount() < 1:
            return False
        (cupy.arange(2, dtype=cupy.float32) + 1).sum().item()
        return True
    except Exception:
        return False


_cuda_checked = False


def _require_cuda():
    """CuPy, once CUDA has been shown usable; otherwise a RuntimeError that says what to do."""
    global _cuda_checked
    cupy = _import_cupy()
    if not _cuda_checked:
        if not cuda_available():
            try:
                n = cupy.cuda.runtime.getDeviceCount()
                why = f"CUDA reports {n} device(s) but none could be used"
            except Exception as e:
                why = f"CUDA could not be queried ({type(e).__name__}: {e})"
            raise RuntimeError(f"device 'cuda' was requested but no usable GPU was found: {why}. "
                               f"Check the driver with nvidia-smi, or {_INSTALL_HINT}; "
                               "use device 'cpu' otherwise.")
        _cuda_checked = True
    return cupy


def set_device(device):
    """Choose where new arrays live: 'cpu' (NumPy) or 'cuda' (CuPy). Returns the device."""
    global _device
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    if device == "cuda":
        _require_cuda()
    _device = device
    return device


def get_device():
    """The current device; on first use read from MINIVIT_DEVICE (default 'cpu')."""
    if _device is None:
        env = os.environ.get("MINIVIT_DEVICE", "cpu").strip().lower() or "cpu"
        if env not in DEVICES:
            raise ValueError(f"MINIVIT_DEVICE must be one of {DEVICES}, got {env!r}")
        set_device(env)
    return _device


def xp_for(device=None):
    """The array module (numpy or cupy) for `device` (default: the current device)."""
    device = device or get_device()
    if device not in DEVICES:
        raise ValueError(f"device must be one of {DEVICES}, got {device!r}")
    return np if device == "cpu" else _require_cuda()


def get_array_module(*arrays):
    """numpy or cupy, whichever the arrays belong to (NumPy for plain Python scalars)."""
    for a in arrays:
        if isinstance(a, np.ndarray) or np.isscalar(a) or a is None:
            continue
        if type(a).__module__.split(".")[0] == "cupy":
            return _import_cupy()
    return np


def device_of(x):
    return "cpu" if get_array_module(x) is np else "cuda"


def to_device(x, device=None, dtype=None):
    """Copy/convert a host or device array to `device` (default: the current one)."""
    xp = xp_for(device)
    if xp is np and device_of(x) == "cuda":
        x = x.get()
    return xp.asarray(x, dtype=dtype)


def to_numpy(x):
    """A NumPy array on the host, whatever `x` is (CuPy arrays are copied back)."""
    if isinstance(x, np.ndarray):
        return x
    if hasattr(x, "get") and device_of(x) == "cuda":
        return x.get()
    return np.asarray(x)


def synchronize(xp):
    """Wait for queued GPU work (for honest timings); a no-op on the CPU."""
    if xp is not np:
        xp.cuda.get_current_stream().synchronize()
