"""Every test that takes `device` / `xp` runs on NumPy, and on CuPy when a GPU is usable."""
import numpy as np
import pytest

from minivit.backend import cuda_available, set_device, xp_for

_CUDA = cuda_available()


@pytest.fixture(params=[
    pytest.param("cpu", id="numpy"),
    pytest.param("cuda", id="cupy", marks=pytest.mark.skipif(
        not _CUDA, reason="CuPy with a usable CUDA GPU not available")),
])
def device(request):
    set_device(request.param)
    yield request.param
    set_device("cpu")


@pytest.fixture
def xp(device):
    return xp_for(device)


@pytest.fixture
def rng():
    return np.random.default_rng(1234)
