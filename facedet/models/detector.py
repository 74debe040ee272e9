"""What every rung hands to the trainer, the evaluator and the user: a `Detector`.

A Detector bundles a model with its criterion and post-processor (DETR's split), and owns
the one inference path of the library: how a photo becomes the network's input, and how the
network's boxes become boxes in the photo's pixels. The CLI, the evaluator, the benchmark,
the figures and the notebooks all call it:

    det = facedet.load()                       # the shipped face detector
    found = det("photo.jpg")                   # Detections: boxes (K, 4) pixels, scores, labels, names
    found = det(["a.jpg", pil_image, array])   # a list in, a list out
    found = det("crowd.jpg", size=1280, scales=(0.5, 1, 2), min_score=0.3)

How a photo reaches the network depends on the rung (`input_policy`):

    "fixed"     stretched to image_size x image_size (grid, YOLO-face, SSD300: their heads
                have a fixed number of cells)
    "scalable"  fully convolutional (FaceSSD): the photo at its own resolution, shrunk when
                its longer side exceeds `max_size` (or resized to a chosen `size`), aspect
                ratio kept, padded to a multiple of the coarsest stride; priors are made for
                that grid. Optional image pyramid (`scales`, merged by NMS) and tiling of
                very large inputs (`tile`).
    "whole"     the model takes the photo itself (the sliding window scans its own pyramid)
"""
from __future__ import annotations

import itertools
import math
import os
from collections import defaultdict
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from typing import Any

import numpy as np
import torch
import torch.nn.functional as F
from PIL import Image
from torch import Tensor, nn

from facedet.boxes import batched_nms, clip_boxes
from facedet.data.images import load_image
from facedet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, resize_image
from facedet.errors import ConfigError, DataError

INPUT_POLICIES = ("fixed", "scalable", "whole")
# Inputs whose longer side exceeds this many pixels are cut into overlapping tiles (policy
# "scalable"): the activations of a 4000 x 3000 photo at full resolution would take gigabytes.
DEFAULT_TILE = 1024
# Tiles overlap by this much, so that a face up to this size lies whole inside some tile.
TILE_OVERLAP = 256
# At most this many input pixels go through the network at once (4 tiles of 1024 x 1024, or
# 13 photos of 640 x 480): batching saves time, but activations grow with the batch.
MAX_BATCH_PIXELS = 1 << 22
# How a rung turns scores into detections, unless it has a reason of its own: every builder
# hands its Detector `min_score`, `nms_iou` and `top_k`, and facedet.load, facedet.infer and
# facedet.calibrate run it with them (evaluation has its own protocol, facedet.config.EvalConfig).
MIN_SCORE = 0.5  # the operating point of a checkpoint that stores no calibrated one: confident detections
NMS_IOU = 0.45  # SSD's test-time NMS IoU (Liu et al. 2016); RetinaNet keeps its paper's 0.5
TOP_K = 200  # at most this many detections per photo (SSD's evaluation keeps 200)


@dataclass
class Detections:
    """The detections of one photo, boxes in its pixels.

    boxes (K, 4) float32 "xyxy" pixels, scores (K,), labels (K,) int64 0-based, sorted by
    decreasing score; `names` gives each detection's class name.
    """

    boxes: Tensor
    scores: Tensor
    labels: Tensor
    class_names: list[str]

    def __len__(self) -> int:
        return len(self.scores)

    @property
    def names(self) -> list[str]:
        return [self.class_names[i] if 0 <= i < len(self.class_names) else str(i) for i in self.labels.tolist()]

    def to_list(self, decimals: int = 1) -> list[list]:
        """[[x1, y1, x2, y2, score, label, name], ...] with plain Python numbers (for JSON)."""
        return [[*(round(v, decimals) for v in box), round(score, 4), label, name]
                for box, score, label, name in zip(self.boxes.tolist(), self.scores.tolist(), self.labels.tolist(),
                                                   self.names)]

    def as_dict(self) -> dict[str, Tensor]:
        return {"boxes": self.boxes, "scores": self.scores, "labels": self.labels}


ImageLike = str | os.PathLike | Image.Image | np.ndarray | Tensor


