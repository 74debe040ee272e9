"""The binary cross-entropy worked example of seed 000 ("Exemplu de calcul").

Truth t = [0, 1, 0, 1], predictions p = [0.2, 0.4, 0.1, 0.7]:

    t  p    t log p          (1 - t) log(1 - p)    -(sum)
    0  0.2  0                log 0.8 = -0.2231     0.2231
    1  0.4  log 0.4 = -0.9163  0                   0.9163
    0  0.1  0                log 0.9 = -0.1054     0.1054
    1  0.7  log 0.7 = -0.3567  0                   0.3567
    BCE = (0.2231 + 0.9163 + 0.1054 + 0.3567) / 4 = 0.4004

    bce_terms(t, p)             the table above, computed
    plot_bce_worked_example     the table, and the two curves -log p and -log(1 - p) with
                                the four predictions on them; the mean is the grid rung's
                                GridLoss on the same numbers laid out as a 2 x 2 grid
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import Tensor

from facedet.models.grid import GridLoss

SEED_TRUTH = (0.0, 1.0, 0.0, 1.0)
SEED_PREDICTIONS = (0.2, 0.4, 0.1, 0.7)


def bce_terms(truth: Sequence[float] | Tensor, probs: Sequence[float] | Tensor) -> dict[str, Tensor]:
    """Each element's two terms and its loss: truth (N,) 0/1, probs (N,) in (0, 1) ->
    {"term1": t log p, "term2": (1 - t) log(1 - p), "loss": -(term1 + term2)}, each (N,).
    A term whose factor t or 1 - t is 0 is exactly 0 (not 0 * log 0 = NaN)."""
    t = torch.as_tensor(truth, dtype=torch.float64)
    p = torch.as_tensor(probs, dtype=torch.float64)
    term1 = torch.where(t > 0, t * torch.log(p), torch.zeros_like(p))
    term2 = torch.where(t < 1, (1 - t) * torch.log1p(-p), torch.zeros_like(p))
    return {"term1": term1, "term2": term2, "loss": -(term1 + term2)}


def plot_bce_worked_example(
    path: str | os.PathLike,
    truth: Sequence[float] = SEED_TRUTH,
    probs: Sequence[float] = SEED_PREDICTIONS,
    dpi: int = 110,
) -> Path:
    """Draw the worked example (see the module docstring) and return the PNG's path.

    The mean shown is GridLoss's on the same numbers as one 2 x 2 grid, so the figure checks
    the library's loss against the seed's hand calculation.
    """
    terms = bce_terms(truth, probs)
    t = torch.tensor(truth, dtype=torch.float32)
    p = torch.tensor(probs, dtype=torch.float32)
    mean = GridLoss(griddim=2)(p.view(1, 2, 2), t.view(1, 2, 2))["bce"].item()

    fig = Figure(figsize=(11, 4.2), layout="constrained")
    table_ax, curve_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [1.25, 1]})
    table_ax.axis("off")
    rows = [[f"{ti:g}", f"{pi:g}", f"{a:.4f}", f"{b:.4f}", f"{l:.4f}"]
            for ti, pi, a, b, l in zip(truth, probs, terms["term1"].tolist(), terms["term2"].tolist(),
                                       terms["loss"].tolist())]
    rows.append(["", "", "", "mean", f"{mean:.4f}"])
    table = table_ax.table(cellText=rows, colLabels=["t", "p", "t log p", "(1-t) log(1-p)", "-(sum)"],
                           loc="center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(10)
    table.scale(1, 1.6)
    table_ax.set_title(f"BCE = ({' + '.join(f'{v:.4f}' for v in terms['loss'].tolist())}) / {len(rows) - 1} "
                       f"= {mean:.4f}", fontsize=10)

    grid = torch.linspace(0.005, 0.995, 199)
    curve_ax.plot(grid, -torch.log(grid), color="tab:green", label="t = 1: -log p")
    curve_ax.plot(grid, -torch.log1p(-grid), color="tab:red", label="t = 0: -log(1 - p)")
    for k, (ti, pi, loss) in enumerate(zip(truth, probs, terms["loss"].tolist())):
        colour = "tab:green" if ti == 1 else "tab:red"
        curve_ax.plot([pi], [loss], "o", color=colour, ms=7, markeredgecolor="black")
        # labels stacked upwards so that nearby points (p = 0.1 and 0.2) do not overlap
        curve_ax.annotate(f"p={pi:g}: {loss:.3f}", (pi, loss), textcoords="offset points", xytext=(-4, 10 + 14 * k),
                          fontsize=8, ha="right", arrowprops={"arrowstyle": "-", "color": "grey", "lw": 0.6})
    curve_ax.set_ylim(0, 4)
    curve_ax.set_xlabel("predicted probability p")
    curve_ax.set_ylabel("loss of one cell")
    curve_ax.grid(alpha=0.3)
    curve_ax.legend(fontsize=8, loc="upper center")
    curve_ax.set_title("confident mistakes cost the most", fontsize=10)
    fig.suptitle("binary cross-entropy, the seed's worked example")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")  # nothing cut at the edges
    return path
