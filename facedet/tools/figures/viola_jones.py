"""Rung 0's figures: Viola-Jones' integral image, its five feature types, the first features
AdaBoost picks, and how many windows each cascade stage throws away (seed 001).

    plot_integral_image       a small image, its integral image, one value by the recurrence
    plot_feature_types        one feature of each of the five types in the 24 x 24 window
    plot_first_features       the first stumps of a trained cascade drawn on a face
    stage_counts              windows entering each stage, summed over photos
    plot_rejection_per_stage  those counts: the cascade's attentional funnel
    face_window               a photo's largest face cut like the training crops (24 x 24)

Everything is drawn on a bare Agg figure (no pyplot), like the other figure modules.
"""
from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.axes import Axes
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor

from facedet.plots import save_figure
from facedet.boosting import crop_windows
from facedet.models.haar_features import FEATURE_TYPES, HaarFeatures, integral_image
from facedet.models.viola_jones import ViolaJonesCascade

WHITE, BLACK = "#f5f5f5", "#202020"




def _draw_rects(ax: Axes, rects: Tensor, weights: Tensor, scale: float = 1.0, alpha: float = 0.75) -> None:
    """Rectangles (4, 4) "xyxy" of one feature, white (+1) and black (-1), in pixel cells."""
    for (x0, y0, x1, y1), w in zip(rects.tolist(), weights.tolist()):
        if w == 0:
            continue
        ax.add_patch(Rectangle((x0 * scale - 0.5, y0 * scale - 0.5), (x1 - x0) * scale, (y1 - y0) * scale,
                               facecolor=WHITE if w > 0 else BLACK, edgecolor="red", linewidth=1.2, alpha=alpha))


def plot_integral_image(path: str | os.PathLike, dpi: int = 110) -> Path:
    """A 5 x 5 image, its integral image, and one entry computed by the seed's recurrence
    ii(i, j) = ii(i, j-1) + ii(i-1, j) - ii(i-1, j-1) + I(i, j)."""
    image = torch.tensor(np.random.default_rng(1).integers(0, 6, (5, 5)))
    ii = integral_image(image)[1:, 1:]  # without the zero row and column, as the seed draws it
    i, j = 3, 2
    fig = Figure(figsize=(9, 4.2))
    axes = fig.subplots(1, 2)
    for ax, grid, title in zip(axes, (image, ii), ("image I", "integral image ii")):
        ax.imshow(grid.numpy(), cmap="Blues", alpha=0.4)
        for (r, c), v in np.ndenumerate(grid.numpy()):
            ax.text(c, r, str(v), ha="center", va="center", fontsize=11)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(title)
    axes[0].add_patch(Rectangle((-0.5, -0.5), j + 1, i + 1, fill=False, edgecolor="red", linewidth=2))
    for (r, c), colour in (((i, j), "red"), ((i, j - 1), "green"), ((i - 1, j), "green"), ((i - 1, j - 1), "orange")):
        axes[1].add_patch(Rectangle((c - 0.5, r - 0.5), 1, 1, fill=False, edgecolor=colour, linewidth=2))
    fig.suptitle(f"ii({i},{j}) = ii({i},{j - 1}) + ii({i - 1},{j}) - ii({i - 1},{j - 1}) + I({i},{j}) = "
                 f"{int(ii[i, j - 1])} + {int(ii[i - 1, j])} - {int(ii[i - 1, j - 1])} + {int(image[i, j])} = "
                 f"{int(ii[i, j])}: the sum of the red rectangle of I", fontsize=10)
    return save_figure(fig, path, dpi)


def plot_feature_types(path: str | os.PathLike, dpi: int = 110) -> Path:
    """One example of each of the five Haar-like feature types in the 24 x 24 window."""
    features = HaarFeatures.enumerate(24, stride=1)
    examples = {"two_horizontal": (4, 6, 8, 10), "two_vertical": (4, 4, 16, 8), "three_horizontal": (3, 8, 6, 8),
                "three_vertical": (6, 3, 12, 6), "four": (4, 4, 8, 8)}  # (x, y, cell width, cell height)
    fig = Figure(figsize=(12, 3))
    axes = fig.subplots(1, len(FEATURE_TYPES))
    for ax, (kind, pattern) in zip(axes, FEATURE_TYPES.items()):
        x, y, cw, ch = examples[kind]
        rows, cols = len(pattern), len(pattern[0])
        match = ((features.kinds == list(FEATURE_TYPES).index(kind))
                 & (features.rects[:, 0, 0] == x) & (features.rects[:, 0, 1] == y)
                 & (features.rects[:, 0, 2] == x + cw) & (features.rects[:, 0, 3] == y + ch)).nonzero().flatten()
        ax.imshow(np.full((24, 24), 0.55), cmap="gray", vmin=0, vmax=1)
        _draw_rects(ax, features.rects[match[0]], features.weights[match[0]], alpha=1.0)
        count = int((features.kinds == list(FEATURE_TYPES).index(kind)).sum())
        ax.set_title(f"{kind.replace('_', ' ')}\n{cols} x {rows} cells, {count:,} features", fontsize=9)
        ax.set_xticks([])
        ax.set_yticks([])
    fig.suptitle("Haar-like features: sum under white minus sum under black (5 types, 162,336 on 24 x 24)",
                 fontsize=10)
    return save_figure(fig, path, dpi)


