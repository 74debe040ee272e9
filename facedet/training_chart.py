"""The training chart: loss terms per epoch, and the validation metric beside them."""
from __future__ import annotations

from pathlib import Path

from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure


def plot_training_chart(history: list[dict[str, float]], path: str | Path, metric: str) -> None:
    """Save a PNG with every loss term (left axis, log scale) and `metric` (right axis).

    history: one dict per epoch, as written to metrics.csv. Draws on a bare Agg canvas rather
    than through pyplot, so it works headless and leaves the caller's matplotlib backend alone.
    """
    epochs = [row["epoch"] for row in history]  # epochs completed, 1-based
    skip = {"epoch", "iteration", "images_seen", "lr", "train_time_s"}
    terms = [k for k in dict.fromkeys(k for r in history for k in r) if k not in skip]
    losses = [k for k in terms if k == "loss" or not _is_metric(k, metric)]
    fig = Figure(figsize=(8, 4.5), dpi=100)
    FigureCanvasAgg(fig)  # attaches itself to fig
    ax = fig.add_subplot()
    for name in losses:
        xs = [e for e, r in zip(epochs, history) if name in r]
        ys = [r[name] for r in history if name in r]
        ax.plot(xs, ys, marker="o", ms=3, lw=2.2 if name == "loss" else 1.2, label=name)
    ax.set_xlabel("epoch")
    ax.set_ylabel("training loss")
    if all(r.get(k, 1) > 0 for r in history for k in losses):
        ax.set_yscale("log")
    ax.grid(alpha=0.3)
    handles, labels = ax.get_legend_handles_labels()
    points = [(e, r[metric]) for e, r in zip(epochs, history) if metric in r]
    if points:
        right = ax.twinx()
        right.plot(*zip(*points), color="black", ls="--", marker="s", ms=4, label=f"val {metric}")
        right.set_ylabel(f"validation {metric}")
        h2, l2 = right.get_legend_handles_labels()
        handles, labels = handles + h2, labels + l2
    ax.legend(handles, labels, loc="upper center", ncol=min(4, len(labels)), fontsize=8)
    ax.set_title("training chart")
    fig.tight_layout()
    fig.savefig(path)


def _is_metric(name: str, metric: str) -> bool:
    """Validation metrics are logged beside losses; losses are the criterion's terms."""
    return name == metric or name.startswith(("mAP", "AP", "val_", "recall", "accuracy", "precision", "auc"))
