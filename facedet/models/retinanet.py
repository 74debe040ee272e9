"""Rung 6: RetinaNet (Lin et al. 2017, "Focal Loss for Dense Object Detection"; seed 001).

SSD (rung 5) has two limits the course notes name, and RetinaNet answers both:

  * small objects are found on the EARLY feature maps, which are fine but semantically weak:
    conv4_3 (or FaceSSD's stride-8 map) has seen a few layers of a small receptive field.
    A feature pyramid (FPN) adds a top-down path: every level is its own backbone stage
    (1x1 "lateral" conv) PLUS the upsampled level above it, smoothed by a 3x3 conv, so the
    stride-8 level also carries what the deepest layers found.
  * a one-stage detector scores ~10^4-10^5 anchors per image, nearly all of them easy
    background. Their cross-entropy is small one by one but drowns the few positives in the
    sum. SSD keeps only the 3 x N_pos hardest negatives (hard negative mining); RetinaNet keeps
    EVERY anchor and down-weights the easy ones by (1 - p_t)^gamma: the focal loss.

Read top to bottom:
  1. anchors       - `anchor_shapes`, `level_shape`, `Anchors` (with facedet.boxes.grid_anchors)
  2. matching      - `match_anchors`: IoU >= 0.5 positive, < 0.4 negative, in between ignored
  3. model         - `SmallBackbone` (backbone.py) / `ResNetBackbone` -> `FPN` -> two `Subnet`s -> `RetinaNet`
  4. criterion     - `RetinaNetLoss`: sigmoid focal loss + Smooth L1 (or GIoU), / N_pos
  5. post-process  - `RetinaNetPostprocess`: per-level top-k, decode, merge, class-aware NMS
  6. builder       - `build_retinanet(cfg) -> Detector`

Unlike SSD there is no background column: one sigmoid per object class (multi-label, as the
notes explain), and an anchor is background when every class scores low. Boxes are
fractional "xyxy" of the network input; class c (0-based in the dataset) is logit column c.
"""
from __future__ import annotations

import math
from collections.abc import Sequence
from dataclasses import dataclass

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facedet.boxes import (anchor_wh, box_convert, box_iou, decode, encode, generalized_box_iou, greedy_nms_mask,
                           grid_anchors, pad_targets)
from facedet.config import RetinaNetConfig
from facedet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from facedet.errors import ConfigError
from facedet.models.backbone import SmallBackbone
from facedet.models.detector import MIN_SCORE, TOP_K, Detector
from facedet.models.losses import sigmoid_focal_loss

# The backbone's coarsest stage C5 has stride 2^5 = 32: inputs are padded to a multiple of it,
# so that P3-P5 tile the input exactly (P6, P7 round up, as their stride-2 convs do).
INPUT_MULTIPLE = 32
# Offsets are encoded with SSD's "variances" (facedet.boxes.encode): x10 for centres, x5 for
# log-sizes. Smooth L1 with beta 1 on these is Detectron's beta 0.11 on unscaled offsets.
VARIANCES = (0.1, 0.2)
# Decoded boxes may grow at most 1000/16 times their anchor (torchvision's bound): an untrained
# network's large log-size offsets would otherwise overflow exp() to inf.
MAX_LOG_SIZE = math.log(1000.0 / 16)
# Test-time NMS IoU of the paper (Detectron's RetinaNet), not SSD's 0.45 (detector.NMS_IOU)
NMS_IOU = 0.5

# --------------------------------------------------------------------------- 1. anchors


def anchor_shapes(size: float, scales_per_octave: int = 3, ratios: Sequence[float] = (0.5, 1.0, 2.0)) -> Tensor:
    """The anchors of one location: (A, 2) (w, h) in pixels, A = scales_per_octave x len(ratios).

    Scales 2^(i / scales_per_octave), i = 0 .. n-1 (the paper's 2^0, 2^(1/3), 2^(2/3)) split
    one octave, so the next level's base size (2x) continues the series. An anchor of side
    s = size * scale and ratio r = h / w keeps the area s^2 (facedet.boxes.anchor_wh).
    Order: scale by scale, each in every ratio. Toy check: anchor_shapes(32, 1, [1, 4]) ->
    [[32, 32], [16, 64]].
    """
    scales = torch.tensor([2.0 ** (i / scales_per_octave) for i in range(scales_per_octave)], dtype=torch.float64)
    return anchor_wh(size * scales, ratios)


