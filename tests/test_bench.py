"""The benchmark command runs, and its per-layer profile adds up."""
import re

from minivit import bench


def test_bench_and_profile_add_up(capsys, monkeypatch):
    monkeypatch.setenv("MINIVIT_NUM_THREADS", "2")      # the data-parallel path
    bench.main(["--shapes", "tiny", "--batch", "8", "--steps", "2", "--warmup", "1",
                "--no-torch", "--no-memory", "--profile"])
    out = capsys.readouterr().out
    assert re.search(r"tiny\s+8\s+0\.81M \|\s+[\d.]+", out)
    rows = re.findall(r"^  (\S.*?)\s+(-?[\d.]+) ms\s+(-?[\d.]+)%$", out, re.M)
    names = [r[0] for r in rows]
    assert any(n.startswith("attention") for n in names) and any(n.startswith("MLP") for n in names)
    shares = [float(r[2]) for r in rows]
    # each category is a part of the step's CPU time: none negative, together the whole
    assert min(shares) >= 0, out
    assert abs(sum(shares) - 100) < 0.5, out