def to_image_tensor(image: ImageLike) -> Tensor:
    """A path, PIL image, (H, W) / (H, W, 3|4) array or (3, H, W) tensor -> (3, H, W) float32 in [0, 1].

    Paths go through `load_image` (EXIF rotation, every PIL mode, 16-bit); uint8 arrays and
    tensors are divided by 255 (a uint8 tensor is what torchvision.io.read_image returns), float
    arrays and tensors must already be in [0, 1].
    """
    if isinstance(image, (str, os.PathLike)):
        image = load_image(image)
    if isinstance(image, Image.Image):
        rgb = image if image.mode == "RGB" else image.convert("RGB")
        return torch.from_numpy(np.array(rgb)).permute(2, 0, 1).contiguous().float().div_(255.0)
    if isinstance(image, np.ndarray):
        array = image
        if array.ndim == 2:
            array = np.repeat(array[:, :, None], 3, axis=2)
        if array.ndim != 3 or array.shape[2] not in (3, 4):
            raise DataError(f"an image array must be (H, W), (H, W, 3) or (H, W, 4), got shape {image.shape}")
        # a copy, always: np.asarray(Image.open(p)) is read-only, and torch.from_numpy warns about
        # (and would share) an array it may not write; the float conversion below copies anyway
        tensor = torch.from_numpy(np.array(array[:, :, :3])).permute(2, 0, 1)
        if array.dtype == np.uint8:
            return tensor.float().div_(255.0)
        if array.dtype == np.uint16:
            return tensor.float().div_(65535.0)
        return tensor.float()
    if isinstance(image, Tensor):
        if image.dim() != 3 or image.shape[0] != 3:
            raise DataError(f"an image tensor must be (3, H, W), got shape {tuple(image.shape)}")
        if image.dtype == torch.uint8:  # what torchvision.io.read_image returns: 0..255
            return image.float().div_(255.0)
        if not image.is_floating_point():
            raise DataError(f"an image tensor must be uint8 (0-255) or float (0-1), got {image.dtype}")
        image = image.float()
        if image.numel() and (image.min() < 0 or image.max() > 1):
            raise DataError(f"a float image tensor must hold values in [0, 1], got {float(image.min()):.3g}.."
                            f"{float(image.max()):.3g}; divide 0-255 values by 255 or pass a uint8 tensor")
        return image
    raise DataError(f"cannot read an image from a {type(image).__name__}; pass a path, a PIL image, "
                    "a numpy array or a (3, H, W) tensor")


@dataclass
class _Pass:
    """One forward input: a (part of a) resized photo, and how to map its boxes back."""

    image: int  # index of the photo in the call
    input: Tensor  # (3, Hp, Wp) normalised, padded
    offset: tuple[float, float]  # (x, y) of this input's top-left corner in the resized photo
    scale: tuple[float, float]  # (sx, sy): resized / original
    keep_region: tuple[float, float, float, float]  # boxes with centres outside (resized px) are dropped


