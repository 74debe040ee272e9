"""Rung 7: CenterNet, "Objects as Points" (Zhou, Wang, Krähenbühl 2019): detection without anchors.

Every rung since YOLO-face has proposed boxes from a fixed set of places and shapes (cells,
priors) and paid for it three times (seed 001, "LIMITE DEGLI ANCHOR"): someone has to design
the anchors; training needs an IoU threshold to decide which anchor is "right" for a face;
and every face gets many near-duplicate boxes that NMS must remove. CenterNet drops all three.
An object is a point, the centre of its box. The network draws one heatmap per class at
stride 4 whose peaks are object centres, and at every pixel also predicts the box's size and
the sub-pixel offset lost to the stride. A detection is a local maximum of the heatmap: no
anchors, no matching, no NMS, one pass.

Read top to bottom:
  1. model         - `CenterNet`: a slim MobileNet-style base (FaceSSD's blocks) down to
                     stride 32, a feature-pyramid top-down path back up to stride 4, and three heads
  2. targets       - `splat_gaussians`, `encode_targets`: Gaussian peaks on the heatmap, size and
                     offset at each centre pixel
  3. criterion     - `penalty_reduced_focal_loss`, `CenterNetLoss`: {"heatmap", "size", "offset"}
  4. decoding      - `find_peaks`, `top_peaks`, `decode_peaks`, `CenterNetPostprocess`
  5. builder       - `build_centernet(cfg) -> Detector`

Units: the heatmap, size and offset maps have H/4 x W/4 pixels ("cells"); sizes and offsets
are in cells, boxes leave the post-processor as fractions of the network input, "xyxy".
What it costs: two objects whose centres fall in the same cell become one peak (one box);
the 4-px cells bound how small and how close faces can be; at most `peaks` objects per image.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facedet.boxes import box_area, box_convert, gaussian_radius
from facedet.config import CenterNetConfig
from facedet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from facedet.errors import ConfigError
from facedet.models.backbone import SmallBackbone, TopDown, conv_dw, load_legacy_keys
from facedet.models.detector import MIN_SCORE, NMS_IOU, TOP_K, Detector

# The heatmap, size and offset maps have one cell per 4 x 4 input pixels (the paper's R = 4).
OUTPUT_STRIDE = 4
# The coarsest stride of the base: inputs are padded to a multiple of it, so every level of the
# top-down path is exactly twice the size of the one above and the output is exactly input / 4.
INPUT_MULTIPLE = 32
# The heatmap's bias starts every pixel at p = sigmoid(-2.19) = 0.1 (the paper's value;
# -log((1 - 0.1) / 0.1) = -2.197). With the default bias 0 every one of the ~6,400 cells of a
# 320 x 320 crop would start at p = 0.5 and the focal loss of those negatives (about
# 0.25 x log 2 each, against a handful of centres) would swamp the first steps; RetinaNet's
# 0.01 prior is the same idea.
HEATMAP_PRIOR = 0.1
# Photos keep their resolution up to this longer side (as the shipped FaceSSD): the heatmap
# of a 640 x 480 photo is 160 x 120 cells.
DEFAULT_MAX_SIZE = 640


# --------------------------------------------------------------------------- 1. model


def head(c_in: int, c_out: int) -> nn.Sequential:
    """One CenterNet head: a 3x3 (depthwise-separable) conv with ReLU, then a 1x1 conv to c_out maps.

    The paper's heads are a full 3x3 conv to 256 channels; depthwise-separable keeps the three
    heads, which run on the large stride-4 map, about 7x cheaper.
    """
    return nn.Sequential(conv_dw(c_in, c_in), nn.Conv2d(c_in, c_out, kernel_size=1))


class CenterNet(nn.Module):
    """Objects as points, small enough to train on a CPU; fully convolutional (sides multiples of 32).

    images (N, 3, H, W) ImageNet-normalised -> a tuple of three maps at stride 4:
        pred_heatmap (N, C, H/4, W/4)  logits of "an object of class c is centred in this cell"
        pred_size    (N, 2, H/4, W/4)  box width and height, in cells
        pred_offset  (N, 2, H/4, W/4)  the centre's position inside its cell, x and y (0..1 when right)

    Base: facedet.models.backbone.SmallBackbone, FaceSSD's (shapes for width w = 32, one 320 x 320 image):
        f4 (w, 80, 80), f8 (2w, 40, 40), f16 (4w, 20, 20), f32 (8w, 10, 10)
    Up path (backbone.TopDown, a feature pyramid's top-down path; the paper's ResNet variant
    uses deconvolutions, nearest upsampling + a 1x1 lateral conv is cheaper and as good for a small net):
        p16 = conv_dw(f16 + up2(1x1 conv f32))                (4w, 20, 20)
        p8  = conv_dw(f8  + up2(1x1 conv p16))                (2w, 40, 40)
        p4  = conv_dw(f4  + up2(1x1 conv p8))                 (w, 80, 80)
    so every stride-4 cell carries what the stride-32 layers saw around it (a large face's
    centre cell must see the whole face to say how big it is). Three heads on p4.
    """

    def __init__(self, width: int = 32, num_classes: int = 1) -> None:
        super().__init__()
        w = width
        self.backbone = SmallBackbone(w)
        self.top_down = TopDown(self.backbone.channels)
        self.heatmap = head(w, num_classes)
        self.size = head(w, 2)
        self.offset = head(w, 2)
        nn.init.constant_(self.heatmap[-1].bias, -math.log((1 - HEATMAP_PRIOR) / HEATMAP_PRIOR))
        self.register_load_state_dict_pre_hook(load_legacy_keys)  # checkpoints from before backbone.py

    def features(self, images: Tensor) -> Tensor:
        """The stride-4 map every head reads: (N, 3, H, W) -> (N, w, H/4, W/4)."""
        return self.top_down(self.backbone(images))[0]

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor, Tensor]:
        p4 = self.features(images)
        return self.heatmap(p4), self.size(p4), self.offset(p4)


# --------------------------------------------------------------------------- 2. targets


def splat_gaussians(centres: Tensor, radii: Tensor, groups: Tensor, num_groups: int,
                    height: int, width: int) -> Tensor:
    """Gaussian peaks on `num_groups` maps of height x width cells, the element-wise max where they overlap.

    centres (M, 2) integer cells (x, y); radii (M,) integer cells >= 0; groups (M,) int64 which
    map each peak goes to -> maps (num_groups, height, width) in [0, 1].

    Peak m is exp(-((x - x_m)^2 + (y - y_m)^2) / (2 sigma_m^2)) with sigma_m = (2 r_m + 1) / 6
    (CenterNet's choice: the (2r + 1)-cell window spans +-3 sigma), cut to the square window
    |x - x_m| <= r_m, |y - y_m| <= r_m. It is exactly 1 at its centre; a radius of 0 is a
    single 1. Where peaks of one map overlap the larger value wins (the max, not the sum:
    two nearby faces must not make a value above 1, i.e. a fake centre between them).
    Toy check: r = 1 gives sigma = 0.5, so the 4 side neighbours hold exp(-2) = 0.135 and the
    4 diagonal ones exp(-4) = 0.018.
    """
    maps = torch.zeros(num_groups, height * width, device=centres.device)
    if len(centres) == 0:
        return maps.view(num_groups, height, width)
    sigma = (2 * radii.float() + 1) / 6  # (M,)
    dx = torch.arange(width, device=centres.device)[None, :] - centres[:, :1]  # (M, W)
    dy = torch.arange(height, device=centres.device)[None, :] - centres[:, 1:]  # (M, H)
    # the Gaussian is separable: a row profile times a column profile, each cut at the radius
    gx = torch.exp(-dx.float() ** 2 / (2 * sigma[:, None] ** 2)) * (dx.abs() <= radii[:, None])
    gy = torch.exp(-dy.float() ** 2 / (2 * sigma[:, None] ** 2)) * (dy.abs() <= radii[:, None])
    peaks = gy[:, :, None] * gx[:, None, :]  # (M, H, W)
    maps.scatter_reduce_(0, groups[:, None].expand(-1, height * width), peaks.view(len(centres), -1), "amax")
    return maps.view(num_groups, height, width)


def encode_targets(targets: list[dict[str, Any]], num_classes: int, height: int, width: int,
                   min_iou: float = 0.7) -> dict[str, Tensor]:
    """Boxes -> what the network should output on a height x width cell grid (stride 4).

    targets: N dicts with "boxes" (M_n, 4) fractional "xyxy" and "labels" (M_n,) 0-based.
    Returns
        "heatmap" (N, C, H, W)  a Gaussian peak (value 1) at each box's centre cell, radius
                                 floor(gaussian_radius(w, h, min_iou)) in cells, max where they overlap
        "size"    (N, 2, H, W)  (w, h) of the box in cells, at its centre cell
        "offset"  (N, 2, H, W)  centre - centre cell, in cells (the sub-pixel part lost to the stride)
        "mask"    (N, H, W) bool  the centre cells: where size and offset are learnt
    A box of centre (cx, cy) cells sits in cell (floor(cx), floor(cy)). Two boxes with the same
    centre cell collide (CenterNet's limit): both peak there, and the larger box's size and
    offset are the target (ties: the one listed last).
    Toy check: one box [0.25, 0.25, 0.75, 0.5] on an 8 x 8 grid has centre (4, 3) cells,
    size (4, 2), offset (0, 0), and gaussian_radius(4, 2) = 0.35, so radius 0: a single 1.
    """
    device = targets[0]["boxes"].device if targets else torch.device("cpu")
    n = len(targets)
    encoded = {"heatmap": torch.zeros(n, num_classes, height, width, device=device),
               "size": torch.zeros(n, 2, height, width, device=device),
               "offset": torch.zeros(n, 2, height, width, device=device),
               "mask": torch.zeros(n, height, width, dtype=torch.bool, device=device)}
    if n == 0:
        return encoded
    counts = torch.tensor([len(t["boxes"]) for t in targets], device=device)
    boxes = torch.cat([t["boxes"].reshape(-1, 4) for t in targets]).to(device, torch.float32)
    labels = torch.cat([t["labels"].reshape(-1) for t in targets]).to(device, torch.int64)
    image_index = torch.repeat_interleave(torch.arange(n, device=device), counts)
    if len(boxes) == 0:
        return encoded
    cells = boxes * boxes.new_tensor([width, height, width, height])  # (M, 4) "xyxy" in cells
    cx, cy, w, h = box_convert(cells, "xyxy", "cxcywh").unbind(-1)  # each (M,)
    col = cx.floor().long().clamp(0, width - 1)
    row = cy.floor().long().clamp(0, height - 1)
    radius = gaussian_radius(w, h, min_iou).floor().clamp(min=0).long()
    heat = splat_gaussians(torch.stack([col, row], dim=-1), radius, image_index * num_classes + labels,
                           n * num_classes, height, width)
    encoded["heatmap"] = heat.view(n, num_classes, height, width)

    # one box per centre cell, the largest: sort by area, then (stably) by cell, keep each run's last
    cell = (image_index * height + row) * width + col  # (M,)
    order = box_area(cells).argsort(stable=True)
    order = order[cell[order].argsort(stable=True)]
    last = torch.ones(len(order), dtype=torch.bool, device=device)
    last[:-1] = cell[order][1:] != cell[order][:-1]
    keep = order[last]  # (K,)
    i, r, c = image_index[keep], row[keep], col[keep]
    encoded["size"][i, :, r, c] = torch.stack([w, h], dim=-1)[keep]
    encoded["offset"][i, :, r, c] = torch.stack([cx - col, cy - row], dim=-1)[keep]
    encoded["mask"][i, r, c] = True
    return encoded


# --------------------------------------------------------------------------- 3. criterion


def penalty_reduced_focal_loss(logits: Tensor, heatmap: Tensor, alpha: float = 2.0, beta: float = 4.0) -> Tensor:
    """CornerNet's focal loss on a Gaussian heatmap: logits and heatmap (N, C, H, W) -> scalar.

    With p = sigmoid(logit) and Y the target,
        Y = 1 (a centre):   (1 - p)^alpha log(p)
        otherwise:          (1 - Y)^beta p^alpha log(1 - p)
    summed over every cell, negated and divided by the number of centres (cells with Y = 1;
    at least 1). alpha = 2 is the focal loss's down-weighting of easy cells (a well-scored cell
    barely counts, so the ~6,400 empty cells per centre do not drown it); beta = 4 spares the
    cells near a centre: (1 - 0.9)^4 = 1e-4 at Y = 0.9, so a peak one cell off costs almost
    nothing. log p is computed as logsigmoid(logit), exact even where p rounds to 0 or 1.
    Worked example: tests/test_centernet.py::test_focal_loss_worked_example.
    """
    p = torch.sigmoid(logits)
    centre = heatmap == 1  # splat_gaussians makes exactly 1.0 at centres, and only there
    positive = (1 - p).pow(alpha) * F.logsigmoid(logits)
    negative = (1 - heatmap).pow(beta) * p.pow(alpha) * F.logsigmoid(-logits)
    total = torch.where(centre, positive, negative).sum()
    return -total / centre.sum().clamp(min=1)


def _masked_l1(pred: Tensor, target: Tensor, mask: Tensor) -> Tensor:
    """Mean |pred - target| over the masked cells' 2 values: (N, 2, H, W) x2, mask (N, H, W) -> scalar;
    0 (not NaN) when the mask is empty. The official code's RegL1Loss, which divides by 2 x objects."""
    error = (pred - target).abs().permute(0, 2, 3, 1)[mask]  # (K, 2)
    return error.sum() / max(error.numel(), 1)


class CenterNetLoss(nn.Module):
    """{"heatmap", "size", "offset"} for outputs (pred_heatmap, pred_size, pred_offset) and the
    batch's targets (list of dicts, fractional "xyxy" boxes), encoded here on the output grid:

        heatmap = penalty_reduced_focal_loss(pred_heatmap, Y, alpha, beta)
        size    = size_weight   x mean L1 of (w, h) at the centre cells     (the paper's 0.1)
        offset  = offset_weight x mean L1 of the offsets at the centre cells (the paper's 1)

    Sizes are in cells (up to 80 on a 320 x 320 crop), hence the small size weight. An image
    without objects has no centres: size and offset are exactly 0, the heatmap term is the
    negatives' loss alone.
    """

    def __init__(self, num_classes: int = 1, min_iou: float = 0.7, size_weight: float = 0.1,
                 offset_weight: float = 1.0, alpha: float = 2.0, beta: float = 4.0) -> None:
        super().__init__()
        self.num_classes, self.min_iou = num_classes, min_iou
        self.size_weight, self.offset_weight = size_weight, offset_weight
        self.alpha, self.beta = alpha, beta

    def forward(self, outputs: tuple[Tensor, Tensor, Tensor], targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        pred_heatmap, pred_size, pred_offset = outputs
        if pred_heatmap.shape[1] != self.num_classes:
            raise ConfigError(f"CenterNetLoss: {pred_heatmap.shape[1]} heatmaps for model.num_classes={self.num_classes}")
        height, width = pred_heatmap.shape[-2:]
        encoded = encode_targets([{k: v.to(pred_heatmap.device) for k, v in t.items() if k in ("boxes", "labels")}
                                  for t in targets], self.num_classes, height, width, self.min_iou)
        return {
            "heatmap": penalty_reduced_focal_loss(pred_heatmap, encoded["heatmap"], self.alpha, self.beta),
            "size": self.size_weight * _masked_l1(pred_size, encoded["size"], encoded["mask"]),
            "offset": self.offset_weight * _masked_l1(pred_offset, encoded["offset"], encoded["mask"]),
        }


# --------------------------------------------------------------------------- 4. decoding


def find_peaks(heatmap: Tensor) -> Tensor:
    """Keep the local maxima of each map: (N, C, H, W) -> same shape, every other cell set to 0.

    A cell is a peak when no cell of its 3x3 neighbourhood is larger (heat == maxpool3x3(heat),
    the border padded with -inf). This is CenterNet's replacement for NMS: the cells around a
    peak score high too, but they are not maxima. Equal neighbours (a plateau) are all kept.
    """
    pooled = F.max_pool2d(heatmap, kernel_size=3, stride=1, padding=1)
    return heatmap * (heatmap == pooled)


def top_peaks(peaks: Tensor, k: int) -> tuple[Tensor, Tensor, Tensor, Tensor]:
    """The k best cells of all classes: peaks (N, C, H, W) -> scores, labels, rows, cols, each (N, k).

    Sorted by decreasing score within each image; k is cut to C x H x W.
    """
    n, c, h, w = peaks.shape
    scores, index = peaks.reshape(n, -1).topk(min(k, c * h * w), dim=1)  # (N, k), index into C*H*W
    labels = torch.div(index, h * w, rounding_mode="floor")
    cell = index % (h * w)
    return scores, labels, torch.div(cell, w, rounding_mode="floor"), cell % w


def _at_cells(maps: Tensor, flat: Tensor) -> Tensor:
    """The 2 values of maps (N, 2, H, W) at cells flat (N, k) (row * W + col) -> (N, k, 2)."""
    n = maps.shape[0]
    return maps.reshape(n, 2, -1).gather(2, flat[:, None, :].expand(-1, 2, -1)).transpose(1, 2)


def decode_peaks(heatmap: Tensor, size: Tensor, offset: Tensor, k: int = 100) -> tuple[Tensor, Tensor, Tensor]:
    """Heatmap probabilities (N, C, H, W), size and offset maps (N, 2, H, W) in cells ->
    boxes (N, k, 4) fractional "xyxy" of the input, scores (N, k), labels (N, k).

    Peaks (`find_peaks`), the k best (`top_peaks`), then each box from its cell (col, row):
    centre = (col + offset_x, row + offset_y), (w, h) = size there (negatives clamped to 0),
    corners = centre -+ size / 2, divided by (W, H) to be fractions of the input.
    """
    n, _, h, w = heatmap.shape
    scores, labels, rows, cols = top_peaks(find_peaks(heatmap), k)
    flat = rows * w + cols  # (N, k)
    wh = _at_cells(size, flat).clamp(min=0)  # (N, k, 2)
    centre = torch.stack([cols, rows], dim=-1).to(wh.dtype) + _at_cells(offset, flat)  # (N, k, 2)
    boxes = box_convert(torch.cat([centre, wh], dim=-1), "cxcywh", "xyxy")  # (N, k, 4) in cells
    return boxes / boxes.new_tensor([w, h, w, h]), scores, labels


class CenterNetPostprocess:
    """Raw outputs -> detections per image: sigmoid, peaks, the top `peaks`, a score threshold. No NMS.

    Called as every rung's post-processor: (outputs, min_score=, nms_iou=, top_k=, input_hw=).
    nms_iou is accepted and ignored (the 3x3 max-pool already leaves one peak per object);
    input_hw is not needed (boxes are fractions of the grid, hence of the padded input).
    Returns N dicts {"boxes" (K, 4) fractional "xyxy", "scores" (K,), "labels" (K,) int64},
    sorted by decreasing score, K <= min(top_k, peaks).
    """

    def __init__(self, peaks: int = 100) -> None:
        self.peaks = peaks  # the paper's K: at most this many objects per image

    @torch.no_grad()
    def __call__(self, outputs: tuple[Tensor, Tensor, Tensor], *, min_score: float, nms_iou: float, top_k: int,
                 input_hw: tuple[int, int] | None = None) -> list[dict[str, Tensor]]:
        pred_heatmap, pred_size, pred_offset = outputs
        boxes, scores, labels = decode_peaks(torch.sigmoid(pred_heatmap), pred_size, pred_offset,
                                             min(self.peaks, top_k))
        keep = scores >= min_score  # (N, k); scores are sorted, so each image keeps a prefix
        return [{"boxes": b[m].clamp(0, 1), "scores": s[m], "labels": l[m]}
                for b, s, l, m in zip(boxes, scores, labels, keep)]


# --------------------------------------------------------------------------- 5. builder


def build_centernet(cfg: CenterNetConfig) -> Detector:
    """CenterNet + CenterNetLoss + CenterNetPostprocess, as a "scalable" Detector.

    Reads cfg.width, cfg.num_classes, cfg.image_size (the square training crop, a multiple of
    32), cfg.min_iou, cfg.size_weight, cfg.offset_weight, cfg.focal_alpha, cfg.focal_beta, cfg.peaks.
    """
    if cfg.image_size % INPUT_MULTIPLE:
        raise ConfigError(f"centernet: model.image_size must be a multiple of {INPUT_MULTIPLE}, got {cfg.image_size}")
    if not 0 < cfg.min_iou < 1:
        raise ConfigError(f"centernet: model.min_iou must lie strictly between 0 and 1, got {cfg.min_iou}")
    if cfg.peaks <= 0 or cfg.width < 2 or cfg.width % 2:
        raise ConfigError(f"centernet: model.peaks must be positive and model.width even and >= 2, "
                          f"got peaks={cfg.peaks}, width={cfg.width}")
    model = CenterNet(cfg.width, cfg.num_classes)
    criterion = CenterNetLoss(cfg.num_classes, cfg.min_iou, cfg.size_weight, cfg.offset_weight,
                              cfg.focal_alpha, cfg.focal_beta)
    # nms_iou: CenterNet runs no NMS, but a pyramid or tiles of one photo are merged by the
    # Detector's NMS (detector.NMS_IOU), as every scalable rung's
    return Detector(model, criterion, CenterNetPostprocess(cfg.peaks), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                    image_size=cfg.image_size, input_policy="scalable", max_size=DEFAULT_MAX_SIZE,
                    size_multiple=INPUT_MULTIPLE, min_score=MIN_SCORE, nms_iou=NMS_IOU, top_k=TOP_K)
