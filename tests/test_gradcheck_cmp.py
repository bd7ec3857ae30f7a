"""minivit.gradcheck.cmp: the per-tensor exact | close | max-difference line of the lessons."""
import numpy as np
import pytest

from minivit.gradcheck import cmp


def test_exact(capsys):
    a = np.arange(6.0).reshape(2, 3)
    r = cmp("a", a, a.copy())
    assert r.exact and r.close and r.max_diff == 0.0
    out = capsys.readouterr().out
    assert out.startswith("a") and "exact: True" in out and "max diff: 0.00e+00" in out


def test_close_but_not_exact():
    a = np.linspace(-1, 1, 10)
    r = cmp("b", a, a + 1e-12, quiet=True)
    assert not r.exact and r.close
    assert r.max_diff == pytest.approx(1e-12, rel=1e-3)


def test_not_close_reports_worst_element():
    a = np.zeros((3, 4))
    ref = a.copy()
    ref[1, 2] = 0.5
    ref[2, 3] = -2.0
    r = cmp("c", a, ref, quiet=True)
    assert not r.exact and not r.close and r.max_diff == 2.0


def test_tolerance_is_used():
    a, ref = np.ones(4), np.ones(4) + 1e-3
    assert not cmp("d", a, ref, quiet=True).close
    assert cmp("d", a, ref, rtol=1e-2, quiet=True).close


def test_shape_mismatch_is_an_error():
    with pytest.raises(ValueError, match="shapes differ"):
        cmp("e", np.zeros(3), np.zeros((1, 3)), quiet=True)


def test_float32_vs_float64_is_compared_in_float64():
    a = np.float32(0.1) * np.ones(2, np.float32)
    r = cmp("f", a, np.full(2, 0.1), quiet=True)
    assert not r.exact and r.close and 0 < r.max_diff < 1e-8
