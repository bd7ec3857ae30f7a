"""minivit: a from-scratch, educational Vision Transformer in NumPy and CuPy."""
from . import ops
from .backend import cuda_available, get_device, set_device, to_numpy
from .model import ViT

__version__ = "0.1.0"
__all__ = ["ViT", "ops", "set_device", "get_device", "cuda_available", "to_numpy"]
