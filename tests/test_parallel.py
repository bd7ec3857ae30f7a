"""The chunked/threaded CPU helpers give what the plain formulas give."""
import numpy as np
import pytest

from minivit import parallel
from minivit.parallel import bmm, map_rows


@pytest.fixture(params=[1, 2, 3])
def threads(request, monkeypatch):
    monkeypatch.setenv("MINIVIT_NUM_THREADS", str(request.param))
    monkeypatch.setattr(parallel, "CHUNK", 64)      # many chunks even for small arrays
    return request.param


def test_map_rows_outputs_and_sums(threads):
    rng = np.random.default_rng(0)
    x = rng.standard_normal((7, 13, 10))             # 91 rows: chunks do not divide evenly
    w = rng.standard_normal(10)                      # one row: broadcast to every chunk
    m = rng.standard_normal((7, 13, 1))              # one column per row: chunked with x

    def fn(x, w, m):
        y = x * w + m
        return y, y.max(axis=-1, keepdims=True), (x * w).sum(axis=0), x.sum(axis=0)
    y, ymax, s1, s2 = map_rows(fn, x, w, m, n_out=2, n_sums=2)
    ref = x * w + m
    np.testing.assert_array_equal(y, ref)
    np.testing.assert_array_equal(ymax, ref.max(axis=-1, keepdims=True))
    np.testing.assert_allclose(s1, (x * w).reshape(-1, 10).sum(axis=0), rtol=1e-12)
    np.testing.assert_allclose(s2, x.reshape(-1, 10).sum(axis=0), rtol=1e-12)
    assert y.shape == x.shape and ymax.shape == (7, 13, 1) and s1.shape == (10,)


def test_map_rows_small_input_takes_the_direct_path_with_the_same_results(monkeypatch):
    x = np.arange(12.0).reshape(2, 2, 3)
    y, s = map_rows(lambda a: (a * 2, a.sum(axis=0)), x, n_out=1, n_sums=1)
    np.testing.assert_array_equal(y, x * 2)
    np.testing.assert_array_equal(s, x.reshape(-1, 3).sum(axis=0))


def test_bmm_matches_matmul(threads):
    rng = np.random.default_rng(1)
    a = rng.standard_normal((5, 3, 4, 6)).astype(np.float32)
    b = rng.standard_normal((5, 3, 6, 2)).astype(np.float32)
    np.testing.assert_array_equal(bmm(a, b), a @ b)
    np.testing.assert_array_equal(bmm(a, a.swapaxes(-1, -2)), a @ a.swapaxes(-1, -2))


def test_split_gemm_matches_blas(threads, monkeypatch):
    """MINIVIT_SPLIT_GEMM=1: GEMMs split over our threads give BLAS's answer."""
    monkeypatch.setattr(parallel, "SPLIT_GEMM", True)
    rng = np.random.default_rng(2)
    a, b, c = rng.standard_normal((300, 7)), rng.standard_normal((7, 5)), rng.standard_normal((300, 5))
    np.testing.assert_allclose(parallel.matmul(a, b), a @ b, rtol=1e-12)
    np.testing.assert_allclose(parallel.matmul_tn(a, c), a.T @ c, rtol=1e-12)
