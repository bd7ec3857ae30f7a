"""The chunked/threaded CPU helpers give what the plain formulas give."""
import numpy as np
import pytest

from minivit.fast import parallel
from minivit.fast.parallel import bmm, col_sum, map_rows, row_sum


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


def test_blas_row_and_column_sums():
    x = np.random.default_rng(2).standard_normal((300, 7))
    np.testing.assert_allclose(row_sum(x), x.sum(axis=1, keepdims=True), rtol=1e-12)
    np.testing.assert_allclose(col_sum(x), x.sum(axis=0), rtol=1e-12)
    assert row_sum(x).shape == (300, 1) and col_sum(x).shape == (7,)