def plot_first_features(cascade: ViolaJonesCascade, face: Tensor, path: str | os.PathLike, count: int = 4,
                        title: str = "", dpi: int = 110) -> Path:
    """The first `count` stumps AdaBoost picked, each drawn on `face` (24, 24) grey levels,
    with its stage, vote alpha and polarity. On real faces the first ones are the dark band
    of the eyes over the brighter cheeks, and the bright nose bridge between the eyes."""
    count = min(count, len(cascade.thresholds))
    stage_of = torch.bucketize(torch.arange(count), cascade.stage_ends, right=True)
    fig = Figure(figsize=(2.6 * max(count, 1), 3.2))
    axes = np.atleast_1d(fig.subplots(1, max(count, 1)))
    kinds = list(FEATURE_TYPES)
    for k, ax in enumerate(axes):
        ax.imshow(face.float().numpy(), cmap="gray", vmin=0, vmax=255)
        ax.set_xticks([])
        ax.set_yticks([])
        if k >= count:
            continue
        _draw_rects(ax, cascade.rects[k], cascade.rect_weights[k], alpha=0.55)
        side = "face brighter on white" if cascade.polarities[k] > 0 else "face darker on white"
        ax.set_title(f"#{k + 1} (stage {int(stage_of[k]) + 1}) {kinds[int(cascade.feature_kinds[k])].replace('_', ' ')}"
                     f"\nalpha {float(cascade.alphas[k]):.2f}, {side}", fontsize=8)
    fig.suptitle(title or "the first features AdaBoost chose", fontsize=10)
    return save_figure(fig, path, dpi)


def stage_counts(cascade: ViolaJonesCascade, greys: Sequence[Tensor]) -> list[int]:
    """Windows entering each stage (K values) and passing all (one more), summed over grey photos (H, W)."""
    total = [0] * (cascade.num_stages + 1)
    for grey in greys:
        counts: list[int] = []
        cascade.scan(grey, stage_counts=counts)
        total = [a + b for a, b in zip(total, counts)]
    return total


def plot_rejection_per_stage(counts: Sequence[int], path: str | os.PathLike, stage_sizes: Sequence[int] = (),
                             title: str = "", dpi: int = 110) -> Path:
    """The cascade as a funnel: windows entering each stage (log scale) and the share each stage rejects."""
    counts = list(counts)
    stages = len(counts) - 1
    fig = Figure(figsize=(max(6.0, 0.55 * stages + 3), 4.2))
    ax = fig.subplots()
    xs = np.arange(1, stages + 2)
    ax.bar(xs, counts, color=["tab:blue"] * stages + ["tab:green"])
    ax.set_yscale("log")
    ax.set_xticks(xs, [str(k) for k in range(1, stages + 1)] + ["pass"])
    ax.set_xlabel("stage (windows entering it)" + (" - stumps per stage below" if stage_sizes else ""))
    ax.set_ylabel("windows")
    for x, entering, leaving in zip(xs, counts, counts[1:]):
        if entering:
            ax.text(x, entering, f"-{100 * (1 - leaving / entering):.0f}%", ha="center", va="bottom", fontsize=7)
    for x, size in zip(xs, stage_sizes):
        ax.text(x, ax.get_ylim()[0], f"{size}", ha="center", va="bottom", fontsize=7, color="white")
    average = sum(c * s for c, s in zip(counts, stage_sizes)) / counts[0] if counts[0] and stage_sizes else None
    note = f"; {average:.1f} stumps evaluated per window on average" if average is not None else ""
    ax.set_title(title or f"rejection per stage: {counts[0]:,} windows in, {counts[-1]:,} out{note}", fontsize=10)
    ax.grid(axis="y", alpha=0.3)
    return save_figure(fig, path, dpi)


def face_window(grey: Tensor, boxes: Tensor, size: int = 24) -> Tensor | None:
    """The largest face of a photo as the cascade sees its training faces: the square around the
    box ("tight" framing), moved inside the photo, resized to size x size. grey (H, W); boxes (M, 4)
    "xyxy" pixels. Returns (size, size) grey levels, or None without a box."""
    if boxes is None or not len(boxes):
        return None
    height, width = grey.shape
    box = boxes[(boxes[:, 2:] - boxes[:, :2]).prod(1).argmax()].float()
    side = min(float((box[2:] - box[:2]).max()), height, width)
    centre = (box[:2] + box[2:]) / 2
    x0 = int(round(min(max(float(centre[0]) - side / 2, 0), width - side)))
    y0 = int(round(min(max(float(centre[1]) - side / 2, 0), height - side)))
    return crop_windows(grey, torch.tensor([[x0, y0, x0 + int(side), y0 + int(side)]]), size)[0]
