"""Rung 2: detection with a classifier, by scanning windows (seed 000, "fereastra mobilă").

The classifier of rung 1 only says "face or not" for a 128 x 128 crop. To find WHERE faces
are, show it every square of the photo at every size that a face might have:

    for each window size E (pixels of the photo):
        resize the photo by 128 / E, so that an E x E square becomes exactly 128 x 128
        cut 128 x 128 windows every stride pixels (`Tensor.unfold`: a view, no copy)
    classify all windows, many at a time (batch_size per forward pass)
    keep windows with face probability >= min_score; merge overlapping ones with NMS,
    and drop windows nested inside a better one (IoU alone cannot compare a small window
    with a large one around it)

Resizing the photo instead of each window is the image pyramid: one resize per size, and
the network always sees its native 128 x 128. The seed notes that this is slow (a 512-pixel
photo gives thousands of windows, each a full classifier pass) but can be surprisingly
precise when the window sizes match the face sizes.

Reading order:

    SlidingWindowDetector     the scan: images -> (window boxes, face probabilities)
    sliding_window_postprocess   threshold, NMS across all sizes, nested windows, top_k
                              (facedet.boxes.merge_windows, which Viola-Jones shares)
    detector_from_classifier  a trained classifier Detector -> a detection Detector
"""
from __future__ import annotations

import math
from collections.abc import Iterator, Sequence
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facedet.boxes import MAX_CONTAINED, merge_windows
from facedet.data.transforms import resize_image
from facedet.errors import ConfigError, FacedetError
from facedet.models.detector import Detector

Level = tuple[int, int, int, int]  # (resized height, resized width, rows of windows, columns of windows)


