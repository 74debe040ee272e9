"""A shipped detector at the end of its chapter: its boxes on a synthetic scene and on the real
photos that ship with facedet, and its measured numbers as stored beside its weights.

    plot_detections_on_photos   one panel per photo: detected boxes (with scores), hand-marked faces dashed
    shipped_photos              the photos of facedet.photos with their hand-marked faces, ready for the above
    format_stored_results       the stored numbers as text lines (what a chapter prints)
    plot_stored_results         PR curves (IoU 0.5) and recall by face size at the operating point, per data set

Boxes are "xyxy" in pixels of the photo drawn. The stored numbers come from
facedet/weights/results/<name>.json (facedet/tools/stored_results.py), never recomputed here.
"""
from __future__ import annotations

import os
from pathlib import Path
from typing import Any, Sequence

import numpy as np
import torch
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from PIL import Image
from torch import Tensor

from facedet.data.images import load_image
from facedet.evaluation import SIZE_BINS, size_bin_name
from facedet.photos import PHOTOS, photo_path
from facedet.plots import save_figure
from facedet.tools.figures.detections import OUTLINED

Scene = tuple[str, Image.Image, Tensor]  # (title, photo, hand-marked faces (M, 4) "xyxy" pixels)


def shipped_photos() -> list[Scene]:
    """Every photo of facedet.photos as (name, RGB image, its hand-marked faces (M, 4) "xyxy")."""
    return [(name, load_image(photo_path(name)).convert("RGB"), torch.tensor(photo.faces, dtype=torch.float32))
            for name, photo in PHOTOS.items()]


def plot_detections_on_photos(detector: Any, scenes: Sequence[Scene], path: str | os.PathLike, title: str = "",
                              min_score: float | None = None, caption: str = "", dpi: int = 110) -> Path:
    """One panel per scene: the detector's boxes at `min_score` (default: its own operating
    point) with their scores, the hand-marked faces dashed white. Returns the PNG's path."""
    fig = Figure(figsize=(4.2 * len(scenes), 4.6), layout="constrained")
    for ax, (name, image, faces) in zip(fig.subplots(1, len(scenes), squeeze=False)[0], scenes):
        found = detector(image, min_score=min_score)
        ax.imshow(np.asarray(image))
        for x1, y1, x2, y2 in faces.reshape(-1, 4).tolist():
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="white", linestyle="--", lw=1.4))
        for (x1, y1, x2, y2), score in zip(found.boxes.tolist(), found.scores.tolist()):
            ax.add_patch(Rectangle((x1, y1), x2 - x1, y2 - y1, fill=False, edgecolor="lime", lw=1.8))
            ax.text(x1, y1, f"{score:.2f}", color="white", fontsize=8, va="bottom", path_effects=OUTLINED, clip_on=True)
        ax.set_title(f"{name}: {len(found)} box{'es' if len(found) != 1 else ''}, {len(faces)} marked", fontsize=10)
        ax.set_xticks([])
        ax.set_yticks([])
    return save_figure(fig, path, dpi, title, caption)


def format_stored_results(results: dict[str, dict]) -> str:
    """One line per data set: photos, faces, AP50, AP30, recall at 50 false positives, and at
    the operating point its min score, precision, recall and recall by face size (found / faces)."""
    lines = []
    for data_set, entry in results.items():
        point = entry["operating_point"]
        sizes = ", ".join(f"{name} {found}/{total}" for name, (found, total) in point["recall_by_size"].items() if total)
        lines.append(f"{data_set}: {entry['photos']} photos, {entry['faces']} faces: AP50 {entry['AP50']:.3f}, "
                     f"AP30 {entry['AP30']:.3f}, recall@50FP {entry['recall_at_50fp']:.3f}; at min score "
                     f"{point['min_score']:.3f}: precision {point['precision']:.3f}, recall {point['recall']:.3f} "
                     f"(by face size: {sizes})")
    return "\n".join(lines)


def plot_stored_results(results: dict[str, dict], path: str | os.PathLike, title: str = "", dpi: int = 110) -> Path:
    """Left: each data set's stored PR curve (IoU 0.5), its AP50 in the legend; right: recall by
    face size (sqrt of the box area in the photo's pixels) at the operating point."""
    fig = Figure(figsize=(10, 4), layout="constrained")
    curves, sizes = fig.subplots(1, 2)
    bins = [size_bin_name(low, high) for low, high in SIZE_BINS]
    width = 0.8 / max(len(results), 1)
    for i, (data_set, entry) in enumerate(results.items()):
        precision, recall = np.asarray(entry["precision"]), np.asarray(entry["recall"])
        curves.plot(np.r_[0.0, recall], np.r_[precision[:1], precision], lw=1.5, color=f"C{i}",
                    label=f"{data_set} (AP50 {entry['AP50']:.3f})")
        counts = [entry["operating_point"]["recall_by_size"].get(b, (0, 0)) for b in bins]
        shares = [found / total if total else np.nan for found, total in counts]
        sizes.bar(np.arange(len(bins)) + (i - (len(results) - 1) / 2) * width, shares, width, color=f"C{i}",
                  label=f"{data_set} at min score {entry['operating_point']['min_score']:.2f}")
    curves.set(xlim=(0, 1), ylim=(0, 1.02), xlabel="recall", ylabel="precision", title="precision-recall, IoU 0.5")
    curves.grid(alpha=0.3)
    curves.legend(loc="lower left", fontsize=8)
    sizes.set_xticks(range(len(bins)), bins, fontsize=8)
    sizes.set(ylim=(0, 1.02), ylabel="recall", xlabel="face size (sqrt of the box area, px)",
              title="recall by face size at the operating point")
    sizes.legend(loc="upper left", fontsize=8)
    return save_figure(fig, path, dpi, title)

