"""The learning-curve PNG: written, and the caller's matplotlib backend left alone (a
notebook calling train() keeps its inline figures)."""
import importlib

import pytest

matplotlib = pytest.importorskip("matplotlib")


def test_plot_curves_writes_png_and_keeps_the_backend(tmp_path):
    before = matplotlib.get_backend()
    matplotlib.use("svg")                    # stands in for a notebook's inline backend
    try:
        import minivit.plot
        importlib.reload(minivit.plot)       # what a first import does
        records = [dict(type="step", epoch=0, step=1, loss=2.3),
                   dict(type="epoch", epoch=0, step=1, train_loss=2.2, train_acc=0.2,
                        test_loss=2.1, test_acc=0.25)]
        minivit.plot.plot_curves(records, tmp_path / "curves.png")
        assert matplotlib.get_backend() == "svg"
        assert (tmp_path / "curves.png").read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
        assert not list(tmp_path.glob("*.tmp.png"))
    finally:
        matplotlib.use(before)
