"""Elementwise work in cache-sized chunks, spread over CPU threads.

NumPy runs `a * b + c` as separate passes over whole arrays: for the 2-million-element
activations of a ViT MLP every pass streams 8 MB through memory, so a 25-operation formula
such as erf is memory-bound. Evaluating the same formula on chunks that fit in the L2 cache
keeps the intermediates in cache, and since NumPy releases the GIL inside its loops, chunks
can run on several cores at once. The math (the function you pass) is unchanged: this
only decides *where* it runs. On CuPy the function is simply called on the whole arrays.

Threads: MINIVIT_NUM_THREADS, else the number of CPUs this process may use.
"""
import os
from concurrent.futures import ThreadPoolExecutor

import numpy as np

CHUNK = 1 << 15          # elements per chunk: 128 KB of float32 per operand
_pool = None


def num_threads():
    env = os.environ.get("MINIVIT_NUM_THREADS")
    if env:
        return max(1, int(env))
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:        # not on Linux
        return max(1, os.cpu_count() or 1)


def _get_pool():
    global _pool
    if _pool is None:
        _pool = ThreadPoolExecutor(max_workers=num_threads(), thread_name_prefix="minivit-ew")
    return _pool


def elementwise(fn, *arrays, n_out=1):
    """out = fn(*arrays) for an elementwise fn of same-shaped arrays, returning n_out arrays
    (a tuple if n_out > 1) of arrays[0]'s shape and dtype."""
    x = arrays[0]
    if not isinstance(x, np.ndarray) or x.size < 4 * CHUNK:
        return fn(*arrays)           # CuPy (one fused launch is its job) or small arrays
    flat = [np.ascontiguousarray(a).reshape(-1) for a in arrays]
    outs = [np.empty(x.size, dtype=x.dtype) for _ in range(n_out)]

    def work(start, stop):
        for lo in range(start, stop, CHUNK):
            hi = min(lo + CHUNK, stop)
            res = fn(*(a[lo:hi] for a in flat))
            for o, r in zip(outs, res if n_out > 1 else (res,)):
                o[lo:hi] = r

    n = num_threads()
    bounds = np.linspace(0, x.size, n + 1).astype(int) // CHUNK * CHUNK
    bounds[-1] = x.size
    futures = [_get_pool().submit(work, bounds[i], bounds[i + 1]) for i in range(n)]
    for f in futures:
        f.result()
    outs = [o.reshape(x.shape) for o in outs]
    return tuple(outs) if n_out > 1 else outs[0]
