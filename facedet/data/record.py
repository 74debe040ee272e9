"""The one sample type every reader produces."""
from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

import torch
from torch import Tensor


@dataclass
class Record:
    """One annotated image, not yet decoded.

    boxes:     (N, 4) float32, "xyxy" in pixels of the upright (EXIF-rotated) image
    labels:    (N,) int64, 0-based object classes (no background class here)
    difficult: (N,) bool, VOC "difficult" flag (ignored by the evaluator)
    """

    image_path: Path
    width: int
    height: int
    boxes: Tensor = field(default_factory=lambda: torch.zeros(0, 4))
    labels: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.int64))
    difficult: Tensor = field(default_factory=lambda: torch.zeros(0, dtype=torch.bool))
