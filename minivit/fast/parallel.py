"""Where the CPU work runs: cache-sized chunks, spread over threads.

NumPy evaluates `a * b + c` as separate passes over whole arrays. For the 2-million-element
activations of a ViT every pass streams megabytes through memory, so a formula of a dozen
operations (LayerNorm, GELU, softmax) is memory-bound and runs on one core. Evaluating the
same formula on chunks of rows that fit in the L2 cache keeps the intermediates in cache,
and since NumPy releases the GIL inside its loops, chunks run on all cores at once.

The math (the function passed in) is unchanged: these helpers only decide where it runs.
On CuPy they just call the function on whole arrays (the GPU is already parallel).

Threads: minivit.threads.num_threads() (MINIVIT_NUM_THREADS, else the CPUs available).
"""
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from ..backend import get_array_module
from ..threads import num_threads, runs_serially

CHUNK = 1 << 16          # elements per chunk and operand: 256 KB of float32 (fits in L2).
# Much smaller chunks cost more than they save: each NumPy call re-takes the GIL.
_pool = None


def _run(work, n_items):
    """work(start, stop) over [0, n_items), split evenly across the thread pool."""
    global _pool
    n = 1 if runs_serially() else min(num_threads(), n_items)
    if n <= 1:
        work(0, n_items)
        return
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=num_threads(), thread_name_prefix="minivit")
    bounds = np.linspace(0, n_items, n + 1).astype(int)
    futures = [_pool.submit(work, bounds[i], bounds[i + 1]) for i in range(n)]
    for f in futures:
        f.result()


def map_rows(fn, *arrays, n_out=1, n_sums=0):
    """Apply fn to matching chunks of rows of `arrays` (each viewed as (R, last axis)).

    fn(*chunks) returns n_out arrays with the chunk's rows (written into full-size outputs
    of the chunk results' trailing shape) followed by n_sums arrays that are partial sums
    over the chunk's rows (added up across chunks). Returns one array, or a tuple.
    Arrays may broadcast along rows only if they have a single row (R == 1).
    """
    x = arrays[0]
    R, lead = x.size // x.shape[-1], x.shape[:-1]
    flat = [a.reshape(-1, a.shape[-1]) if a.size != a.shape[-1] else a.reshape(1, -1)
            for a in arrays]
    if not isinstance(x, np.ndarray) or x.size < 4 * CHUNK:
        # CuPy (one call on whole arrays), or too small to be worth splitting
        res = fn(*flat)
        res = res if isinstance(res, tuple) else (res,)
        res = tuple(r.reshape(lead + r.shape[1:]) for r in res[:n_out]) + tuple(res[n_out:])
        return res if len(res) > 1 else res[0]
    rows = max(1, CHUNK // x.shape[-1])
    outs, sums = [None] * n_out, []

    def work(start, stop):
        partial = None
        for lo in range(start, stop, rows):
            hi = min(lo + rows, stop)
            res = fn(*(a[lo:hi] if len(a) == R else a for a in flat))
            res = res if isinstance(res, tuple) else (res,)
            for k in range(n_out):
                outs[k][lo:hi] = res[k]
            if n_sums:
                part = res[n_out:]
                partial = part if partial is None else [p + q for p, q in zip(partial, part)]
        if n_sums and partial is not None:
            sums.append(partial)

    # shapes and dtypes of the outputs from a first, tiny call
    probe = fn(*(a[:1] if len(a) == R else a for a in flat))
    probe = probe if isinstance(probe, tuple) else (probe,)
    for k in range(n_out):
        outs[k] = np.empty((R,) + probe[k].shape[1:], dtype=probe[k].dtype)
    _run(work, R)
    outs = [o.reshape(lead + o.shape[1:]) for o in outs]
    if n_sums:
        total = [sum(s[k] for s in sums) for k in range(n_sums)]
        outs += total
    return tuple(outs) if len(outs) > 1 else outs[0]


_ones = {}


def ones(xp, n, dtype):
    """A cached read-only vector of n ones (made once per length, not once per call)."""
    key = (xp.__name__, n, np.dtype(dtype).str)
    v = _ones.get(key)
    if v is None:
        v = _ones[key] = xp.ones(n, dtype=dtype)
        if xp is np:
            v.flags.writeable = False
    return v


def row_sum(x):
    """Sum over the last axis of (R, n), keeping it: (R, 1). Written as a matrix-vector
    product with ones, which BLAS does several times faster than NumPy's reduction along
    a short axis (softmax rows of 65, LayerNorm rows of 128)."""
    return (x @ ones(get_array_module(x), x.shape[-1], x.dtype))[:, None]


def col_sum(x):
    """Sum over the rows of (R, n): (n,). The same trick (ones @ x), ~3x faster than
    x.sum(axis=0), which adds up the rows one after another."""
    return ones(get_array_module(x), x.shape[0], x.dtype) @ x


def bmm(a, b):
    """Batched matmul a @ b over leading axes, the batch split across threads.

    OpenBLAS runs each small matrix product (e.g. 65 x 32 @ 32 x 65 for one attention head)
    on one core; splitting the batch puts every core to work."""
    if not isinstance(a, np.ndarray) or a.ndim < 3 or a.shape[0] < 2:
        return a @ b
    out = np.empty(a.shape[:-1] + (b.shape[-1],), dtype=np.result_type(a, b))

    def work(start, stop):
        np.matmul(a[start:stop], b[start:stop], out=out[start:stop])
    _run(work, a.shape[0])
    return out
