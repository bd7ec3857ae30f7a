"""erf to float64 round-off (against Python's math.erf), and both GELU forms."""
import math

import numpy as np
import pytest

from minivit import ops


def _grid():
    return np.concatenate([np.linspace(-7, 7, 20001), np.logspace(-300, 1, 3000),
                           -np.logspace(-12, 1, 1000), [0.0, 1.0, -1.0, 6.0, -6.0, np.nextafter(1, 0)]])


def test_erf_float64_matches_math_erf_to_a_few_ulp(xp):
    x = _grid()
    ref = np.array([math.erf(v) for v in x])
    got = ops.erf(xp.asarray(x))
    assert got.dtype == np.float64
    err_ulp = np.abs(np.asarray(got.tolist()) - ref) / np.spacing(np.abs(ref))
    assert err_ulp.max() <= 4, f"max error {err_ulp.max()} ulp"     # measured: 3 ulp


def test_erf_float32_stays_float32_and_accurate(xp):
    x = _grid().astype(np.float32)
    ref = np.array([math.erf(float(v)) for v in x])
    got = ops.erf(xp.asarray(x))
    assert got.dtype == np.float32
    # the Cephes formulas in float32 arithmetic are good to a few float32 ulp: |error| < 5e-7
    # (measured 1.4e-7; the ulp of values near 1 is 6e-8)
    assert np.abs(np.asarray(got.tolist()) - ref).max() < 5e-7


def test_erf_properties(xp):
    x = xp.asarray(np.linspace(-10, 10, 1001))
    y = ops.erf(x)
    assert float(abs(y + ops.erf(-x)).max()) == 0.0           # odd function
    assert float(y.max()) == 1.0 and float(y.min()) == -1.0   # saturates exactly
    assert bool((xp.diff(y) >= 0).all())                      # monotone


def test_gelu_exact_definition(xp):
    x = np.linspace(-5, 5, 101)
    ref = np.array([v * 0.5 * (1 + math.erf(v / math.sqrt(2))) for v in x])
    got, _ = ops.gelu_forward(xp.asarray(x))
    assert np.abs(np.asarray(got.tolist()) - ref).max() < 1e-15


def test_fast_float32_normal_cdf_to_round_off():
    """The fast kernels' Phi in float32, (1 + tanh(x h(x^2))) / 2, against math.erfc."""
    from minivit.fast.gelu import phi_tanh_form
    x = np.concatenate([np.linspace(-9, 9, 200001), [-1e30, -100, 100, 1e30]]).astype(np.float32)
    ref = np.array([0.5 * math.erfc(-float(v) / math.sqrt(2)) for v in x])
    xc = np.clip(x, -6.0, 6.0)                        # x^2 of 1e30 would overflow float32
    got = phi_tanh_form(x, xc * xc)
    assert got.dtype == np.float32
    assert np.abs(got - ref).max() < 1.5e-7           # ~ one float32 ulp of 1
    assert got[-1] == 1.0 and got[-4] == 0.0          # saturates exactly, no overflow
    assert (np.diff(got[:-4]) >= 0).all()             # monotone


@pytest.mark.parametrize("kernels", ["reference", "fast"])
def test_float32_gelu_and_derivative_match_float64(kernels):
    from minivit.kernels import select
    k = select(kernels)
    x = np.linspace(-9, 9, 100001)
    y64, d64 = ops.gelu_forward(x)
    y32, d32 = k.gelu_forward(x.astype(np.float32))
    assert y32.dtype == d32.dtype == np.float32
    assert np.abs(y32 - y64).max() < 1e-6             # x Phi(x): |x| <= 9 times ~1e-7
    assert np.abs(d32 - d64).max() < 3e-7
    # far tails: GELU(x) -> max(x, 0), GELU'(x) -> step(x), with no NaN from inf * 0
    x = np.array([-1e30, -100, -7, 7, 100, 1e30], dtype=np.float32)
    with np.errstate(over="ignore"):                 # x^2 of 1e30 is inf in float32
        y, d = k.gelu_forward(x)
    np.testing.assert_allclose(y, np.maximum(x, 0), rtol=1e-7, atol=1e-10)
    np.testing.assert_allclose(d, (x > 0).astype(np.float32), rtol=0, atol=1e-10)


def test_float32_coefficients_are_the_fit():
    from minivit.fast import gelu, gelu_fit
    np.testing.assert_allclose(gelu.H32, gelu_fit.fit_h(), rtol=1e-6)
    assert gelu.H32[-1] == pytest.approx(math.sqrt(2 / math.pi), rel=1e-6)
    assert gelu.H32[-2] / gelu.H32[-1] == pytest.approx(1 / 3 / (math.pi / 2) - 1 / 6, rel=1e-3)


def test_gelu_tanh_is_close_but_not_equal(xp):
    x = xp.asarray(np.linspace(-5, 5, 101))
    exact, _ = ops.gelu_forward(x)
    approx, _ = ops.gelu_forward(x, "tanh")
    diff = float(abs(exact - approx).max())
    assert 1e-5 < diff < 1e-3          # the known max gap of the approximation is ~4.7e-4


def test_gelu_rejects_unknown_form(xp):
    with pytest.raises(ValueError, match="approximate"):
        ops.gelu_forward(xp.ones(3), "sigmoid")
