"""Benchmark a training step (forward + backward + AdamW) and inference, side by side with
PyTorch eager when it is installed:

    python -m minivit.bench                       # tiny and small, batch 128, CPU
    python -m minivit.bench --kernels fast reference   # both kernel sets, in one rotation
    python -m minivit.bench --shapes tiny --profile
    python -m minivit.bench --device cuda --shapes gpu --batch 128 512

The two frameworks are timed alternately in one process (so both see the same machine
state) and the median of --steps rounds is reported. Peak memory of a training step is
measured in a fresh subprocess per framework (CPU: growth of the peak resident set size;
GPU: the allocator's peak).
"""
import argparse
import json
import statistics
import subprocess
import sys
import threading
import time

import numpy as np

from . import ops
from .backend import set_device, synchronize, to_device, xp_for
from .data_parallel import MICRO_BATCH, DataParallel
from .kernels import KERNELS
from .model import ViT
from .optim import AdamW
from .config import PRESETS

SHAPES = {
    "tiny": dict(patch_size=4, embed_dim=128, depth=6, num_heads=4, mlp_ratio=2.0),
    "small": dict(patch_size=4, embed_dim=192, depth=6, num_heads=6, mlp_ratio=2.0),
    **{f"{k}-preset": {m: PRESETS[k][m] for m in ("patch_size", "embed_dim", "depth", "num_heads",
                                                  "mlp_ratio")} for k in PRESETS},
}
SHAPES["cpu"], SHAPES["gpu"] = SHAPES.pop("cpu-preset"), SHAPES.pop("gpu-preset")


def train_flops(shape, batch, img=32, num_classes=10):
    """Analytic FLOPs of one training step: 2 per multiply-add, backward = 2x forward."""
    P, D, L = shape["patch_size"], shape["embed_dim"], shape["depth"]
    M = int(D * shape["mlp_ratio"])
    N = (img // P) ** 2
    T = N + 1
    fwd = 2 * N * (3 * P * P) * D                      # patch embedding
    fwd += L * (2 * T * D * 3 * D                      # qkv
                + 2 * 2 * T * T * D                    # q k^T and A v, all heads
                + 2 * T * D * D                        # proj
                + 2 * 2 * T * D * M)                   # fc1, fc2
    fwd += 2 * D * num_classes
    return 3 * fwd * batch


# --- the two step functions ---------------------------------------------------------------
def minivit_setup(shape, batch, device, seed=0, micro_batch=MICRO_BATCH, kernels="auto",
                  data_parallel=True):
    xp = xp_for(device)
    model = ViT(**shape, seed=seed, device=device, kernels=kernels)
    opt = AdamW(model.named_parameters(), lr=1e-4, weight_decay=0.05)
    rng = np.random.default_rng(seed)
    x = to_device(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32), device)
    y = to_device(rng.integers(0, 10, batch), device)

    # as the training command runs it: the batch split over cores, in micro-batches
    # (without data parallelism: the whole batch in one thread, BLAS threaded)
    dp = (DataParallel(model, micro_batch=micro_batch or None) if data_parallel
          else DataParallel(model, num_threads=1, micro_batch=None))

    def step():
        model.zero_grad()
        dp.forward_backward(x, y)
        opt.step()
        synchronize(xp)

    def infer():
        dp.eval()
        dp(x)
        synchronize(xp)
        dp.train()
    return model, opt, step, infer


def torch_setup(model, batch, device, seed=0):
    import torch

    from .torch_ref import from_minivit
    dev = "cuda" if device == "cuda" else "cpu"
    ref = from_minivit(model, torch.float32).to(dev)
    opt = torch.optim.AdamW(ref.parameters(), lr=1e-4, weight_decay=0.05)
    rng = np.random.default_rng(seed)
    x = torch.from_numpy(rng.standard_normal((batch, 3, 32, 32)).astype(np.float32)).to(dev)
    y = torch.from_numpy(rng.integers(0, 10, batch)).to(dev)
    sync = torch.cuda.synchronize if dev == "cuda" else (lambda: None)

    def step():
        opt.zero_grad(set_to_none=True)
        torch.nn.functional.cross_entropy(ref(x), y).backward()
        opt.step()
        sync()

    def infer():
        with torch.no_grad():
            ref.eval()
            ref(x)
            ref.train()
        sync()
    return step, infer


