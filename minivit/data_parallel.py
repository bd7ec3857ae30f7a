"""Data parallelism on the CPU cores: each thread runs a slice of the batch.

The loss is a mean over the batch, so its gradient is a sum of per-slice gradients:

    L = sum_i (B_i / B) L_i     =>     dL/dW = sum_i (B_i / B) dL_i/dW

Every thread runs forward + backward of its slice through its own *replica* of the model
(the same weight arrays, but its own caches and gradients), with single-threaded BLAS;
the replicas' gradients are then added into the model's. The threads meet once per step,
not once per operation, and NumPy releases the GIL inside its loops and BLAS calls, so a
step runs on all cores at once. This is what PyTorch's DistributedDataParallel does across
processes, inside one process.

Each thread runs its slice in micro-batches of `micro_batch` images (gradient
accumulation, by the same sum): with 16 images an activation (16, 65, 128) is 0.5 MB, so
what one layer writes is still in the core's L2 cache when the next one reads it. On a
whole slice of 64 images every elementwise op streams megabytes through the slower L3
instead: 6-9% slower per step in the benchmark, with 3-4x the peak memory (README,
"Speed": `python -m minivit.bench --micro-batch 0`).

On CuPy everything runs on the whole batch, unchanged (a GPU wants big batches).
"""
import copy
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import ops, threads

_blas = None


def _one_blas_thread():
    """A context in which BLAS (OpenBLAS, MKL, ...) runs single-threaded: the cores are
    already busy with one slice each, and a threaded BLAS called from two threads at once
    oversubscribes them."""
    global _blas
    if _blas is None:
        from threadpoolctl import ThreadpoolController
        _blas = ThreadpoolController()
    return _blas.limit(limits=1, user_api="blas")


def _replica(model):
    """A copy of model's modules that shares its parameter arrays (no caches, no grads)."""
    memo = {}
    for _, p in model.named_parameters():
        memo[id(p.data)] = p.data                     # shared, not copied
        if p.grad is not None:
            memo[id(p.grad)] = None
    for m in model.modules():
        if getattr(m, "cache", None) is not None:
            memo[id(m.cache)] = None
    return copy.deepcopy(model, memo)


MICRO_BATCH = 16


def _join(parts):
    """Concatenate logits along the batch (no copy when there is one part)."""
    return parts[0] if len(parts) == 1 else np.concatenate(parts)


class DataParallel:
    """Wraps a model; `forward_backward(x, y)` is the loss and backward pass of the whole
    batch, `dp(x)` its forward pass. Both split the batch over `num_threads` threads
    (default: minivit.threads.num_threads(), i.e. MINIVIT_NUM_THREADS or the CPU count),
    and each thread's slice into micro-batches of at most `micro_batch` images (None: no
    micro-batches).

    The results equal the unsplit pass to float round-off (the batch sums are added in
    another order), except dropout masks: each micro-batch draws its own, and with more
    than one thread each replica draws from a generator seeded by the model's `rng`."""

    def __init__(self, model, num_threads=None, micro_batch=MICRO_BATCH):
        self.model = model
        self.n = num_threads or threads.num_threads()
        self.micro_batch = micro_batch
        if model.xp is not np:
            self.n, self.micro_batch = 1, None     # a GPU is already parallel
        if self.micro_batch is not None and self.micro_batch < 1:
            raise ValueError(f"micro_batch must be a positive number of images or None, got {micro_batch}")
        self.replicas = [model] + [_replica(model) for _ in range(self.n - 1)]
        # each replica's Parameter objects, in one order (load_state_dict swaps their
        # arrays, never the objects, so these lists stay valid)
        self._params = [[p for _, p in m.named_parameters()] for m in self.replicas]
        self._pool = ThreadPoolExecutor(self.n, thread_name_prefix="minivit-dp") if self.n > 1 else None

    # the model's mode switches, so that code written for a model takes a DataParallel
    def train(self, mode=True):
        for m in self.replicas:
            m.train(mode)
        return self

    def eval(self):
        return self.train(False)

    @staticmethod
    def _split(lo, hi, k):
        """[lo, hi) in k near-equal slices."""
        bounds = np.linspace(lo, hi, k + 1).astype(int).tolist()
        # Python ints: a NumPy float64 scale (np.int64 / int) would turn float32 math float64
        return [slice(a, b) for a, b in zip(bounds[:-1], bounds[1:])]

    def _slices(self, B):
        return self._split(0, B, min(self.n, B))

    def _micro(self, s):
        """A thread's slice s in micro-batches of at most micro_batch images."""
        size = s.stop - s.start
        k = 1 if self.micro_batch is None else -(-size // self.micro_batch)   # ceil
        return self._split(s.start, s.stop, max(k, 1))

    def _sync(self, k):
        """Point replicas 1..k-1 at the model's current arrays (load_state_dict replaces
        them) and mode, and give each its own dropout generator, seeded from the model's
        (so a run stays reproducible from its seed)."""
        seeds = self.model.rng.integers(0, 2 ** 63, size=k - 1).tolist()
        for rep, rep_params, seed in zip(self.replicas[1:k], self._params[1:k], seeds):
            for p, q in zip(self._params[0], rep_params):
                q.data = p.data
            rep.train(self.model.training)
            rep.rng = np.random.default_rng(seed)

    def _map(self, work, B):
        """work(replica, slice) on every slice, each in its own thread."""
        slices = self._slices(B)
        self._sync(len(slices))

        def run(i):
            threads.serial_in_this_thread()
            return work(self.replicas[i], slices[i])
        with _one_blas_thread():
            return list(self._pool.map(run, range(len(slices))))

    def forward(self, x):
        """Logits (B, K) of the whole batch."""
        x = self.model._check_input(x)      # errors name the whole batch, not a slice

        def work(m, s):
            return _join([m(x[c]) for c in self._micro(s)])

        if self.n == 1 or len(x) < 2:
            return work(self.model, slice(0, len(x)))
        return _join(self._map(work, len(x)))

    __call__ = forward

    def forward_backward(self, x, y, label_smoothing=0.0):
        """Cross-entropy of the whole batch and its backward pass: the gradients are added
        into the model's .grad (as model.backward does). Returns (loss, logits)."""
        x = self.model._check_input(x)      # errors name the whole batch, not a slice
        B = len(x)
        if len(y) != B:
            raise ValueError(f"got {B} images but {len(y)} targets")

        def work(m, s):
            if m is not self.model:
                m.zero_grad()
            loss, logits = 0.0, []
            for c in self._micro(s):        # gradient accumulation: backward adds into .grad
                scale = (c.stop - c.start) / B
                out = m(x[c])
                loss_c, cache = ops.cross_entropy_forward(out, y[c], label_smoothing)
                m.backward(ops.cross_entropy_backward(scale, cache))
                loss = loss + loss_c * scale
                logits.append(out)
            return loss, _join(logits)

        if self.n == 1 or B < 2:
            return work(self.model, slice(0, B))
        results = self._map(work, B)
        for rep_params in self._params[1:len(results)]:  # a fixed order: the same sum every run
            for p, q in zip(self._params[0], rep_params):
                p.accumulate(q.grad)
        return sum(r[0] for r in results), _join([r[1] for r in results])
