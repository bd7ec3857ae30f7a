"""The benchmark command runs, and its per-layer profile adds up."""
import re

import pytest

from minivit import bench


def test_bench_and_profile_add_up(capsys, monkeypatch):
    monkeypatch.setenv("MINIVIT_NUM_THREADS", "2")      # the data-parallel path
    bench.main(["--shapes", "tiny", "--batch", "8", "--steps", "2", "--warmup", "1",
                "--no-torch", "--no-memory", "--profile"])
    out = capsys.readouterr().out
    assert re.search(r"tiny\s+8\s+0\.81M\s+fast \|\s+[\d.]+", out)      # auto: fast on the CPU
    rows = re.findall(r"^  (\S.*?)\s+(-?[\d.]+) ms\s+(-?[\d.]+)%$", out, re.M)
    names = [r[0] for r in rows]
    assert any(n.startswith("attention") for n in names) and any(n.startswith("MLP") for n in names)
    shares = [float(r[2]) for r in rows]
    # each category is a part of the step's CPU time: none negative, together the whole
    assert min(shares) >= 0, out
    assert abs(sum(shares) - 100) < 0.5, out


def test_both_kernel_sets_in_one_run_with_and_without_data_parallelism(capsys, monkeypatch):
    made = []

    class Recording(bench.DataParallel):
        def __init__(self, model, num_threads=None, micro_batch=16):
            made.append((model.kernel_set().NAME, num_threads, micro_batch))
            super().__init__(model, num_threads, micro_batch)
    monkeypatch.setattr(bench, "DataParallel", Recording)
    for flags, threads, micro in (([], None, 16), (["--no-data-parallel"], 1, None)):
        made.clear()
        res = bench.main(["--shapes", "tiny", "--batch", "4", "--steps", "1", "--warmup", "0",
                          "--no-torch", "--no-memory", "--kernels", "fast", "reference", *flags])
        assert [r["kernels"] for r in res] == ["fast", "reference"]
        assert all(r["minivit_ms"] > 0 for r in res)
        assert made == [("fast", threads, micro), ("reference", threads, micro)]
    out = capsys.readouterr().out
    assert re.search(r"tiny\s+4\s+0\.81M\s+reference \|", out) and "one thread, no micro-batches" in out


def test_micro_batch_flag_reaches_the_training_step(capsys, monkeypatch):
    made = []

    class Recording(bench.DataParallel):
        def __init__(self, model, num_threads=None, micro_batch=16):
            made.append(micro_batch)
            super().__init__(model, num_threads, micro_batch)
    monkeypatch.setattr(bench, "DataParallel", Recording)
    for flag, expected in (("3", 3), ("0", None)):
        made.clear()
        bench.main(["--shapes", "tiny", "--batch", "8", "--steps", "1", "--warmup", "0",
                    "--no-torch", "--no-memory", "--micro-batch", flag])
        assert made == [expected]
    with pytest.raises(SystemExit):
        bench.main(["--micro-batch", "-1", "--no-torch"])
    assert "--micro-batch must be 0 (off) or a positive" in capsys.readouterr().err


def test_bench_ops_times_every_op_on_one_core(capsys):
    from minivit import bench_ops
    from minivit.threads import runs_serially
    try:
        import torch
        threads = torch.get_num_threads()
    except ImportError:
        threads = None
    res = bench_ops.main(["--shapes", "tiny", "--images", "2", "--rounds", "1"])
    rows = res["tiny"]
    assert [r["op"] for r in rows] == ["linear", "attention products", "softmax", "LayerNorm", "GELU"]
    assert rows[3]["shape"] == "(130, 128)"                       # 2 images x 65 tokens, dim 128
    for r in rows:
        assert r["minivit_fwd_us"] > 0 and r["minivit_bwd_us"] > 0
        if threads is not None:
            assert r["torch_fwd_us"] > 0 and r["ratio"] > 0
    out = capsys.readouterr().out
    assert "GELU" in out and "(130, 256)" in out
    # the one-core settings stayed in the timing thread
    assert not runs_serially()
    if threads is not None:
        assert torch.get_num_threads() == threads
    with pytest.raises(SystemExit):
        bench_ops.main(["--images", "0"])
    assert "--images and --rounds must be positive" in capsys.readouterr().err
