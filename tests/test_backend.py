"""Choosing the device: API, environment variable, and clear errors without a GPU."""
import sys
import types

import numpy as np
import pytest

import minivit
from minivit import backend


@pytest.fixture(autouse=True)
def restore_device():
    yield
    backend._device = None
    backend.set_device("cpu")


def test_cpu_is_default_and_numpy(monkeypatch):
    monkeypatch.delenv("MINIVIT_DEVICE", raising=False)
    backend._device = None
    assert minivit.get_device() == "cpu"
    assert backend.xp_for() is np


def test_env_var_is_read(monkeypatch):
    monkeypatch.setenv("MINIVIT_DEVICE", "bogus")
    backend._device = None
    with pytest.raises(ValueError, match="MINIVIT_DEVICE must be one of"):
        minivit.get_device()


def test_unknown_device():
    with pytest.raises(ValueError, match="device must be one of"):
        minivit.set_device("tpu")


def test_cuda_without_cupy_names_the_extra(monkeypatch):
    monkeypatch.setitem(sys.modules, "cupy", None)          # makes `import cupy` fail
    assert not minivit.cuda_available()
    with pytest.raises(RuntimeError, match=r"minivit\[cuda12\].*minivit\[cuda13\]"):
        minivit.set_device("cuda")
    assert minivit.get_device() == "cpu"                   # unchanged


def test_cuda_with_cupy_but_no_gpu(monkeypatch):
    """CuPy imports fine on machines without a GPU: the runtime must be asked."""
    fake = types.ModuleType("cupy")

    def no_device():
        raise RuntimeError("cudaErrorNoDevice: no CUDA-capable device is detected")
    fake.cuda = types.SimpleNamespace(runtime=types.SimpleNamespace(getDeviceCount=no_device))
    monkeypatch.setitem(sys.modules, "cupy", fake)
    assert not minivit.cuda_available()
    with pytest.raises(RuntimeError, match="no usable GPU was found.*no CUDA-capable device"):
        minivit.set_device("cuda")
    with pytest.raises(RuntimeError, match="no usable GPU"):
        minivit.ViT(device="cuda")


def test_get_array_module_and_to_numpy():
    a = np.ones(3)
    assert backend.get_array_module(a) is np
    assert backend.get_array_module(1.0, a) is np
    assert minivit.to_numpy(a) is a
    assert backend.to_device(a, "cpu", np.float32).dtype == np.float32
