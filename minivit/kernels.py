"""Choosing the kernel set: the reference ops (minivit/ops/, the math) or the fast CPU
kernels (minivit/fast/, the same signatures and results, faster).

    kernels="reference"   always the reference ops
    kernels="fast"        minivit.fast (NumPy on the CPU only)
    kernels="auto"        fast on the CPU when minivit.fast is there, else the reference
                          (on CuPy, and in a student copy of the package without it)
"""
import importlib
import importlib.util

import numpy as np

from .ops import reference

KERNELS = ("auto", "fast", "reference")


def _fast():
    """minivit.fast, or None where the package has been left out (a student copy)."""
    if importlib.util.find_spec(__package__ + ".fast") is None:
        return None
    return importlib.import_module(__package__ + ".fast")   # a broken one raises, not hides


def check_kernels(name):
    if name not in KERNELS:
        raise ValueError(f"kernels must be one of {KERNELS}, got {name!r}")
    if name == "fast" and _fast() is None:
        raise ValueError("kernels='fast' needs minivit.fast, which this copy of minivit does not "
                         "have (a student copy runs on the reference kernels): use kernels='reference'")
    return name


def select(name, xp=np):
    """The kernel set (a module of primitive ops) for `name` and the array module xp."""
    check_kernels(name)
    if name == "reference":
        return reference
    if xp is not np:
        if name == "fast":
            raise ValueError("kernels='fast' are CPU (NumPy) kernels; on the GPU use "
                             "kernels='reference' or 'auto'")
        return reference
    return _fast() or reference
