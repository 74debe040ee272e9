"""What a feature-pyramid level sees (rung 6): the input pixels that can change one cell.

SSD finds small objects on its earliest map, whose cells have passed through few layers:
their "field" (the input pixels that can change them) is small and their features are
shallow, "semantically weak" in the notes' words. FPN's top-down path adds the upsampled
deeper levels to every level, so a stride-8 cell then depends on most of the image and on
the deepest layers too. The field is measured, not computed from layer arithmetic: the
gradient of one cell with respect to the input is non-zero exactly on the pixels it depends on.

    cell_field(model, size, level_index)   bool (size, size) mask of the pixels one centre cell depends on
    plot_cell_fields(fields, path)         the masks side by side on a photo, with their extents
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from PIL import Image
from torch import Tensor, nn


def cell_field(model: nn.Module, size: int, level_index: int = 0) -> Tensor:
    """The input pixels that can change the centre cell of pyramid level `level_index`.

    model: a facedet RetinaNet (anything with `pyramid(images) -> [levels]`); it is run in
    eval mode on four random (3, size, size) inputs, whose fields are merged: on one input a
    ReLU that happens to be off hides a pixel. Returns (size, size) bool.
    """
    was_training = model.training
    model.eval()
    images = torch.randn(4, 3, size, size, requires_grad=True)
    level = model.pyramid(images)[level_index]  # (4, F, h, w)
    h, w = level.shape[-2:]
    level[:, :, h // 2, w // 2].sum().backward()  # the images are independent: one backward for all four
    model.train(was_training)
    return images.grad.abs().sum(dim=(0, 1)) > 0


def field_extent(field: Tensor) -> tuple[int, int]:
    """(width, height) in pixels of the bounding box of a field mask (H, W) bool."""
    rows, cols = field.any(dim=1).nonzero(), field.any(dim=0).nonzero()
    if len(rows) == 0:
        return 0, 0
    return int(cols.max() - cols.min() + 1), int(rows.max() - rows.min() + 1)


def plot_cell_fields(fields: dict[str, Tensor], path: str | os.PathLike, image: Image.Image | None = None,
                     title: str = "", dpi: int = 110) -> Path:
    """Each field (H, W) bool drawn over `image` (or grey), titled with its extent in pixels."""
    fig = Figure(figsize=(3.6 * len(fields), 3.9), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(fields)))
    for ax, (name, field) in zip(axes, fields.items()):
        h, w = field.shape
        base = np.asarray(image.convert("RGB").resize((w, h))) / 255.0 if image is not None else np.full((h, w, 3), 0.6)
        ax.imshow(base * 0.4 + 0.6 * field.numpy()[..., None] * np.array([1.0, 0.85, 0.3]))  # field in yellow
        fw, fh = field_extent(field)
        ax.set_title(f"{name}\nfield {fw} x {fh} px of {w} x {h}", fontsize=9)
        ax.axis("off")
    if title:
        fig.suptitle(title, fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")
    return path
