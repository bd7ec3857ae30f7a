"""minivit: a from-scratch, educational Vision Transformer in NumPy and CuPy."""
import os

# OpenBLAS worker threads busy-wait for a while after every matrix product, taking a core
# away from minivit's own elementwise threads (minivit/fast/parallel.py); a short timeout makes
# them sleep instead (measured: tiny training step 644 -> 516 ms, `python -m minivit.bench`).
# It only takes effect when NumPy has not been imported yet, e.g. `python -m minivit.train`.
os.environ.setdefault("OPENBLAS_THREAD_TIMEOUT", "4")
from . import ops
from .backend import cuda_available, get_device, set_device, to_numpy
from .model import ViT

__version__ = "0.1.0"
__all__ = ["ViT", "ops", "set_device", "get_device", "cuda_available", "to_numpy"]
