"""Time each op of an encoder block on one CPU core, minivit's NumPy next to PyTorch's:

    python -m minivit.bench_ops                  # tiny, 16 images (one micro-batch)
    python -m minivit.bench_ops --shapes small --images 64

`python -m minivit.bench` says how far a whole training step is from PyTorch; this says
which ops make up the difference. Each op runs on inputs of the size one core sees in
training (a micro-batch of --images images), forward and backward, minivit's fast CPU
kernels (minivit/fast/, what training runs on the CPU) and PyTorch in turn; the median CPU time of the timing thread over --rounds rounds (after one warm-up
call) is reported. The matrix products (linear layers, attention) run on BLAS in both
frameworks; softmax, LayerNorm and GELU are NumPy passes over memory in minivit and
fused loops in PyTorch.
"""
import argparse
import time
from concurrent.futures import ThreadPoolExecutor

import numpy as np

from . import fast as ops
from .bench import SHAPES, time_alternating
from .data_parallel import MICRO_BATCH, _one_blas_thread
from .fast.parallel import bmm
from .threads import serial_in_this_thread


def _inputs(shape, images, rng):
    """Random float32 inputs of one encoder block's ops, by name, and the sizes."""
    D, H = shape["embed_dim"], shape["num_heads"]
    M, T = int(D * shape["mlp_ratio"]), (32 // shape["patch_size"]) ** 2 + 1
    R, Dh = images * T, D // H
    sizes = {"x": (R, D), "w": (M, D), "b": (M,), "dy": (R, M),               # linear D -> M
             "q": (images, H, T, Dh), "kt": (images, H, Dh, T), "v": (images, H, T, Dh),
             "dctx": (images, H, T, Dh), "s": (images, H, T, T), "da": (images, H, T, T),
             "gamma": (D,), "beta": (D,), "dln": (R, D), "h": (R, M), "dh": (R, M)}
    A = {k: rng.standard_normal(v).astype(np.float32) for k, v in sizes.items()}
    A["w"] *= D ** -0.5
    A["a"], _ = ops.softmax_forward(A["s"])
    A["vt"] = np.ascontiguousarray(A["v"].swapaxes(-1, -2))   # (.., T, Dh) -> (.., Dh, T)
    A["k"] = np.ascontiguousarray(A["kt"].swapaxes(-1, -2))   # (.., Dh, T) -> (.., T, Dh)
    text = {"linear": f"({R}, {D}) -> ({R}, {M})",
            "attention products": f"{images * H} x ({T}, {Dh}) @ ({Dh}, {T})",
            "softmax": f"({images}, {H}, {T}, {T})", "LayerNorm": f"({R}, {D})",
            "GELU": f"({R}, {M})"}
    return A, text


def _minivit_ops(A):
    """{op: (forward, backward)} as minivit's training step calls them."""
    _, c_lin = ops.linear_forward(A["x"], A["w"], A["b"])
    _, c_soft = ops.softmax_forward(A["s"])
    _, c_ln = ops.layernorm_forward(A["x"], A["gamma"], A["beta"])
    _, c_gelu = ops.gelu_forward(A["h"])
    a, dctx, da = A["a"], A["dctx"], A["da"]
    return {
        "linear": (lambda: ops.linear_forward(A["x"], A["w"], A["b"]),
                   lambda: ops.linear_backward(A["dy"], c_lin)),
        "attention products": (lambda: (bmm(A["q"], A["kt"]), bmm(a, A["v"])),   # s, A v
                               lambda: (bmm(a.swapaxes(-1, -2), dctx), bmm(dctx, A["vt"]),
                                        bmm(da, A["k"]), bmm(da.swapaxes(-1, -2), A["q"]))),
        "softmax": (lambda: ops.softmax_forward(A["s"]), lambda: ops.softmax_backward(da, c_soft)),
        "LayerNorm": (lambda: ops.layernorm_forward(A["x"], A["gamma"], A["beta"]),
                      lambda: ops.layernorm_backward(A["dln"], c_ln)),
        "GELU": (lambda: ops.gelu_forward(A["h"]), lambda: ops.gelu_backward(A["dh"], c_gelu)),
    }


def _torch_ops(A):
    """The same work with the kernels PyTorch's autograd calls."""
    import torch
    import torch.nn.functional as F
    t = {k: torch.from_numpy(v) for k, v in A.items()}
    D = A["x"].shape[-1]
    _, mean, rstd = torch.ops.aten.native_layer_norm(t["x"], [D], t["gamma"], t["beta"], 1e-6)
    a, dctx, da, q = t["a"], t["dctx"], t["da"], t["q"]
    return {
        "linear": (lambda: F.linear(t["x"], t["w"], t["b"]),
                   lambda: (t["dy"] @ t["w"], t["dy"].T @ t["x"], t["dy"].sum(0))),
        "attention products": (lambda: (q @ t["kt"], a @ t["v"]),
                               lambda: (a.transpose(-1, -2) @ dctx, dctx @ t["vt"], da @ t["k"],
                                        da.transpose(-1, -2) @ q)),
        "softmax": (lambda: torch.softmax(t["s"], -1),
                    lambda: torch.ops.aten._softmax_backward_data(da, a, -1, torch.float32)),
        "LayerNorm": (lambda: torch.ops.aten.native_layer_norm(t["x"], [D], t["gamma"], t["beta"], 1e-6),
                      lambda: torch.ops.aten.native_layer_norm_backward(
                          t["dln"], t["x"], [D], mean, rstd, t["gamma"], t["beta"], [True] * 3)),
        "GELU": (lambda: F.gelu(t["h"]), lambda: torch.ops.aten.gelu_backward(t["dh"], t["h"])),
    }


def measure(shape_name, images, rounds, use_torch=True):
    """[{op, shape, minivit_fwd_us, minivit_bwd_us, torch_fwd_us, torch_bwd_us}], one core."""
    def work():                        # a thread of its own: serial_in_this_thread stays in it
        serial_in_this_thread()
        torch = None
        if use_torch:
            try:
                import torch
                threads = torch.get_num_threads()
                torch.set_num_threads(1)
            except ImportError:
                torch = None
        try:
            with _one_blas_thread():
                A, text = _inputs(SHAPES[shape_name], images, np.random.default_rng(0))
                mine = _minivit_ops(A)
                theirs = _torch_ops(A) if torch is not None else None
                rows = []
                for name, (fwd, bwd) in mine.items():
                    fns = {"minivit_fwd": fwd, "minivit_bwd": bwd}
                    if theirs is not None:
                        fns.update(torch_fwd=theirs[name][0], torch_bwd=theirs[name][1])
                    ms = time_alternating(fns, rounds, warmup=1, clock=time.thread_time)
                    us = {k + "_us": t * 1e3 for k, t in ms.items()}
                    rows.append(dict(op=name, shape=text[name], **us))
                return rows
        finally:
            if torch is not None:
                torch.set_num_threads(threads)

    with ThreadPoolExecutor(1) as pool:
        return pool.submit(work).result()              # re-raises what the thread raised


def main(argv=None):
    p = argparse.ArgumentParser(prog="python -m minivit.bench_ops", description=__doc__.split("\n\n")[0],
                                formatter_class=argparse.ArgumentDefaultsHelpFormatter)
    p.add_argument("--shapes", nargs="+", choices=list(SHAPES), default=["tiny"])
    p.add_argument("--images", type=int, default=MICRO_BATCH,
                   help="images per call (training runs micro-batches of this many per core)")
    p.add_argument("--rounds", type=int, default=30, help="timed rounds (median reported)")
    p.add_argument("--no-torch", action="store_true", help="time minivit only")
    args = p.parse_args(argv)
    if args.images < 1 or args.rounds < 1:
        p.error(f"--images and --rounds must be positive, got {args.images} and {args.rounds}")
    results = {}
    for name in args.shapes:
        rows = results[name] = measure(name, args.images, args.rounds, not args.no_torch)
        both = "torch_fwd_us" in rows[0]
        print(f"\n{name}, {args.images} images, one core, float32: median CPU time of {args.rounds} "
              f"rounds, microseconds" + ("" if both else " (PyTorch not installed or --no-torch)"))
        head = f"  {'op':20s} {'input':32s} {'minivit fwd':>11s} {'bwd':>7s}"
        print(head + (f" | {'torch fwd':>9s} {'bwd':>7s} | {'ratio':>5s}" if both else ""))
        for r in rows:
            line = f"  {r['op']:20s} {r['shape']:32s} {r['minivit_fwd_us']:11.0f} {r['minivit_bwd_us']:7.0f}"
            if both:
                r["ratio"] = ((r["minivit_fwd_us"] + r["minivit_bwd_us"])
                              / (r["torch_fwd_us"] + r["torch_bwd_us"]))
                line += f" | {r['torch_fwd_us']:9.0f} {r['torch_bwd_us']:7.0f} | {r['ratio']:5.2f}"
            print(line, flush=True)
    return results


if __name__ == "__main__":
    main()
