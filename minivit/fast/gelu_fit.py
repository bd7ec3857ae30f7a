"""Where fast/gelu.py's float32 coefficients come from: a fit of h in

    Phi(x) = (1 + tanh(x h(x^2))) / 2,   i.e.   h(z) = atanh(erf(x / sqrt 2)) / x,  z = x^2.

h is a polynomial of degree 6 in z, fitted on 0 < x <= clip (in float64, from math.erfc).
What matters is the error in Phi, which an error in h moves by dPhi/dh = x (1 - t^2) / 2
(t = tanh(x h)): tiny where tanh has saturated. So the fit weighs h's error by that, and
reweights the points a few dozen times towards the largest errors (iteratively
reweighted least squares, which approaches the minimax fit). Run it:
    python -m minivit.fast.gelu_fit
"""
import math

import numpy as np


def fit_h(degree=6, clip=6.0, n=20001, iterations=60):
    """Coefficients of h(z), highest power first (float64)."""
    x = np.linspace(1e-4, clip, n)
    erfc = np.array([math.erfc(v / math.sqrt(2.0)) for v in x])
    g = 0.5 * np.log((2.0 - erfc) / erfc)     # atanh(erf) = atanh(1 - erfc), without cancelling
    h, z = g / x, x * x
    t = np.tanh(g)
    sensitivity = 0.5 * (1.0 - t * t) * x      # dPhi / dh
    u = 2.0 * z / clip ** 2 - 1.0              # z in [0, clip^2] -> u in [-1, 1]: Chebyshev basis
    V = np.polynomial.chebyshev.chebvander(u, degree)
    w = sensitivity + 1e-12
    for _ in range(iterations):
        c, *_ = np.linalg.lstsq(V * w[:, None], h * w, rcond=None)
        err = np.abs((V @ c - h) * sensitivity)
        w = w * np.sqrt(err / err.max() + 1e-3)
    in_u = np.polynomial.Polynomial(np.polynomial.chebyshev.cheb2poly(c))
    in_z = in_u(np.polynomial.Polynomial([-1.0, 2.0 / clip ** 2]))
    return tuple(in_z.coef[::-1])


if __name__ == "__main__":
    print(", ".join(f"{c:.8e}" for c in fit_h()))