def level_shape(height: int, width: int, level: int) -> tuple[int, int]:
    """(rows, cols) of pyramid level `level` (stride 2^level) for a height x width input.

    Every stride-2 layer of the backbones (3x3 pad 1, 1x1 pad 0, ResNet's 7x7 pad 3 and its
    3x3 max-pool pad 1) maps n pixels to ceil(n / 2), so level l has ceil applied l times:
    (320, 320) -> (40, 40) at level 3, (3, 3) at level 7 (320 / 128 = 2.5 rounds up).
    """
    for _ in range(level):
        height, width = -(-height // 2), -(-width // 2)
    return height, width


@dataclass(frozen=True)
class Anchors:
    """The anchor layout of a RetinaNet: which levels, what base side per level, which shapes.

    anchors = Anchors(3, 7, (32, 64, 128, 256, 512))
    anchors(320, 320)          -> (P, 4) "cxcywh" fractional of the 320 x 320 input (not clamped)
    anchors.counts(320, 320)   -> anchors per level, min_level first: [14400, 3600, 900, 225, 81]
    """

    min_level: int
    max_level: int
    sizes: tuple[float, ...]  # base side in pixels, one per level
    scales_per_octave: int = 3
    ratios: tuple[float, ...] = (0.5, 1.0, 2.0)

    @property
    def levels(self) -> range:
        return range(self.min_level, self.max_level + 1)

    @property
    def per_location(self) -> int:
        return self.scales_per_octave * len(self.ratios)

    def counts(self, height: int, width: int) -> list[int]:
        return [math.prod(level_shape(height, width, level)) * self.per_location for level in self.levels]

    def __call__(self, height: int, width: int | None = None) -> Tensor:
        width = height if width is None else width
        per_level = []
        for level, size in zip(self.levels, self.sizes):
            shapes = anchor_shapes(size, self.scales_per_octave, self.ratios)
            per_level.append(grid_anchors(*level_shape(height, width, level), 2.0 ** level, shapes))
        return torch.cat(per_level) / torch.tensor([width, height, width, height], dtype=torch.float32)


# --------------------------------------------------------------------------- 2. matching

BACKGROUND = -1  # matched label of a negative anchor
IGNORE = -2  # matched label of an anchor between bg_iou and fg_iou: no classification loss


def match_anchors(gt_boxes: Tensor, gt_labels: Tensor, valid: Tensor, anchors_xyxy: Tensor,
                  fg_iou: float = 0.5, bg_iou: float = 0.4,
                  low_quality_matches: bool = True) -> tuple[Tensor, Tensor]:
    """Assign every anchor an object, background, or "ignore", for a whole batch at once.

    gt_boxes (B, M, 4) "xyxy", gt_labels (B, M) 0-based, valid (B, M) bool (False = padding),
    anchors_xyxy (P, 4). Each anchor looks at the object it overlaps most (IoU via
    facedet.boxes.box_iou): IoU >= fg_iou -> that object's class; IoU < bg_iou -> BACKGROUND;
    in between -> IGNORE. With `low_quality_matches`, each object also claims the anchor(s)
    it overlaps most (ties included) whatever the IoU, so a face between anchors still trains one.
    returns labels (B, P) int64 (class >= 0, BACKGROUND or IGNORE),
            matched (B, P, 4) "xyxy" box of each anchor's object (meaningful where labels >= 0).
    """
    b, m, _ = gt_boxes.shape
    iou = box_iou(gt_boxes.reshape(b * m, 4), anchors_xyxy).reshape(b, m, -1)  # (B, M, P)
    iou = iou.masked_fill(~valid.unsqueeze(-1), -1.0)  # padding never wins
    overlap, obj = iou.max(dim=1)  # (B, P)
    labels = gt_labels.gather(1, obj)  # (B, P)
    labels = torch.where(overlap >= fg_iou, labels, torch.where(overlap < bg_iou, BACKGROUND, IGNORE))
    if low_quality_matches:
        best = iou.max(dim=2, keepdim=True).values  # (B, M, 1) each object's best IoU
        claims = (iou == best) & (best > 0) & valid.unsqueeze(-1)  # (B, M, P)
        claimed = claims.any(dim=1)  # (B, P)
        claimer = claims.to(torch.int8).argmax(dim=1)  # (B, P) first object claiming each anchor
        obj = torch.where(claimed, claimer, obj)
        labels = torch.where(claimed, gt_labels.gather(1, claimer), labels)
    matched = gt_boxes.gather(1, obj.unsqueeze(-1).expand(-1, -1, 4))  # (B, P, 4)
    return labels, matched


# --------------------------------------------------------------------------- 3. model


class ResNetBackbone(nn.Module):
    """torchvision's ResNet-18 or -50 (the paper's backbone family), for GPUs.

    images -> C2 = layer1, C3 = layer2, C4 = layer3, C5 = layer4 (strides 4, 8, 16, 32), as
    backbone.SmallBackbone (the CPU default, `backbone: small`) returns them. torchvision is
    imported here only: the rest of facedet never needs it. `pretrained` is a local
    torchvision state dict (no downloads at run time).
    """

    CHANNELS = {"resnet18": (64, 128, 256, 512), "resnet50": (256, 512, 1024, 2048)}

    def __init__(self, name: str, pretrained: str = "") -> None:
        super().__init__()
        try:
            import torchvision  # optional dependency, only for the large backbones
        except ImportError:
            raise ConfigError(f"model.backbone={name!r} needs torchvision (pip install torchvision); "
                              "model.backbone=small needs nothing") from None
        net = getattr(torchvision.models, name)(weights=None)
        if pretrained:
            try:
                net.load_state_dict(torch.load(pretrained, map_location="cpu", weights_only=True))
            except (OSError, RuntimeError) as err:
                raise ConfigError(f"model.pretrained={pretrained!r}: not a torchvision {name} state dict "
                                  f"({str(err).splitlines()[0]})") from None
        self.channels = self.CHANNELS[name]
        self.stem = nn.Sequential(net.conv1, net.bn1, net.relu, net.maxpool, net.layer1)  # stride 4
        self.layer2, self.layer3, self.layer4 = net.layer2, net.layer3, net.layer4

    def forward(self, images: Tensor) -> list[Tensor]:
        c2 = self.stem(images)
        c3 = self.layer2(c2)
        c4 = self.layer3(c3)
        return [c2, c3, c4, self.layer4(c4)]


def conv3x3(c_in: int, c_out: int, separable: bool, stride: int = 1) -> nn.Module:
    """A linear 3x3 convolution: plain (the paper), or depthwise 3x3 + pointwise 1x1 (about
    9 / (1 + 9 / c_out) times cheaper, what makes a 40 x 40 level affordable on a CPU)."""
    if not separable:
        return nn.Conv2d(c_in, c_out, 3, stride=stride, padding=1)
    return nn.Sequential(nn.Conv2d(c_in, c_in, 3, stride=stride, padding=1, groups=c_in, bias=False),
                         nn.Conv2d(c_in, c_out, 1))


class FPN(nn.Module):
    """Feature pyramid on C3, C4, C5 -> levels P_min .. P_max, all with `channels` channels.

        lateral:   L_l = 1x1 conv(C_l)                       l = 3, 4, 5 (from min_level)
        top-down:  M_5 = L_5,  M_l = L_l + up2(M_(l+1))       (nearest-neighbour upsampling)
        smooth:    P_l = 3x3 conv(M_l)                        (removes the upsampling's blocks)
        extra:     P_6 = 3x3 conv stride 2 (C5),  P_7 = 3x3 conv stride 2 (ReLU(P_6))
    With top_down=False, M_l = L_l: each level sees only its own stage (an SSD-like pyramid).
    Shapes for a 320 x 320 input: P3 (N, F, 40, 40), P4 20, P5 10, P6 5, P7 3.
    """

    def __init__(self, in_channels: Sequence[int], channels: int, min_level: int = 3, max_level: int = 7,
                 top_down: bool = True, separable: bool = False) -> None:
        super().__init__()
        self.min_level, self.max_level, self.top_down = min_level, max_level, top_down
        own = range(min_level, 6)  # levels made from a backbone stage
        self.lateral = nn.ModuleDict({str(l): nn.Conv2d(in_channels[l - 3], channels, 1) for l in own})
        self.smooth = nn.ModuleDict({str(l): conv3x3(channels, channels, separable)
                                     for l in own if l <= max_level})
        self.p6 = conv3x3(in_channels[2], channels, separable, stride=2) if max_level >= 6 else None
        self.p7 = conv3x3(channels, channels, separable, stride=2) if max_level >= 7 else None

    def forward(self, features: Sequence[Tensor]) -> list[Tensor]:
        c5 = features[2]
        merged: dict[int, Tensor] = {}
        above = None
        for level in range(5, self.min_level - 1, -1):  # coarse to fine
            m = self.lateral[str(level)](features[level - 3])
            if self.top_down and above is not None:
                m = m + F.interpolate(above, size=m.shape[-2:], mode="nearest")
            merged[level] = above = m
        levels = [self.smooth[str(l)](merged[l]) for l in range(self.min_level, min(5, self.max_level) + 1)]
        if self.p6 is not None:
            levels.append(self.p6(c5))
        if self.p7 is not None:
            levels.append(self.p7(F.relu(levels[-1])))
        return levels


class Subnet(nn.Module):
    """A RetinaNet subnet, one module run on every level (shared weights across levels):
    `depth` x [3x3 conv -> (GroupNorm) -> ReLU], then a plain 3x3 conv to `outputs` per anchor.

    levels [(N, F, H_l, W_l)] -> (N, sum_l H_l * W_l * A, outputs), levels first, then cells
    row by row, then the A anchors of a cell: the order of `Anchors`.
    """

    def __init__(self, channels: int, depth: int, anchors_per_location: int, outputs: int,
                 separable: bool = False, norm: bool = False) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        for _ in range(depth):
            layers.append(conv3x3(channels, channels, separable))
            if norm:  # at most 8 groups; their number must divide `channels`
                layers.append(nn.GroupNorm(math.gcd(channels, 8), channels))
            layers.append(nn.ReLU(inplace=True))
        self.tower = nn.Sequential(*layers)
        self.out = nn.Conv2d(channels, anchors_per_location * outputs, 3, padding=1)
        self.outputs = outputs
        nn.init.normal_(self.out.weight, std=0.01)  # the paper's init of the output convs
        nn.init.zeros_(self.out.bias)

    def forward(self, levels: Sequence[Tensor]) -> Tensor:
        n = levels[0].shape[0]
        # (N, A*K, H, W) -> (N, H, W, A*K) -> (N, H*W*A, K)
        return torch.cat([self.out(self.tower(p)).permute(0, 2, 3, 1).reshape(n, -1, self.outputs)
                          for p in levels], dim=1)


class RetinaNet(nn.Module):
    """Backbone -> FPN -> classification and box subnets (separate weights: the two tasks need
    different features, as the notes say).

    images (N, 3, H, W) ImageNet-normalised ->
        pred_locs   (N, P, 4) offsets to the anchors `Anchors(...)(H, W)` (facedet.boxes.encode)
        pred_logits (N, P, C) one logit per object class (no background column)
    prior_prob: the last classification conv's bias starts at -log((1 - pi) / pi), so every
    sigmoid begins near pi = 0.01: at the first step the ~10^4 background anchors then cost
    almost nothing, instead of log 2 each, and training does not blow up.
    """

    def __init__(self, backbone: nn.Module, num_classes: int, anchors_per_location: int, min_level: int = 3,
                 max_level: int = 7, channels: int = 64, head_depth: int = 4, top_down: bool = True,
                 separable: bool = True, head_norm: bool = True, prior_prob: float = 0.01) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.backbone = backbone
        self.fpn = FPN(backbone.channels[-3:], channels, min_level, max_level, top_down, separable)
        self.cls_subnet = Subnet(channels, head_depth, anchors_per_location, num_classes, separable, head_norm)
        self.box_subnet = Subnet(channels, head_depth, anchors_per_location, 4, separable, head_norm)
        nn.init.constant_(self.cls_subnet.out.bias, -math.log((1 - prior_prob) / prior_prob))

    def pyramid(self, images: Tensor) -> list[Tensor]:
        """The FPN levels P_min .. P_max, each (N, F, H_l, W_l)."""
        return self.fpn(self.backbone(images)[-3:])  # C3, C4, C5

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        levels = self.pyramid(images)
        return self.box_subnet(levels), self.cls_subnet(levels)  # (N, P, 4), (N, P, C)


# --------------------------------------------------------------------------- 4. criterion


def decode_boxes(pred_locs: Tensor, anchors_cxcywh: Tensor) -> Tensor:
    """Offsets (..., 4) and their anchors (..., 4) "cxcywh" -> boxes (..., 4) "xyxy", sizes bounded."""
    bound = pred_locs.new_tensor([math.inf, math.inf, MAX_LOG_SIZE / VARIANCES[1], MAX_LOG_SIZE / VARIANCES[1]])
    return box_convert(decode(torch.min(pred_locs, bound), anchors_cxcywh, VARIANCES), "cxcywh", "xyxy")


class RetinaNetLoss(nn.Module):
    """L = L_cls + lambda L_box, both summed over anchors and divided by N_pos (the notes'
    "LOSS FINALE RETINANET").

    L_cls: sigmoid focal loss over EVERY anchor and class except the ignored anchors (no mining):
           FL(p_t) = -alpha_t (1 - p_t)^gamma log(p_t), facedet.models.losses.sigmoid_focal_loss.
    L_box: Smooth L1 on the positives' encoded offsets (the paper), or 1 - GIoU of their decoded boxes.
    N_pos: positive anchors in the batch (at least 1). Dividing by N_pos rather than by all
    anchors is right because, after the focal weight, the easy negatives add almost nothing.

    Worked example (one anchor, one class, gamma = 2, alpha = 0.25):
        a positive scored p = 0.9:  p_t = 0.9, CE = -ln 0.9 = 0.10536,
                                     FL = 0.25 * 0.1^2 * 0.10536 = 2.634e-4 (CE / 400)
        a negative scored p = 0.9:  p_t = 0.1, CE = -ln 0.1 = 2.30259,
                                     FL = 0.75 * 0.9^2 * 2.30259 = 1.39882  (CE x 0.61)
    A well-classified anchor loses 400x, a badly classified one barely 2x (tests/test_retinanet.py).

    outputs = (pred_locs (B, P, 4), pred_logits (B, P, C)); targets: per image "boxes" (n, 4)
    "xyxy" fractional, "labels" (n,). Returns {"cls", "box"}; with no object in the batch
    "box" is exactly 0 and "cls" finite.
    """

    def __init__(self, anchors: Tensor, fg_iou: float = 0.5, bg_iou: float = 0.4, low_quality_matches: bool = True,
                 alpha: float | None = 0.25, gamma: float = 2.0, box_loss: str = "smooth_l1",
                 box_weight: float = 1.0) -> None:
        super().__init__()
        if box_loss not in ("smooth_l1", "giou"):
            raise ConfigError(f"model.box_loss={box_loss!r}: expected 'smooth_l1' or 'giou'")
        self.register_buffer("anchors", anchors)  # (P, 4) "cxcywh" of the training input
        self.fg_iou, self.bg_iou, self.low_quality_matches = fg_iou, bg_iou, low_quality_matches
        self.alpha, self.gamma = alpha, gamma
        self.box_loss, self.box_weight = box_loss, box_weight

    def match(self, targets: Sequence[dict]) -> tuple[Tensor, Tensor]:
        """labels (B, P) (class, BACKGROUND or IGNORE) and matched boxes (B, P, 4) "xyxy"."""
        gt_boxes, gt_labels, valid = pad_targets(targets, self.anchors.device)
        return match_anchors(gt_boxes, gt_labels, valid, box_convert(self.anchors, "cxcywh", "xyxy"),
                             self.fg_iou, self.bg_iou, self.low_quality_matches)

    def forward(self, outputs: tuple[Tensor, Tensor], targets: Sequence[dict]) -> dict[str, Tensor]:
        pred_locs, pred_logits = outputs  # (B, P, 4), (B, P, C)
        if pred_logits.shape[1] != len(self.anchors):
            raise ConfigError(f"RetinaNetLoss: the network made {pred_logits.shape[1]} predictions but the training "
                              f"input has {len(self.anchors)} anchors; train on model.image_size x model.image_size")
        labels, matched = self.match(targets)  # (B, P), (B, P, 4)
        positives = labels >= 0
        num_pos = positives.sum().clamp(min=1).float()

        onehot = F.one_hot(labels.clamp(min=0), pred_logits.shape[-1]).float() * positives.unsqueeze(-1)  # (B, P, C)
        focal = sigmoid_focal_loss(pred_logits, onehot, self.alpha, self.gamma)  # (B, P, C)
        cls = (focal * (labels != IGNORE).unsqueeze(-1)).sum()

        anchors = self.anchors.expand_as(pred_locs)[positives]  # (n_pos, 4) "cxcywh"
        if self.box_loss == "giou":
            boxes = decode_boxes(pred_locs[positives], anchors)
            box = (1 - generalized_box_iou(boxes, matched[positives])).sum()
        else:
            target_locs = encode(box_convert(matched[positives], "xyxy", "cxcywh"), anchors, VARIANCES)
            box = F.smooth_l1_loss(pred_locs[positives], target_locs, reduction="sum")
        return {"cls": cls / num_pos, "box": self.box_weight * box / num_pos}


# --------------------------------------------------------------------------- 5. post-process


class RetinaNetPostprocess:
    """Raw outputs -> detections per image, the paper's inference:

      1. on each level, the `pre_nms_top_k` (1000) best (anchor, class) scores at least min_score;
      2. decode those anchors' offsets;
      3. merge the levels and run class-aware NMS (facedet.boxes.greedy_nms_mask with labels,
         all images at once); keep the top_k best.

    outputs = (pred_locs (B, P, 4), pred_logits (B, P, C)); input_hw = (H, W) of the network
    input (anchors are made and cached per size), None = the training size.
    returns per image {"boxes" (K, 4) "xyxy" fractional, "scores" (K,), "labels" (K,) 0-based},
    K <= top_k, sorted by decreasing score.
    """

    def __init__(self, anchors: Anchors, image_size: int, pre_nms_top_k: int = 1000) -> None:
        self.anchors, self.image_size, self.pre_nms_top_k = anchors, image_size, pre_nms_top_k
        self._cache: dict[tuple[int, int], tuple[Tensor, list[int]]] = {}

    def anchors_for(self, input_hw: tuple[int, int] | None) -> tuple[Tensor, list[int]]:
        """Anchors (P, 4) "cxcywh" fractional and the count per level of an input of input_hw."""
        h, w = (self.image_size, self.image_size) if input_hw is None else (int(input_hw[0]), int(input_hw[1]))
        if (h, w) not in self._cache:
            if len(self._cache) >= 16:  # photos of many sizes: keep the cache small
                self._cache.clear()
            self._cache[(h, w)] = (self.anchors(h, w), self.anchors.counts(h, w))
        return self._cache[(h, w)]

    @torch.no_grad()
    def __call__(self, outputs: tuple[Tensor, Tensor], *, min_score: float, nms_iou: float, top_k: int,
                 input_hw: tuple[int, int] | None = None) -> list[dict[str, Tensor]]:
        pred_locs, pred_logits = outputs
        anchors, counts = self.anchors_for(input_hw)
        if sum(counts) != pred_logits.shape[1]:
            raise ConfigError(f"RetinaNetPostprocess: {pred_logits.shape[1]} predictions but {sum(counts)} anchors "
                              f"for input {input_hw or self.image_size}; pass input_hw=(H, W) of the network input")
        b, _, c = pred_logits.shape
        scores = pred_logits.sigmoid()
        cand_scores, cand_index = [], []  # per level: (B, k) scores and flat (anchor * C + class) indices
        start = 0
        for count in counts:  # at most 5 levels; each step covers every image
            level_scores = scores[:, start:start + count].reshape(b, count * c)
            top, index = level_scores.topk(min(self.pre_nms_top_k, count * c), dim=1)  # (B, k) best first
            cand_scores.append(top)
            cand_index.append(index + start * c)
            start += count
        cand_scores, cand_index = torch.cat(cand_scores, dim=1), torch.cat(cand_index, dim=1)  # (B, K)
        # sort the merged candidates of each image by score: greedy NMS visits them in this order
        cand_scores, order = cand_scores.masked_fill(cand_scores < min_score, -1.0).sort(dim=1, descending=True)
        cand_index = cand_index.gather(1, order)
        valid = cand_scores >= min_score
        anchor, label = cand_index // c, cand_index % c  # (B, K)
        locs = pred_locs.gather(1, anchor.unsqueeze(-1).expand(-1, -1, 4))  # (B, K, 4)
        boxes = decode_boxes(locs.float(), anchors.to(locs.device)[anchor])  # (B, K, 4) "xyxy"
        keep = greedy_nms_mask(boxes, valid, nms_iou, label)  # (B, K) class-aware
        kept = cand_scores.masked_fill(~keep, -1.0)
        best_scores, best = kept.topk(min(top_k, kept.shape[1]), dim=1)  # (B, top_k)
        found = best_scores >= min_score
        best_boxes = boxes.gather(1, best.unsqueeze(-1).expand(-1, -1, 4))
        best_labels = label.gather(1, best)
        return [{"boxes": best_boxes[i][found[i]], "scores": best_scores[i][found[i]],
                 "labels": best_labels[i][found[i]]} for i in range(b)]


# --------------------------------------------------------------------------- 6. builder


def check_config(cfg: RetinaNetConfig) -> None:
    """Refuse settings no RetinaNet can use, naming the key."""
    if not 3 <= cfg.min_level <= 5:
        raise ConfigError(f"model.min_level={cfg.min_level}: expected 3, 4 or 5 (levels come from C3, C4, C5)")
    if not max(cfg.min_level, 3) <= cfg.max_level <= 7:
        raise ConfigError(f"model.max_level={cfg.max_level}: expected from model.min_level ({cfg.min_level}) to 7")
    levels = cfg.max_level - cfg.min_level + 1
    if len(cfg.anchor_sizes) != levels or min(cfg.anchor_sizes) <= 0:
        raise ConfigError(f"model.anchor_sizes={cfg.anchor_sizes}: expected {levels} positive sides in pixels, "
                          f"one per level P{cfg.min_level}-P{cfg.max_level}")
    if not cfg.anchor_ratios or min(cfg.anchor_ratios) <= 0 or cfg.scales_per_octave < 1:
        raise ConfigError(f"model.anchor_ratios={cfg.anchor_ratios}, model.scales_per_octave={cfg.scales_per_octave}: "
                          "expected positive ratios and at least one scale")
    if not 0 <= cfg.bg_iou <= cfg.fg_iou <= 1:
        raise ConfigError(f"model.bg_iou={cfg.bg_iou}, model.fg_iou={cfg.fg_iou}: expected 0 <= bg_iou <= fg_iou <= 1")
    if not 0 < cfg.prior_prob < 1:
        raise ConfigError(f"model.prior_prob={cfg.prior_prob}: expected a probability strictly between 0 and 1")
    if cfg.image_size % INPUT_MULTIPLE:
        raise ConfigError(f"model.image_size={cfg.image_size}: expected a multiple of {INPUT_MULTIPLE}")
    for key in ("width", "fpn_channels", "pre_nms_top_k"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"model.{key}={getattr(cfg, key)}: expected a positive number")
    if cfg.head_depth < 0:
        raise ConfigError(f"model.head_depth={cfg.head_depth}: expected 0 or more")


def build_retinanet(cfg: RetinaNetConfig) -> Detector:
    """RetinaNet + RetinaNetLoss (anchors of the training crop) + RetinaNetPostprocess (anchors
    of each input size): a "scalable" Detector that runs on photos of any size."""
    check_config(cfg)
    anchors = Anchors(cfg.min_level, cfg.max_level, tuple(cfg.anchor_sizes), cfg.scales_per_octave,
                      tuple(cfg.anchor_ratios))
    if cfg.backbone == "small":
        backbone: nn.Module = SmallBackbone(cfg.width)
    elif cfg.backbone in ResNetBackbone.CHANNELS:
        backbone = ResNetBackbone(cfg.backbone, cfg.pretrained)
    else:
        raise ConfigError(f"model.backbone={cfg.backbone!r}: expected small, resnet18 or resnet50")
    model = RetinaNet(backbone, cfg.num_classes, anchors.per_location, cfg.min_level, cfg.max_level,
                      cfg.fpn_channels, cfg.head_depth, cfg.top_down, cfg.separable, cfg.head_norm, cfg.prior_prob)
    criterion = RetinaNetLoss(anchors(cfg.image_size), cfg.fg_iou, cfg.bg_iou, cfg.low_quality_matches,
                              cfg.focal_alpha, cfg.focal_gamma, cfg.box_loss, cfg.box_weight)
    postprocess = RetinaNetPostprocess(anchors, cfg.image_size, cfg.pre_nms_top_k)
    return Detector(model, criterion, postprocess, mean=IMAGENET_MEAN, std=IMAGENET_STD, image_size=cfg.image_size,
                    input_policy="scalable", max_size=cfg.max_size, size_multiple=INPUT_MULTIPLE,
                    min_score=MIN_SCORE, nms_iou=NMS_IOU, top_k=TOP_K)
