"""The error function erf(x) = 2/sqrt(pi) * integral_0^x exp(-t^2) dt, for NumPy and CuPy.

NumPy has no erf, and minivit does not depend on SciPy, so here it is, in the same
rational approximations as the Cephes math library (ndtr.c), accurate to float64
round-off (a few ulp; tests compare against Python's math.erf):

    |x| < 1:   erf(x) = x T(x^2) / U(x^2)
    |x| >= 1:  erf(x) = sign(x) (1 - erfc(|x|)),   erfc(a) = exp(-a^2) P(a) / Q(a)

For a >= 6, erfc(a) < 2.2e-17 is below half an ulp of 1, so erf rounds to +-1 exactly;
clipping a to [1, 6] keeps P/Q inside the range it was fitted on (a < 8).
Both branches are computed everywhere and selected with `where`: branch-free code is
what array libraries (and GPUs) run fast.

The same formulas serve float32: arithmetic stays in x's dtype, and the error is then a
few float32 ulp (tests: |error| < 5e-7 against math.erf).
"""
from ..backend import get_array_module

_T = (9.60497373987051638749e0, 9.00260197203842689217e1, 2.23200534594684319226e3,
      7.00332514112805075473e3, 5.55923013010394962768e4)
_U = (3.35617141647503099647e1, 5.21357949780152679795e2, 4.59432382970980127987e3,
      2.26290000613890934246e4, 4.92673942608635921086e4)  # leading coefficient 1
_P = (2.46196981473530512524e-10, 5.64189564831068821977e-1, 7.46321056442269912687e0,
      4.86371970985681366614e1, 1.96520832956077098242e2, 5.26445194995477358631e2,
      9.34528527171957607540e2, 1.02755188689515710272e3, 5.57535335369399327526e2)
_Q = (1.32281951154744992508e1, 8.67072140885989742329e1, 3.54937778887819891062e2,
      9.75708501743205489753e2, 1.82390916687909736289e3, 2.24633760818710981792e3,
      1.65666309194161350182e3, 5.57535340817727675546e2)  # leading coefficient 1


def _polevl(x, coefs, leading_one=False):
    """Horner's rule: c0 x^n + c1 x^(n-1) + ... (with an implicit leading 1 if asked)."""
    y = x + coefs[0] if leading_one else x * coefs[0]
    if not leading_one:
        y += coefs[1]                  # in place: one new array for the whole polynomial
    for c in coefs[1:] if leading_one else coefs[2:]:
        y *= x
        y += c
    return y


def erf(x):
    """Elementwise erf(x) in x's floating dtype, to that dtype's round-off."""
    xp = get_array_module(x)
    xi = xp.clip(x, -1.0, 1.0)           # the |x| < 1 branch stays finite where it is not used
    z = xi * xi
    inner = xi * _polevl(z, _T) / _polevl(z, _U, leading_one=True)     # |x| < 1
    a = xp.clip(xp.abs(x), 1.0, 6.0)
    erfc = xp.exp(-a * a) * _polevl(a, _P) / _polevl(a, _Q, leading_one=True)
    outer = xp.copysign(1.0 - erfc, x)                                  # |x| >= 1
    return xp.where(xp.abs(x) < 1.0, inner, outer)