def _median_ms(fn, rounds):
    times = []
    for _ in range(rounds):
        t = time.perf_counter()
        fn()
        times.append((time.perf_counter() - t) * 1e3)
    return statistics.median(times)


def time_alternating(fns, steps, warmup, clock=time.perf_counter):
    """{name: median ms} with the functions called in turn, round after round
    (clock: wall-clock by default; time.thread_time for the CPU time of this thread)."""
    for fn in fns.values():
        for _ in range(warmup):
            fn()
    times = {k: [] for k in fns}
    for _ in range(steps):
        for k, fn in fns.items():
            t = clock()
            fn()
            times[k].append((clock() - t) * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


# --- peak memory, in a child process ------------------------------------------------------
def _peak_child(framework, shape_name, batch, device, micro_batch, kernels, data_parallel):
    """Runs in a fresh process: prints the peak memory of two training steps in MiB."""
    set_device(device)
    model, _, step, _ = minivit_setup(SHAPES[shape_name], batch, device, micro_batch=micro_batch,
                                      kernels=kernels, data_parallel=data_parallel)
    if framework == "torch":
        step, _ = torch_setup(model, batch, device)
    if device == "cuda":
        if framework == "torch":
            import torch
            torch.cuda.reset_peak_memory_stats()
            base = torch.cuda.memory_allocated()
            step(), step()
            peak = torch.cuda.max_memory_allocated() - base
        else:
            import cupy
            pool = cupy.get_default_memory_pool()
            base = pool.used_bytes()
            step(), step()
            peak = pool.total_bytes() - base
        print(json.dumps(peak / 2**20))
        return
    # The peak resident set size (VmHWM) is inherited from the parent across fork, so reset
    # it first (Linux: writing 5 to clear_refs), then peak growth over the current RSS.
    base = _status_kib("VmRSS")
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        print(json.dumps(float("nan")))
        return
    step(), step()
    print(json.dumps((_status_kib("VmHWM") - base) / 1024))


def _status_kib(field):
    with open("/proc/self/status") as f:
        for line in f:
            if line.startswith(field + ":"):
                return int(line.split()[1])
    raise OSError(f"no {field} in /proc/self/status")


def peak_memory(framework, shape_name, batch, device, micro_batch=MICRO_BATCH, kernels="auto",
                data_parallel=True):
    cmd = [sys.executable, "-m", "minivit.bench", "--peak-child", framework, shape_name,
           str(batch), device, str(micro_batch), kernels, str(int(data_parallel))]
    try:
        out = subprocess.run(cmd, capture_output=True, text=True, timeout=600, check=True)
        return float(out.stdout.strip().splitlines()[-1])
    except (subprocess.SubprocessError, ValueError, IndexError):
        return float("nan")


# --- per-layer profile --------------------------------------------------------------------
class Profiler:
    """Wraps functions/methods so their time adds up under a category.

    On the CPU the data-parallel threads run layers at the same time, so wall-clock
    intervals would overlap: each call is charged the CPU time of its own thread
    (time.thread_time; BLAS runs in the calling thread there). On a GPU: wall-clock time
    between device synchronisations."""

    def __init__(self, xp):
        self.xp, self.totals, self.undo = xp, {}, []
        self.clock = time.perf_counter if xp is not np else time.thread_time

    def wrap(self, owner, name, category):
        fn = getattr(owner, name)
        totals, xp, clock = self.totals, self.xp, self.clock
        lock = threading.Lock()

        def timed(*args, **kwargs):
            synchronize(xp)
            t = clock()
            out = fn(*args, **kwargs)
            synchronize(xp)
            with lock:
                totals[category] = totals.get(category, 0.0) + clock() - t
            return out
        setattr(owner, name, timed)
        self.undo.append((owner, name, fn))

    def restore(self):
        for owner, name, fn in reversed(self.undo):
            setattr(owner, name, fn)


def profile(shape, batch, device, steps, micro_batch=MICRO_BATCH, kernels="auto",
            data_parallel=True):
    from . import nn as nn_mod
    from . import optim as optim_mod
    from .kernels import select
    from .ops import block as block_mod
    xp = xp_for(device)
    prof = Profiler(xp)
    kernel_set = select(kernels, xp)
    for d in ("forward", "backward"):
        prof.wrap(block_mod, f"mhsa_{d}", "attention (qkv, softmax, A v, proj)")
        prof.wrap(block_mod, f"mlp_{d}", "MLP (fc1, GELU, fc2)")
        prof.wrap(kernel_set, f"layernorm_{d}", "LayerNorm")       # every LayerNorm, the final one too
        prof.wrap(nn_mod.PatchEmbed, d, "patch embedding")
        prof.wrap(nn_mod.Linear, d, "head")
        prof.wrap(ops, f"cross_entropy_{d}", "loss")
    prof.wrap(optim_mod.AdamW, "step", "optimiser (AdamW)")
    cpu_total = time.process_time if xp is np else time.perf_counter
    try:
        _, _, step, _ = minivit_setup(shape, batch, device, micro_batch=micro_batch,
                                      kernels=kernels, data_parallel=data_parallel)
        step()
        prof.totals.clear()
        t, c = time.perf_counter(), cpu_total()
        for _ in range(steps):
            step()
        wall, total = time.perf_counter() - t, cpu_total() - c
    finally:
        prof.restore()
    rows = sorted(prof.totals.items(), key=lambda kv: -kv[1])
    rows.append(("other (residuals, [CLS]/pos, pooling, Python)", total - sum(prof.totals.values())))
    kind = "CPU time, all threads" if xp is np else "GPU, wall-clock"
    print(f"\nwhere a training step's time goes ({kernel_set.NAME} kernels, {steps} steps, "
          f"{wall / steps * 1e3:.0f} ms/step "
          f"wall-clock; {kind}: {total / steps * 1e3:.0f} ms/step):")
    for name, t in rows:
        print(f"  {name:48s} {t / steps * 1e3:8.1f} ms  {100 * t / total:5.1f}%")


# --- the command --------------------------------------------------------------------------
def main(argv=None):
    if argv is None and len(sys.argv) > 1 and sys.argv[1] == "--peak-child":
        a = sys.argv[2:]
        return _peak_child(a[0], a[1], int(a[2]), a[3], int(a[4]), a[5], a[6] == "1")
    p = argparse.ArgumentParser(prog="python -m minivit.bench", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=["tiny", "small"])
    p.add_argument("--batch", type=int, nargs="+", default=[128])
    p.add_argument("--device", choices=["cpu", "cuda"], default="cpu")
    p.add_argument("--kernels", nargs="+", choices=KERNELS, default=["auto"],
                   help="kernel sets to time, side by side (auto: fast on the CPU, reference on CUDA)")
    p.add_argument("--no-data-parallel", dest="data_parallel", action="store_false",
                   help="the whole batch in one thread (BLAS threaded), no micro-batches")
    p.add_argument("--steps", type=int, default=10, help="timed rounds (median reported)")
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--no-torch", action="store_true", help="time minivit only")
    p.add_argument("--no-memory", action="store_true", help="skip the peak-memory subprocesses")
    p.add_argument("--profile", action="store_true", help="per-layer breakdown of a step")
    p.add_argument("--micro-batch", type=int, default=MICRO_BATCH,
                   help="images per micro-batch on each CPU core (0: the core's whole slice at once)")
    args = p.parse_args(argv)
    if args.micro_batch < 0:
        p.error(f"--micro-batch must be 0 (off) or a positive number of images, got {args.micro_batch}")
    set_device(args.device)
    from .kernels import select
    try:
        names = list(dict.fromkeys(select(k, xp_for(args.device)).NAME for k in args.kernels))
    except ValueError as e:
        p.error(f"--kernels: {e}")
    try:
        import torch
        have_torch = not args.no_torch
        torch_info = f"PyTorch {torch.__version__}, {torch.get_num_threads()} threads"
    except ImportError:
        have_torch, torch_info = False, "PyTorch not installed: minivit only"
    dp = "data-parallel" if args.data_parallel else "one thread, no micro-batches"
    print(f"device {args.device}, float32, {torch_info}; minivit {dp}; median of {args.steps} steps")
    head = (f"{'shape':>7s} {'batch':>5s} {'params':>7s} {'kernels':>9s} | {'minivit ms':>10s} "
            f"{'img/s':>6s} {'GFLOP/s':>7s} {'infer img/s':>11s} {'peak MiB':>8s}")
    if have_torch:
        head += f" | {'torch ms':>8s} {'img/s':>6s} {'infer img/s':>11s} {'peak MiB':>8s} | {'ratio':>5s}"
    print(head)
    results = []
    for name in args.shapes:
        for batch in args.batch:
            shape = SHAPES[name]
            fns, params = {}, None
            for k in names:          # every kernel set and PyTorch in one rotation
                model, _, step, infer = minivit_setup(shape, batch, args.device, micro_batch=args.micro_batch,
                                                      kernels=k, data_parallel=args.data_parallel)
                fns.update({k: step, k + "_infer": infer})
                params = model.num_params()
            if have_torch:
                tstep, tinfer = torch_setup(model, batch, args.device)
                fns.update(torch=tstep, torch_infer=tinfer)
            ms = time_alternating(fns, args.steps, args.warmup)

            def mem(framework, kernels="auto"):
                if args.no_memory:
                    return float("nan")
                return peak_memory(framework, name, batch, args.device, args.micro_batch, kernels,
                                   args.data_parallel)
            torch_mem = mem("torch") if have_torch else None
            flops = train_flops(shape, batch)
            for k in names:
                r = dict(shape=name, batch=batch, params=params, kernels=k, minivit_ms=ms[k],
                         minivit_gflops=flops / ms[k] / 1e6,
                         minivit_infer_ips=batch / ms[k + "_infer"] * 1e3,
                         minivit_peak_mib=mem("minivit", k))
                line = (f"{name:>7s} {batch:5d} {params / 1e6:6.2f}M {k:>9s} | {ms[k]:10.1f} "
                        f"{batch / ms[k] * 1e3:6.0f} {r['minivit_gflops']:7.1f} "
                        f"{r['minivit_infer_ips']:11.0f} {r['minivit_peak_mib']:8.0f}")
                if have_torch:
                    r.update(torch_ms=ms["torch"], torch_infer_ips=batch / ms["torch_infer"] * 1e3,
                             torch_peak_mib=torch_mem, ratio=ms[k] / ms["torch"])
                    line += (f" | {ms['torch']:8.1f} {batch / ms['torch'] * 1e3:6.0f} "
                             f"{r['torch_infer_ips']:11.0f} {torch_mem:8.0f} | {r['ratio']:5.2f}")
                print(line, flush=True)
                results.append(r)
            del model, step, infer, fns
    if args.profile:
        for name in args.shapes:
            for k in names:
                profile(SHAPES[name], args.batch[0], args.device, max(3, args.steps // 2),
                        args.micro_batch, k, args.data_parallel)
    return results


if __name__ == "__main__":
    main()
