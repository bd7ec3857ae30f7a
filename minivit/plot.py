"""Learning curves as a PNG (needs matplotlib: pip install 'minivit[plot]').

Drawn on a bare `matplotlib.figure.Figure` (its own Agg canvas), never through pyplot, so
it works without a display and leaves the caller's backend alone: `train()` called from a
Jupyter notebook keeps the notebook's inline figures.
"""
from matplotlib.figure import Figure


def plot_curves(records, path):
    epochs = [r for r in records if r["type"] == "epoch"]
    if not epochs:
        return
    e = [r["epoch"] + 1 for r in epochs]
    fig = Figure(figsize=(10, 4))
    ax1, ax2 = fig.subplots(1, 2)
    ax1.plot(e, [r["train_loss"] for r in epochs], label="train")
    tested = [r for r in epochs if "test_acc" in r]      # every --eval-every epochs
    te = [r["epoch"] + 1 for r in tested]
    validated = [r for r in tested if "val_acc" in r]    # with --val-split
    ax1.plot(te, [r["test_loss"] for r in tested], "o-", label="test")
    ax2.plot(e, [r["train_acc"] for r in epochs], label="train")
    ax2.plot(te, [r["test_acc"] for r in tested], "o-", label="test")
    if validated:
        ve = [r["epoch"] + 1 for r in validated]
        ax1.plot(ve, [r["val_loss"] for r in validated], "s--", label="validation")
        ax2.plot(ve, [r["val_acc"] for r in validated], "s--", label="validation")
    ax1.set(xlabel="epoch", ylabel="loss", title="loss")
    ax2.set(xlabel="epoch", ylabel="accuracy", title="accuracy")
    for ax in (ax1, ax2):
        ax.grid(alpha=0.3)
        ax.legend()
    fig.tight_layout()
    tmp = path.with_name(path.stem + ".tmp.png")
    fig.savefig(tmp, dpi=100)
    tmp.replace(path)
