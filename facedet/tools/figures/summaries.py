"""Model summaries: the torchinfo tables the seeds print, for every rung's seed-size model.

    seed_models()           name -> (a builder of the model, its input side), the ladder in order
    model_summary(...)      torchinfo's table as text, computed on the "meta" device
    plot_text(...)          any text as a PNG in a monospaced font (for the README)

The seed's models have up to 414M parameters (1.7 GB of float32); built on the "meta" device
they have shapes but no storage, so the table (layers, output shapes, parameter counts) costs
no memory and no arithmetic:

    with torch.device("meta"):
        model = GridSimpleCNNModel(7)
    print(model_summary(model, 224))      # ... Total params: 412,989,681
"""
from __future__ import annotations

import os
from collections.abc import Callable
from pathlib import Path

import torch
from matplotlib.figure import Figure
from torch import nn
from torchinfo import summary

from facedet.models.classifier import CNNClassifier
from facedet.models.face_ssd import FaceSSD
from facedet.models.grid import GridCNNModel, GridSimpleCNNModel
from facedet.models.ssd import SSD300
from facedet.models.yolo_face import YOLOFaceCNN, YOLOFaceTiny


def seed_models() -> dict[str, tuple[Callable[[], nn.Module], int]]:
    """The ladder's seed-size networks, in reading order: name -> (builder, input side).

    Parameter counts (seed 000 and the SSD tutorial): classifier 67,203,137; grid_simple
    412,989,681; grid_cnn 412,932,721; yolo_face 413,743,925; SSD300 (VOC, 20 classes)
    26,285,486. yolo_face_tiny and face_ssd are this library's compact variants.
    """
    return {
        "classifier": (lambda: CNNClassifier(512), 128),
        "grid_simple": (lambda: GridSimpleCNNModel(7), 224),
        "grid_cnn": (lambda: GridCNNModel(7), 224),
        "yolo_face": (lambda: YOLOFaceCNN(), 224),
        "yolo_face_tiny": (lambda: YOLOFaceTiny(32), 224),
        "ssd300": (lambda: SSD300(20), 300),
        "face_ssd": (lambda: FaceSSD(32, num_classes=1), 320),
    }


def model_summary(model: nn.Module, image_size: int, depth: int = 2) -> str:
    """torchinfo.summary(model, (1, 3, image_size, image_size)) as text.

    model: built on the "meta" device for free (see the module docstring) or on any other.
    """
    parameter = next(model.parameters())
    was_training = model.training
    model.eval()  # BatchNorm1d refuses a batch of one image in training mode
    try:
        stats = summary(model, input_size=(1, 3, image_size, image_size), device=parameter.device, depth=depth,
                        col_names=("output_size", "num_params"), verbose=0)
    finally:
        model.train(was_training)
    # torchinfo 1.8 prints the unit of "mult-adds" as "Units.GIGABYTES" on Python 3.11+
    return str(stats).replace("(Units.GIGABYTES)", "(G)").replace("(Units.MEGABYTES)", "(M)")


def seed_summary(name: str) -> str:
    """model_summary of one of seed_models(), built on the meta device."""
    builder, image_size = seed_models()[name]
    with torch.device("meta"):
        model = builder()
    return model_summary(model, image_size)


def plot_text(text: str, path: str | os.PathLike, title: str = "", fontsize: float = 8.0, dpi: int = 110) -> Path:
    """Render text (a torchinfo table, say) as a PNG in a monospaced font; returns the path."""
    lines = text.splitlines() or [""]
    width = max(len(line) for line in lines)
    # a monospaced character is about 0.6 em wide and a line about 1.25 em high
    fig = Figure(figsize=(0.6 * fontsize * width / 72 + 0.4, 1.25 * fontsize * (len(lines) + 2) / 72 + 0.3))
    fig.text(0.02, 0.98, (title + "\n\n" if title else "") + text, family="monospace", fontsize=fontsize,
             va="top", ha="left")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")  # nothing cut at the edges
    return path