class SlidingWindowDetector(nn.Module):
    """Scan a classifier over every window of an image pyramid.

    Args:
        classifier: (n, 3, window, window) normalised crops -> face logits (n,).
        window: the classifier's input side (128 for the seed's CNNClassifier).
        window_sizes: window sides in pixels of the scanned image (see image_side).
        scales: extra image-pyramid factors; a window of side w on the image scaled by s
            covers w / s pixels, so the sizes scanned are {w / s}. (1.0,) = window_sizes as is.
        stride_fraction: step between windows, as a fraction of the window side (0.25:
            neighbours overlap by 75%, so every face is within 1/8 window of some window).
        batch_size: windows per classifier forward pass.
        image_side: the image's longer side is resized to this before scanning, so that
            window sizes mean the same for every photo; None scans at the given resolution.
    """

    def __init__(
        self,
        classifier: nn.Module,
        window: int = 128,
        window_sizes: Sequence[int] = (48, 64, 96, 128, 160, 224, 320),
        scales: Sequence[float] = (1.0,),
        stride_fraction: float = 0.25,
        batch_size: int = 512,
        image_side: int | None = 512,
    ) -> None:
        super().__init__()
        if not 0 < stride_fraction <= 1:
            raise ConfigError(f"stride_fraction must be in (0, 1], got {stride_fraction}")
        self.classifier = classifier
        self.window = window
        self.sizes = sorted({round(w / s) for w in window_sizes for s in scales})
        self.stride = max(1, round(window * stride_fraction))  # in pixels of each resized level
        self.batch_size = batch_size
        self.image_side = image_side

    # ------------------------------------------------------------------ the plan

    def scanned_size(self, height: int, width: int) -> tuple[int, int]:
        """(height, width) of the image actually scanned, after the image_side resize."""
        if self.image_side is None:
            return height, width
        factor = self.image_side / max(height, width)
        return max(1, round(height * factor)), max(1, round(width * factor))

    def levels(self, height: int, width: int) -> list[Level]:
        """One level per window size that fits the scanned image: (Hr, Wr, rows, cols).

        A window larger than the image's shorter side is skipped (if none fits, the shorter
        side itself is used). At window size E the image is resized by window / E to Hr x Wr,
        and rows x cols windows are cut; the last row/column may overhang the bottom/right
        edge, which is padded with 0 (the mean colour after normalisation).
        """
        return self._levels(*self.scanned_size(height, width))

    def _levels(self, height: int, width: int) -> list[Level]:
        """`levels` for an image already at its scanned size."""
        sizes = [e for e in self.sizes if e <= min(height, width)] or [min(height, width)]
        plan = []
        for size in sizes:
            hr, wr = round(height * self.window / size), round(width * self.window / size)
            rows = math.ceil(max(hr - self.window, 0) / self.stride) + 1
            cols = math.ceil(max(wr - self.window, 0) / self.stride) + 1
            plan.append((hr, wr, rows, cols))
        return plan

    def num_windows(self, height: int, width: int) -> int:
        """Windows scanned in one height x width image (all levels)."""
        return sum(rows * cols for _, _, rows, cols in self.levels(height, width))

    def window_boxes(self, height: int, width: int) -> Tensor:
        """(n, 4) "xyxy" fractional boxes of every window, in scan order (level, row, column).

        Windows overhanging the padded edge are clipped to the image.
        """
        boxes = []
        for hr, wr, rows, cols in self.levels(height, width):
            y = torch.arange(rows, dtype=torch.float32) * self.stride
            x = torch.arange(cols, dtype=torch.float32) * self.stride
            yy, xx = torch.meshgrid(y, x, indexing="ij")                                  # (rows, cols)
            level = torch.stack([xx, yy, xx + self.window, yy + self.window], dim=-1)      # (rows, cols, 4)
            level = level.reshape(-1, 4) / torch.tensor([wr, hr, wr, hr], dtype=torch.float32)
            boxes.append(level.clamp(0, 1))
        return torch.cat(boxes)

    # ------------------------------------------------------------------ the scan

    def _pieces(self, images: Tensor) -> Iterator[tuple[Tensor, Tensor, Tensor]]:
        """Windows in chunks of at most batch_size: (crops (k, 3, w, w), image index (k,), window index (k,)).

        Never holds more than one chunk of copied windows: `unfold` only makes a view, and
        advanced indexing copies just the windows of the chunk.
        """
        batch, _, height, width = images.shape
        offset = 0  # index of the level's first window among all the image's windows
        for hr, wr, rows, cols in self._levels(height, width):
            level = resize_image(images, (hr, wr))
            pad_h = (rows - 1) * self.stride + self.window - hr
            pad_w = (cols - 1) * self.stride + self.window - wr
            level = F.pad(level, (0, pad_w, 0, pad_h))                                    # (B, 3, H', W')
            grid = level.unfold(2, self.window, self.stride).unfold(3, self.window, self.stride)  # (B, 3, rows, cols, w, w)
            per_image = rows * cols
            total = batch * per_image
            for start in range(0, total, self.batch_size):
                flat = torch.arange(start, min(start + self.batch_size, total), device=images.device)
                b, r = flat // per_image, flat % per_image
                crops = grid[b, :, r // cols, r % cols]                                    # (k, 3, w, w)
                yield crops, b, offset + r
            offset += per_image

    def _batches(self, pieces: Iterator[tuple[Tensor, ...]]) -> Iterator[tuple[Tensor, ...]]:
        """Regroup chunks into batches of exactly batch_size (the last may be smaller),
        so a scan costs ceil(windows / batch_size) forward passes even across levels."""
        buffer: list[tuple[Tensor, ...]] = []
        buffered = 0
        for piece in pieces:
            buffer.append(piece)
            buffered += len(piece[0])
            while buffered >= self.batch_size:
                joined = [torch.cat(parts) for parts in zip(*buffer)]
                yield tuple(t[: self.batch_size] for t in joined)
                rest = tuple(t[self.batch_size :] for t in joined)
                buffer, buffered = [rest], len(rest[0])
        if buffered:
            yield tuple(torch.cat(parts) for parts in zip(*buffer))

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        """Scan every window of every image.

        images: (B, 3, H, W) or (3, H, W) normalised like the classifier's input, any size.
        Returns (boxes (B, n, 4) "xyxy" fractional, scores (B, n) face probabilities), n windows
        per image; the boxes are the same for every image of the batch.
        """
        if images.dim() == 3:
            images = images.unsqueeze(0)
        height, width = images.shape[-2:]
        scanned = self.scanned_size(height, width)
        images = resize_image(images, scanned)
        boxes = self.window_boxes(height, width).to(images.device)                         # (n, 4)
        scores = torch.zeros(images.shape[0], len(boxes), device=images.device)           # (B, n)
        for crops, image_index, window_index in self._batches(self._pieces(images)):
            logits = self.classifier(crops).reshape(-1)                                    # (k,)
            scores[image_index, window_index] = torch.sigmoid(logits).to(scores.dtype)
        return boxes.expand(images.shape[0], -1, -1), scores


def sliding_window_postprocess(outputs: tuple[Tensor, Tensor], *, min_score: float, nms_iou: float, top_k: int,
                               max_contained: float | None = MAX_CONTAINED) -> list[dict[str, Tensor]]:
    """Positive windows -> detections, one dict per image.

    outputs: (boxes (B, n, 4) "xyxy" fractional, scores (B, n)) from SlidingWindowDetector.
    Windows scoring >= min_score of all sizes compete in one NMS per image; then windows nested
    in a better one are dropped (facedet.boxes.suppress_nested; max_contained=None skips it): a
    48-px window inside a 96-px one has IoU 0.25 whatever their scores, so plain NMS keeps both.
    Returns [{"boxes": (K, 4) "xyxy" fractional, "scores": (K,), "labels": (K,) zeros}] with
    K <= top_k, by decreasing score (facedet.boxes.merge_windows).
    """
    return merge_windows(*outputs, min_score, nms_iou, top_k, max_contained)


class NotTrainable(nn.Module):
    """The sliding-window detector has no weights of its own: train the classifier instead."""

    def forward(self, outputs: Any, targets: Any) -> dict[str, Tensor]:
        raise FacedetError("the sliding-window detector is not trained; train its classifier "
                           "(a config with model.name=classifier) and scan with that checkpoint")


def detector_from_classifier(classifier: Detector, **options: Any) -> Detector:
    """A trained classifier Detector (task "classification") -> a detection Detector.

    options go to SlidingWindowDetector (window_sizes, scales, stride_fraction, batch_size,
    image_side). The window side is the classifier's input (`classifier.image_size`, 128 for the seed's).
    Feed the returned model whole photos, at any resolution, normalised with its mean/std.
    """
    if classifier.task != "classification":
        raise ConfigError(f"the sliding window needs a classifier checkpoint, got a '{classifier.task}' model")
    window = classifier.image_size or 128
    scanner = SlidingWindowDetector(classifier.model, window=window, **options)
    # its operating point and NMS are the classifier's (set by build_classifier for this scan,
    # or calibrated on the scan's detections and stored in the classifier's checkpoint)
    return Detector(model=scanner, criterion=NotTrainable(), postprocess=sliding_window_postprocess,
                    task="detection", mean=classifier.mean, std=classifier.std, input_policy="whole",
                    image_size=classifier.image_size, min_score=classifier.min_score, nms_iou=classifier.nms_iou,
                    top_k=classifier.top_k, calibration=classifier.calibration)
