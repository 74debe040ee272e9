"""Checking boxes read from label files, and reporting what was fixed in one line.

Real label files are noisy. faces-mask has twelve boxes ending at xmax = 401 on
400-pixel-wide images (Pascal VOC counts pixels from 1); BCCD has two boxes of zero
area; FDDB ellipses often reach past the image border. Every reader sends its boxes
through `sanitize_boxes`, which

  - clips every box to the image (boxes beyond the tolerance are clipped too, but counted),
  - drops the boxes left with zero or negative area (counted),
  - refuses NaN / inf coordinates (a broken file, not noise): DataError.

A reader adds up the counts in a `ReadStats` and, if anything was dropped, clipped
far, or skipped (or a YOLO split had no label file at all), emits one `DataWarning`
such as "faces-mask: dropped 2 zero-area boxes".
"""
from __future__ import annotations

import warnings
from dataclasses import dataclass, field
from pathlib import Path
from typing import NamedTuple

import numpy as np
import torch
from torch import Tensor

from facedet.boxes import clip_boxes
from facedet.errors import DataError

# How far (pixels) a box may reach past the image edge and still count as ordinary
# label noise: 1 px from VOC's 1-based pixel numbering, plus 1 px of rounding.
EDGE_TOLERANCE_PX = 2.0


class DataWarning(UserWarning):
    """Label noise that a reader repaired or removed (the counts are in the message)."""


class SanitizedBoxes(NamedTuple):
    """What `sanitize_boxes` returns."""

    boxes: Tensor  # (N, 4) float32 "xyxy" pixels, clipped to the image, all N boxes
    keep: Tensor  # (N,) bool, True where the clipped box still has positive area
    n_dropped: int  # boxes with zero or negative area after clipping (= (~keep).sum())
    n_far_outside: int  # kept boxes that reached more than `tolerance` px past an edge


def sanitize_boxes(
    boxes_xyxy: Tensor | np.ndarray,
    width: int,
    height: int,
    where: str,
    tolerance: float = EDGE_TOLERANCE_PX,
) -> SanitizedBoxes:
    """Clip (N, 4) "xyxy" pixel boxes to a width x height image and flag empty ones.

    Every box is clipped to [0, width] x [0, height]. Those that reached more than
    `tolerance` pixels outside are clipped as well but counted in `n_far_outside`,
    so that a reader can report them (a box far outside usually means a wrong
    format or image size rather than noise). `where` names the label file in the
    error raised for NaN/inf coordinates.

    Example: a 400 x 300 image, boxes [[10, 20, 401, 50], [5, 5, 5, 9]]
    -> boxes [[10, 20, 400, 50], [5, 5, 5, 9]], keep [True, False], 1 dropped, 0 far.
    """
    boxes = torch.as_tensor(boxes_xyxy, dtype=torch.float64).reshape(-1, 4)
    finite = torch.isfinite(boxes).all(dim=1)  # (N,)
    if not bool(finite.all()):
        first = int((~finite).nonzero()[0])
        raise DataError(f"{where}: box {first} has a non-finite coordinate {boxes[first].tolist()}")

    limits = torch.tensor([width, height, width, height], dtype=torch.float64)  # (4,)
    # How far each box reaches past the left/top (negative coords) or right/bottom edges.
    overshoot = torch.cat([-boxes[:, :2], boxes[:, 2:] - limits[2:]], dim=1).amax(dim=1)  # (N,)
    # Area is judged on the float32 boxes that are kept: a 1e-66 px side is positive in
    # float64 but rounds to zero in float32, and a zero side breaks log(h) in box encoders.
    clipped = clip_boxes(boxes, width, height).float()  # (N, 4)
    keep = (clipped[:, 2] > clipped[:, 0]) & (clipped[:, 3] > clipped[:, 1])  # (N,)
    return SanitizedBoxes(
        boxes=clipped,
        keep=keep,
        n_dropped=int((~keep).sum()),
        n_far_outside=int((keep & (overshoot > tolerance)).sum()),
    )


@dataclass
class ReadStats:
    """Running counts of one reader call, reported as a single warning line."""

    name: str  # the data set, as it appears in the message ("faces-mask")
    boxes: int = 0  # boxes kept
    dropped: int = 0  # boxes with no area left after clipping
    far_outside: int = 0  # kept boxes clipped by more than the tolerance
    skipped_images: list[Path] = field(default_factory=list)
    no_label_files: Path | None = None  # YOLO: the folder searched when no image had a label file
    orphan_annotations: list[Path] = field(default_factory=list)  # VOC beside images: .xml without an image

    def add(self, sanitized: SanitizedBoxes) -> None:
        """Count one image's sanitized boxes."""
        self.boxes += len(sanitized.keep) - sanitized.n_dropped
        self.dropped += sanitized.n_dropped
        self.far_outside += sanitized.n_far_outside

    def message(self) -> str | None:
        """'<name>: dropped 2 zero-area boxes; ...', or None when there is nothing to say."""
        parts = []
        if self.dropped:
            parts.append(f"dropped {_plural(self.dropped, 'zero-area box')}")
        if self.far_outside:
            parts.append(
                f"clipped {_plural(self.far_outside, 'box')} reaching more than "
                f"{EDGE_TOLERANCE_PX:g} px outside the image"
            )
        if self.skipped_images:
            parts.append(
                f"skipped {_plural(len(self.skipped_images), 'unreadable image')} "
                f"(first: {self.skipped_images[0]})"
            )
        if self.orphan_annotations:
            parts.append(
                f"left out {_plural(len(self.orphan_annotations), 'annotation file')} without an image beside "
                f"(first: {self.orphan_annotations[0]})"
            )
        if self.no_label_files is not None:
            parts.append(f"no label files in {self.no_label_files}: every image read as without objects")
        return f"{self.name}: {'; '.join(parts)}" if parts else None

    def warn(self) -> None:
        """Emit the message as a DataWarning, if there is one."""
        message = self.message()
        if message is not None:
            warnings.warn(message, DataWarning, stacklevel=3)


def _plural(count: int, noun: str) -> str:
    suffix = "es" if noun.endswith("x") else "s"
    return f"{count} {noun}" if count == 1 else f"{count} {noun}{suffix}"