@dataclass
class Detector:
    """A model, its criterion and its post-processor, built side by side, plus how it sees photos.

    model:        images (B, 3, H, W) -> outputs (a tensor or a tuple of tensors)
    criterion:    (outputs, targets: list[dict]) -> dict[str, scalar Tensor] of weighted loss terms
    postprocess:  (outputs, *, min_score, nms_iou, top_k[, input_hw]) -> list[dict] per image with
                  "boxes" (K, 4) "xyxy" fractional of the input, "scores" (K,), "labels" (K,)
                  0-based. For task="classification" it returns face probabilities (B,).
    mean, std:    the input normalisation the model expects.
    image_size:   the square input of a "fixed" model; the training crop of a "scalable" one.
    input_policy: "fixed", "scalable" or "whole" (see the module docstring).
    max_size:     "scalable" only: by default photos keep their resolution, but a longer side
                  beyond this is shrunk to it (never enlarged); 0 = always native.
    scales:       "scalable" only: the default image pyramid, factors of `size`.
    size_multiple: "scalable" only: inputs are padded to a multiple of this (the coarsest stride).
    class_names:  names of the labels (set when loaded from a checkpoint).
    min_score, nms_iou, top_k: how its scores become detections when a call gives no other: set
                  by the rung's builder (keyword-only, no default); `min_score` is replaced by
                  the calibrated operating point of a checkpoint that stores one (`calibration`).
    """

    model: nn.Module
    criterion: nn.Module
    postprocess: Callable
    task: str = "detection"
    mean: tuple[float, float, float] = IMAGENET_MEAN
    std: tuple[float, float, float] = IMAGENET_STD
    image_size: int = 0
    input_policy: str = "fixed"
    max_size: int = 0
    size_multiple: int = 1
    scales: tuple[float, ...] = (1.0,)
    class_names: list[str] = field(default_factory=list)
    calibration: dict = field(default_factory=dict)
    source: str = ""  # the checkpoint it was loaded from
    config: Any = None  # the run's facedet.config.Config, when built by the trainer or a loader
    min_score: float = field(kw_only=True)
    nms_iou: float = field(kw_only=True)
    top_k: int = field(kw_only=True)

    @property
    def num_parameters(self) -> int:
        """Parameters of the trained network (what `fuse_batchnorm` folded away still counts)."""
        return getattr(self.model, "trained_parameters", None) or sum(p.numel() for p in self.model.parameters())

    def __post_init__(self) -> None:
        if self.input_policy not in INPUT_POLICIES:
            raise ConfigError(f"input_policy={self.input_policy!r}; expected one of {', '.join(INPUT_POLICIES)}")

    @property
    def device(self) -> torch.device:
        # a model of buffers only (the Viola-Jones cascade) says where it is through them
        return next(itertools.chain(self.model.parameters(), self.model.buffers())).device

    # ------------------------------------------------------------------ the user's call

    @torch.no_grad()
    def __call__(self, images: ImageLike | Sequence[ImageLike], *, min_score: float | None = None,
                 size: int | None = None, scales: Sequence[float] | None = None, tile: int | None = None,
                 nms_iou: float | None = None, top_k: int | None = None,
                 batch_size: int = 8) -> Detections | list[Detections]:
        """Detect in one photo (-> Detections) or a list of photos (-> list of Detections).

        min_score, nms_iou, top_k: as `detect_tensors` (None: the detector's own)
        size:      "scalable" models: resize the longer side to this many pixels (up or down); 0 = the
                   photo's own; default: the photo's own, shrunk to `self.max_size` when longer
        scales:    "scalable" models: image pyramid, factors of `size`, merged by NMS (default: `self.scales`)
        tile:      "scalable" models: inputs longer than this are cut into overlapping tiles
                   (default 1024; 0 = never)
        """
        single = not isinstance(images, (list, tuple))
        tensors = [to_image_tensor(image) for image in ([images] if single else images)]
        found = self.detect_tensors(tensors, min_score=min_score, nms_iou=nms_iou, top_k=top_k, size=size,
                                    scales=scales, tile=tile, batch_size=batch_size)
        out = [Detections(d["boxes"], d["scores"], d["labels"], list(self.class_names)) for d in found]
        return out[0] if single else out

    @torch.no_grad()
    def detect_tensors(self, images: Sequence[Tensor], *, min_score: float | None = None,
                       nms_iou: float | None = None, top_k: int | None = None, size: int | None = None,
                       scales: Sequence[float] | None = None, tile: int | None = None, batch_size: int = 8,
                       options: dict | None = None) -> list[dict[str, Tensor]]:
        """Photos (3, H, W) in [0, 1] -> per photo {"boxes" (K, 4) "xyxy" pixels, "scores", "labels"} on the CPU.

        min_score: keep detections scoring at least this; nms_iou: NMS removes a box overlapping a
        better one by more than this; top_k: at most this many per photo. None (the default of
        each) means the detector's own: its operating point (`self.min_score`, calibrated when
        its checkpoint stores one), `self.nms_iou`, `self.top_k`, set by the rung's builder.
        options: extra keyword arguments for the post-processor (e.g. the sliding window's
        max_contained=None, or nms_iou=1.0 to see every box before NMS).
        """
        options = options or {}
        if self.task != "detection":
            raise ConfigError("this checkpoint is a classifier: load it with facedet.load(), which "
                              "wraps it in a sliding window, to detect")
        min_score = self.min_score if min_score is None else min_score
        nms_iou = self.nms_iou if nms_iou is None else nms_iou
        top_k = self.top_k if top_k is None else top_k
        self.model.eval()
        if self.input_policy == "scalable":
            return self._detect_scalable(images, min_score, nms_iou, top_k, size, scales, tile, batch_size, options)
        results = []
        if self.input_policy == "whole":  # one photo at a time: the model scans it itself
            for image in images:
                results += self._run([self._normalise(image)], image_hw=[image.shape[-2:]], min_score=min_score,
                                     nms_iou=nms_iou, top_k=top_k, **options)
            return results
        for start in range(0, len(images), batch_size):
            chunk = images[start:start + batch_size]
            results += self._run([self.prepare(image) for image in chunk], image_hw=[image.shape[-2:] for image in chunk],
                                 min_score=min_score, nms_iou=nms_iou, top_k=top_k, **options)
        return results

    def prepare(self, image: Tensor) -> Tensor:
        """A "fixed" model's input for one photo (3, H, W) in [0, 1]: stretched to image_size, normalised."""
        return self._normalise(resize_image(image, (self.image_size, self.image_size)))

    # ------------------------------------------------------------------ the three policies

    def _normalise(self, image: Tensor) -> Tensor:
        mean = torch.tensor(self.mean, dtype=image.dtype).reshape(3, 1, 1)
        std = torch.tensor(self.std, dtype=image.dtype).reshape(3, 1, 1)
        return image.sub(mean).div_(std)

    def _run(self, inputs: list[Tensor], image_hw: list, **settings) -> list[dict[str, Tensor]]:
        """Same-size inputs in one batch; boxes fractional of the input -> pixels of each photo."""
        outputs = self.model(torch.stack(inputs).to(self.device))
        dets = self.postprocess(outputs, **settings)
        results = []
        for det, (h, w) in zip(dets, image_hw):
            scale = torch.tensor([w, h, w, h], dtype=torch.float32)
            results.append({"boxes": det["boxes"].float().cpu() * scale, "scores": det["scores"].float().cpu(),
                            "labels": det["labels"].cpu()})
        return results

    def _detect_scalable(self, images: Sequence[Tensor], min_score: float, nms_iou: float, top_k: int,
                         size: int | None, scales: Sequence[float], tile: int | None,
                         batch_size: int, options: dict) -> list[dict[str, Tensor]]:
        scales = self.scales if scales is None else scales
        tile = DEFAULT_TILE if tile is None else tile
        passes = [p for index, image in enumerate(images)
                  for p in self._passes(index, image, size, scales, tile)]
        # inputs of one shape share a batch: photos of one size, and the tiles of a large photo
        by_shape: dict[tuple[int, int], list[_Pass]] = defaultdict(list)
        for p in passes:
            by_shape[tuple(p.input.shape[-2:])].append(p)
        found: list[list[dict]] = [[] for _ in images]
        for (hp, wp), group in by_shape.items():
            step = max(1, min(batch_size, MAX_BATCH_PIXELS // (hp * wp)))
            for start in range(0, len(group), step):
                chunk = group[start:start + step]
                # NHWC: depthwise convolutions on large maps run ~1.5x faster in it on a CPU
                inputs = chunk[0].input[None] if len(chunk) == 1 else torch.stack([p.input for p in chunk])
                batch = inputs.to(self.device, memory_format=torch.channels_last)
                outputs = self.model(batch)
                dets = self.postprocess(outputs, min_score=min_score, nms_iou=nms_iou, top_k=top_k, input_hw=(hp, wp),
                                        **options)
                for p, det in zip(chunk, dets):
                    found[p.image].append(_to_photo(det, p, (hp, wp)))
        results = []
        for image, parts in zip(images, found):
            h, w = image.shape[-2:]
            boxes = clip_boxes(torch.cat([d["boxes"] for d in parts]), w, h)
            scores = torch.cat([d["scores"] for d in parts])
            labels = torch.cat([d["labels"] for d in parts])
            if len(parts) > 1 and nms_iou < 1.0:  # pyramid levels or tiles: one face may be found in several
                keep = batched_nms(boxes, scores, labels, nms_iou)[:top_k]
            else:
                keep = scores.argsort(descending=True, stable=True)[:top_k]
            results.append({"boxes": boxes[keep], "scores": scores[keep], "labels": labels[keep]})
        return results

    def _passes(self, index: int, image: Tensor, size: int | None, scales: Sequence[float], tile: int) -> list[_Pass]:
        """The forward inputs of one photo: one per pyramid level, or its tiles when it is large."""
        h, w = image.shape[-2:]
        m = self.size_multiple
        passes = []
        for factor in scales:
            if factor <= 0:
                raise ConfigError(f"scales must be positive, got {factor}")
            if size is None:  # the detector's policy: native, shrunk to max_size when longer
                base = min(1.0, self.max_size / max(h, w)) if self.max_size else 1.0
            else:
                base = size / max(h, w) if size else 1.0
            new_h, new_w = max(1, round(h * base * factor)), max(1, round(w * base * factor))
            resized = self._normalise(resize_image(image, (new_h, new_w)))
            hp, wp = math.ceil(new_h / m) * m, math.ceil(new_w / m) * m
            padded = F.pad(resized, (0, wp - new_w, 0, hp - new_h))  # zeros = the mean colour
            scale = (new_w / w, new_h / h)
            if not tile or max(hp, wp) <= tile:
                passes.append(_Pass(index, padded, (0.0, 0.0), scale, (-math.inf, -math.inf, math.inf, math.inf)))
                continue
            side = max(m, tile // m * m)
            overlap = min(TILE_OVERLAP, side // 2) // m * m
            for y0, y_region in _tile_starts(hp, side, overlap):
                for x0, x_region in _tile_starts(wp, side, overlap):
                    crop = padded[:, y0:y0 + side, x0:x0 + side]
                    if crop.shape[-2:] != (side, side):  # a photo narrower than a tile on one side
                        crop = F.pad(crop, (0, side - crop.shape[-1], 0, side - crop.shape[-2]))
                    passes.append(_Pass(index, crop, (float(x0), float(y0)), scale,
                                        (x_region[0], y_region[0], x_region[1], y_region[1])))
        return passes


@torch.no_grad()
def fuse_batchnorm(model: nn.Module) -> nn.Module:
    """Fold every BatchNorm that directly follows a convolution inside an nn.Sequential into
    that convolution's weights and bias (in place; the BatchNorm becomes an Identity).

    In eval mode BatchNorm is a fixed per-channel affine map y = a * x + b, so conv -> BN is one
    convolution with weights a * W and bias a * bias + b: the same outputs (to float rounding)
    with one pass over each feature map instead of two. For inference only: the model can no
    longer train its BatchNorm statistics, and its state_dict keys change.
    """
    if not hasattr(model, "trained_parameters"):
        model.trained_parameters = sum(p.numel() for p in model.parameters())
    for module in model.modules():
        if isinstance(module, nn.Sequential):
            for i in range(len(module) - 1):
                conv, bn = module[i], module[i + 1]
                if isinstance(conv, nn.Conv2d) and isinstance(bn, nn.BatchNorm2d) and not bn.training:
                    module[i] = nn.utils.fusion.fuse_conv_bn_eval(conv, bn)
                    module[i + 1] = nn.Identity()
    return model


def _tile_starts(length: int, side: int, overlap: int) -> list[tuple[int, tuple[float, float]]]:
    """Tile origins along one axis of `length` px, and the span (in px of the whole axis) whose
    box centres each tile is responsible for: from the middle of the overlap with the tile
    before to the middle of the overlap with the tile after. A face no larger than the
    overlap, centred in that span, lies whole inside the tile.
    """
    if length <= side:
        return [(0, (-math.inf, math.inf))]
    step = side - overlap
    starts = list(range(0, length - side, step)) + [length - side]
    spans = []
    for i, start in enumerate(starts):
        low = -math.inf if i == 0 else (start + starts[i - 1] + side) / 2
        high = math.inf if i == len(starts) - 1 else (starts[i + 1] + start + side) / 2
        spans.append((start, (low, high)))
    return spans


def _to_photo(det: dict[str, Tensor], p: _Pass, input_hw: tuple[int, int]) -> dict[str, Tensor]:
    """Boxes fractional of a padded input -> pixels of the original photo; drops the boxes a
    tile is not responsible for."""
    hp, wp = input_hw
    boxes = det["boxes"].float().cpu() * torch.tensor([wp, hp, wp, hp], dtype=torch.float32)
    boxes = boxes + torch.tensor([p.offset[0], p.offset[1], p.offset[0], p.offset[1]])
    cx, cy = (boxes[:, 0] + boxes[:, 2]) / 2, (boxes[:, 1] + boxes[:, 3]) / 2
    x_lo, y_lo, x_hi, y_hi = p.keep_region
    keep = (cx >= x_lo) & (cx < x_hi) & (cy >= y_lo) & (cy < y_hi)
    sx, sy = p.scale
    boxes = boxes[keep] / torch.tensor([sx, sy, sx, sy])
    return {"boxes": boxes, "scores": det["scores"].float().cpu()[keep], "labels": det["labels"].cpu()[keep]}
