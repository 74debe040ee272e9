"""Rung 8: Faster R-CNN (Ren, He, Girshick, Sun 2015; seeds 000 and 001): propose a few hundred regions, then look.

The one-stage rungs score every anchor of a dense grid once. A two-stage detector splits the work:

  stage 1, the Region Proposal Network (RPN): a 3x3 conv slides over the feature map and, at
     every cell, gives each of its k anchors two scores (object / background: the paper's 2k
     outputs) and four box deltas. The best corrected anchors, after NMS at IoU 0.7, are the
     proposals: about 300 per photo instead of the sliding window's tens of thousands of windows.
  stage 2, the RoI head (facedet.models.roi_head, Fast R-CNN's): each proposal is cut out of
     the SAME feature map with roi_align (or roi_pool, to see what its rounding costs),
     classified among C + 1 classes (0 = background) and its box corrected per class.

Training scheme: approximate joint training (the paper's section 3.2, what its released code
uses instead of the 4-step alternation): both stages learn at once from one summed loss, and the
proposals are treated as fixed boxes, computed from detached RPN outputs, so no gradient flows
through their coordinates ("approximate": the exact gradient would need a RoI layer
differentiable in the box). The second stage learns from RoIs that exist only once the targets are
known (64 per photo, sampled among the proposals plus the ground-truth boxes), so in training mode
`FasterRCNN.forward` stops after the proposals and the criterion, handed the model's
`second_stage` when built, runs the RoI head on its sample. In eval mode forward runs the RoI head
on every proposal and `FasterRCNNPostprocess` turns that into detections. (Under DDP the head's
gradients still reach every replica: its parameters belong to the wrapped model.)

Read top to bottom:
  1. anchors      - `rpn_anchor_shapes`, `rpn_anchors`: k shapes per map, at every cell
  2. model        - `RPN`, `propose`, `FasterRCNN`
  3. criterion    - `FasterRCNNLoss`: {"rpn_cls", "rpn_box", "cls", "box"}
  4. post-process - `FasterRCNNPostprocess` (facedet.models.roi_head.decode_roi_detections)
  5. builder      - `build_faster_rcnn(cfg) -> Detector`
Boxes inside the model are "xyxy" pixels of the (padded) network input; the post-processor
returns fractions of it, as every rung's.
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
from torch import Tensor, nn

from facedet.boxes import anchor_wh, box_convert, clip_boxes, grid_anchors, greedy_nms_mask
from facedet.config import FasterRCNNConfig
from facedet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from facedet.errors import ConfigError
from facedet.models.backbone import SmallBackbone, TopDown, conv_bn
from facedet.models.detector import MIN_SCORE, TOP_K, Detector
from facedet.models.losses import fast_rcnn_loss
from facedet.models.roi_head import RoIHead, decode_roi_detections
from facedet.region_targets import (FAST_RCNN_WEIGHTS, decode_deltas, encode_deltas, label_anchors,
                                    sample_balanced, sample_rois)

# The backbone's coarsest stride: inputs are padded to a multiple of it.
INPUT_MULTIPLE = 32
# The maps the RPN reads: the paper's single stride-16 map (VGG16's conv5_3), or with `fpn`
# SmallBackbone's strides 8, 16, 32 after a top-down path (FPN's multi-scale RPN, seed 001).
STRIDES, FPN_STRIDES = (16,), (8, 16, 32)
# A proposal narrower or shorter than this (pixels, after clipping to the photo) is dropped.
MIN_PROPOSAL_SIDE = 1.0
# The RPN's deltas are not scaled (weights 1): their spread is about 0.1-0.2, so Smooth L1's
# kink moves down to 1/9 (Detectron's RPN setting); the second stage scales its deltas by
# FAST_RCNN_WEIGHTS to about 1 and keeps Fast R-CNN's kink at 1.
RPN_BETA, ROI_BETA = 1.0 / 9, 1.0
# Test-time NMS per class of the second stage (Detectron's 0.5), not SSD's 0.45.
NMS_IOU = 0.5

# --------------------------------------------------------------------------- 1. anchors


def rpn_anchor_shapes(sizes: Sequence[float], ratios: Sequence[float], num_maps: int) -> list[Tensor]:
    """The k anchor shapes (w, h) px of each map: `sizes` split evenly over the maps, finest map
    first, each size in every ratio. One map with sizes (16, 32) and ratios (1,): [[16, 16], [32, 32]]."""
    per_map = len(sizes) // num_maps
    return [anchor_wh(sizes[i * per_map:(i + 1) * per_map], ratios) for i in range(num_maps)]


def rpn_anchors(maps: Sequence[Tensor], strides: Sequence[int], shapes: Sequence[Tensor]) -> tuple[Tensor, list[int]]:
    """Anchors (P, 4) "xyxy" pixels of the input for maps [(N, F, H_l, W_l)], and the count per map.

    Order: map by map, cells row by row, a cell's k shapes side by side: the RPN's output order.
    """
    per_map = [grid_anchors(m.shape[-2], m.shape[-1], stride, s) for m, stride, s in zip(maps, strides, shapes)]
    anchors = box_convert(torch.cat(per_map), "cxcywh", "xyxy").to(maps[0].device)
    return anchors, [len(a) for a in per_map]


# --------------------------------------------------------------------------- 2. model


class RPN(nn.Module):
    """The Region Proposal Network's head, one set of weights run on every map:
    3x3 conv + ReLU, then two 1x1 convs for each of the k anchors of a cell.

    maps [(N, F, H_l, W_l)] -> logits (N, P, 2) [background, object], deltas (N, P, 4)
    (encode_deltas of the anchor, weights 1), P = sum_l H_l W_l k. Weights N(0, 0.01), the paper's.
    """

    def __init__(self, channels: int, anchors_per_cell: int) -> None:
        super().__init__()
        self.k = anchors_per_cell
        self.conv = nn.Sequential(nn.Conv2d(channels, channels, 3, padding=1), nn.ReLU(inplace=True))
        self.logits = nn.Conv2d(channels, 2 * anchors_per_cell, 1)
        self.deltas = nn.Conv2d(channels, 4 * anchors_per_cell, 1)
        for conv in (self.conv[0], self.logits, self.deltas):
            nn.init.normal_(conv.weight, std=0.01)
            nn.init.zeros_(conv.bias)

    def forward(self, maps: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        n = maps[0].shape[0]
        logits, deltas = [], []
        for m in maps:
            x = self.conv(m)
            # (N, k*2, H, W) -> (N, H, W, k*2) -> (N, H*W*k, 2): cells row by row, then anchors
            logits.append(self.logits(x).permute(0, 2, 3, 1).reshape(n, -1, 2))
            deltas.append(self.deltas(x).permute(0, 2, 3, 1).reshape(n, -1, 4))
        return torch.cat(logits, dim=1), torch.cat(deltas, dim=1)


@torch.no_grad()
def propose(logits: Tensor, deltas: Tensor, anchors: Tensor, counts: Sequence[int], input_hw: tuple[int, int],
            pre_nms_top_n: int = 1000, nms_iou: float = 0.7, post_nms_top_n: int = 300) -> tuple[Tensor, Tensor]:
    """The RPN's proposals for a batch, all photos at once (no gradient: approximate joint training).

    logits (N, P, 2), deltas (N, P, 4), anchors (P, 4) "xyxy" px, counts: anchors per map.
      1. on each map, the pre_nms_top_n anchors of highest objectness;
      2. decode their deltas, clip to the input (H, W), drop boxes under MIN_PROPOSAL_SIDE;
      3. NMS at nms_iou over the merged maps; keep the post_nms_top_n best.
    Objectness is logit(object) - logit(background): the log-odds of the two-way softmax.
    returns proposals (N, R, 4) "xyxy" px and their objectness (N, R), best first; R =
    min(post_nms_top_n, candidates); a photo with fewer proposals is padded with score -inf.
    """
    n = logits.shape[0]
    objectness = (logits[..., 1] - logits[..., 0]).float()  # (N, P)
    picked, start = [], 0
    for count in counts:  # at most 3 maps
        top = objectness[:, start:start + count].topk(min(pre_nms_top_n, count), dim=1).indices + start
        picked.append(top)
        start += count
    index = torch.cat(picked, dim=1)  # (N, K)
    scores = objectness.gather(1, index)
    boxes = decode_deltas(deltas.float().gather(1, index[..., None].expand(-1, -1, 4)), anchors[index])
    boxes = clip_boxes(boxes, input_hw[1], input_hw[0])  # (N, K, 4)
    wide_enough = ((boxes[..., 2:] - boxes[..., :2]) >= MIN_PROPOSAL_SIDE).all(dim=-1)
    scores, order = scores.masked_fill(~wide_enough, -float("inf")).sort(dim=1, descending=True)
    boxes = boxes.gather(1, order[..., None].expand(-1, -1, 4))
    keep = greedy_nms_mask(boxes, scores > -float("inf"), nms_iou)  # (N, K)
    best, kept = scores.masked_fill(~keep, -float("inf")).topk(min(post_nms_top_n, scores.shape[1]), dim=1)
    return boxes.gather(1, kept[..., None].expand(-1, -1, 4)), best


class FasterRCNN(nn.Module):
    """SmallBackbone -> (TopDown) -> 1x1 projections -> RPN -> proposals -> RoIHead.

    images (N, 3, H, W) ImageNet-normalised, H and W multiples of 32 ->
      training: (maps [(N, F, H_l, W_l)], rpn_logits (N, P, 2), rpn_deltas (N, P, 4),
                 proposals (N, R, 4) "xyxy" px, proposal_scores (N, R), -inf = padding)
      eval:     (proposals (N, R, 4), proposal_scores (N, R), class_logits (N, R, C + 1),
                 box_deltas (N, R, C, 4)); padding rows are run through the head and masked later.
    anchor_shapes: one (k, 2) (w, h) px tensor per map (`rpn_anchor_shapes`), the same k on every map.
    """

    def __init__(self, num_classes: int, anchor_shapes: Sequence[Tensor], width: int = 32, fpn: bool = False,
                 channels: int = 64, roi_op: str = "align", roi_size: int = 7, hidden: int = 128,
                 pre_nms_top_n: int = 1000, proposal_nms_iou: float = 0.7, post_nms_top_n: int = 300) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.strides = FPN_STRIDES if fpn else STRIDES
        self.anchor_shapes = list(anchor_shapes)
        self.proposal_settings = (pre_nms_top_n, proposal_nms_iou, post_nms_top_n)
        self.backbone = SmallBackbone(width)
        used = self.backbone.channels[1:] if fpn else self.backbone.channels[2:3]  # strides 8-32, or 16
        self.top_down = TopDown(used) if fpn else None
        self.project = nn.ModuleList(conv_bn(c, channels, kernel=1) for c in used)  # one width for the heads
        self.rpn = RPN(channels, len(self.anchor_shapes[0]))
        self.roi_head = RoIHead(channels, num_classes, self.strides, roi_op, roi_size, hidden)

    def features(self, images: Tensor) -> list[Tensor]:
        f4, f8, f16, f32 = self.backbone(images)
        maps = self.top_down([f8, f16, f32]) if self.top_down is not None else [f16]
        return [project(m) for project, m in zip(self.project, maps)]

    def forward(self, images: Tensor) -> tuple:
        maps = self.features(images)
        rpn_logits, rpn_deltas = self.rpn(maps)
        anchors, counts = rpn_anchors(maps, self.strides, self.anchor_shapes)
        proposals, scores = propose(rpn_logits.detach(), rpn_deltas.detach(), anchors, counts, images.shape[-2:],
                                    *self.proposal_settings)
        if self.training:  # the criterion samples RoIs among the proposals and runs the head on them
            return maps, rpn_logits, rpn_deltas, proposals, scores
        n, r = scores.shape
        index = torch.arange(n, device=images.device, dtype=proposals.dtype).repeat_interleave(r)[:, None]
        class_logits, box_deltas = self.second_stage(maps, torch.cat([index, proposals.reshape(-1, 4)], dim=1))
        return proposals, scores, class_logits.reshape(n, r, -1), box_deltas.reshape(n, r, self.num_classes, 4)

    def second_stage(self, maps: Sequence[Tensor], rois: Tensor) -> tuple[Tensor, Tensor]:
        """rois (K, 5) (photo, x1, y1, x2, y2) px -> class_logits (K, C + 1), box_deltas (K, C, 4)."""
        return self.roi_head(maps, rois)


# --------------------------------------------------------------------------- 3. criterion


class FasterRCNNLoss(nn.Module):
    """L = L_rpn_cls + lambda L_rpn_box + L_cls + lambda L_box: both stages' fast_rcnn_loss, summed.

    RPN, per photo: anchors labelled by label_anchors (IoU >= 0.7 with a box, or a box's best
    anchor: positive; < 0.3 with all: negative), 256 sampled at up to 1:1 (sample_balanced);
    the two-way softmax and Smooth L1 on the positives' deltas (weights 1, kink RPN_BETA).
    Second stage, per photo: 64 RoIs among its proposals plus its ground-truth boxes, at most 25 %
    foreground (IoU >= 0.5), background IoU in [0.1, 0.5) (sample_rois); the RoI head
    (`second_stage`, the model's) runs on them; softmax over C + 1 classes and Smooth L1 on the true
    class's deltas (FAST_RCNN_WEIGHTS, kink 1). Ground-truth boxes with no width or height are
    skipped (they have no overlap with anything and no log-size target).

    outputs: FasterRCNN's training tuple; targets: per photo "boxes" (n, 4) "xyxy" fractional,
    "labels" (n,) 0-based. Returns {"rpn_cls", "rpn_box", "cls", "box"}, finite on photos
    without any object (their anchors are all negatives).
    """

    def __init__(self, second_stage: Callable[[Sequence[Tensor], Tensor], tuple[Tensor, Tensor]],
                 strides: Sequence[int], anchor_shapes: Sequence[Tensor], rpn_positive_iou: float = 0.7,
                 rpn_negative_iou: float = 0.3, rpn_batch: int = 256, rpn_positive_fraction: float = 0.5,
                 roi_batch: int = 64, roi_foreground_fraction: float = 0.25, roi_foreground_iou: float = 0.5,
                 roi_background_iou: float = 0.1, box_weight: float = 1.0) -> None:
        super().__init__()
        self.second_stage, self.strides, self.anchor_shapes = second_stage, tuple(strides), list(anchor_shapes)
        self.rpn_iou, self.rpn_sample = (rpn_positive_iou, rpn_negative_iou), (rpn_batch, rpn_positive_fraction)
        self.roi_sample = (roi_batch, roi_foreground_fraction, roi_foreground_iou, roi_background_iou)
        self.box_weight = box_weight

    def forward(self, outputs: tuple, targets: Sequence[dict]) -> dict[str, Tensor]:
        if len(outputs) != 5:
            raise ConfigError(f"FasterRCNNLoss: expected the model's 5 training outputs, got {len(outputs)} "
                              "(call model.train() before computing the loss)")
        maps, rpn_logits, rpn_deltas, proposals, proposal_scores = outputs
        if len(targets) != rpn_logits.shape[0]:
            raise ConfigError(f"FasterRCNNLoss: {rpn_logits.shape[0]} photos but {len(targets)} targets")
        anchors, _ = rpn_anchors(maps, self.strides, self.anchor_shapes)  # (P, 4) px
        h, w = maps[0].shape[-2] * self.strides[0], maps[0].shape[-1] * self.strides[0]  # the input's size
        scale = anchors.new_tensor([w, h, w, h])
        batch_size, fraction, fg_iou, bg_iou = self.roi_sample
        rpn_rows, rpn_labels, rpn_targets, rois, roi_labels, roi_targets = [], [], [], [], [], []
        for i, target in enumerate(targets):  # the samples are per photo (label_anchors, sample_rois)
            boxes, labels = target["boxes"].to(scale) * scale, target["labels"].to(anchors.device)
            real = ((boxes[:, 2:] - boxes[:, :2]) > 0).all(dim=1)
            boxes, labels = boxes[real], labels[real]
            # RPN: which anchors, and the box each positive regresses to
            anchor_labels, matched = label_anchors(anchors, boxes, *self.rpn_iou)
            positive, negative = sample_balanced(anchor_labels, *self.rpn_sample)
            chosen = torch.cat([positive, negative])
            rpn_rows.append(i * len(anchors) + chosen)
            rpn_labels.append((torch.arange(len(chosen), device=chosen.device) < len(positive)).long())
            deltas = torch.zeros(len(chosen), 4, device=anchors.device)
            if len(positive):
                deltas[:len(positive)] = encode_deltas(boxes[matched[positive]], anchors[positive])
            rpn_targets.append(deltas)
            # second stage: 64 RoIs among the proposals and the ground truth
            found = proposals[i][proposal_scores[i] > -float("inf")]
            regions, region_labels, region_boxes = sample_rois(found, boxes, labels, batch_size, fraction, fg_iou,
                                                               (bg_iou, fg_iou))
            rois.append(torch.cat([regions.new_full((len(regions), 1), float(i)), regions], dim=1))
            roi_labels.append(region_labels)
            roi_targets.append(encode_deltas(region_boxes, regions, FAST_RCNN_WEIGHTS))
        rows = torch.cat(rpn_rows)
        rpn_cls, rpn_box = fast_rcnn_loss(rpn_logits.reshape(-1, 2)[rows], rpn_deltas.reshape(-1, 1, 4)[rows],
                                          torch.cat(rpn_labels), torch.cat(rpn_targets), beta=RPN_BETA)
        class_logits, box_deltas = self.second_stage(maps, torch.cat(rois))
        cls, box = fast_rcnn_loss(class_logits, box_deltas, torch.cat(roi_labels), torch.cat(roi_targets),
                                  beta=ROI_BETA)
        return {"rpn_cls": rpn_cls, "rpn_box": self.box_weight * rpn_box, "cls": cls, "box": self.box_weight * box}


# --------------------------------------------------------------------------- 4. post-process


class FasterRCNNPostprocess:
    """FasterRCNN's eval outputs -> per photo {"boxes" (K, 4) "xyxy" fractional of the input, "scores",
    "labels" 0-based}: per-class boxes and softmax scores, class-aware NMS, top_k (decode_roi_detections).

    input_hw: (H, W) of the network input (the proposals are in its pixels); None = the training crop.
    """

    def __init__(self, image_size: int) -> None:
        self.image_size = image_size

    def __call__(self, outputs: tuple, *, min_score: float, nms_iou: float, top_k: int,
                 input_hw: tuple[int, int] | None = None) -> list[dict[str, Tensor]]:
        proposals, scores, class_logits, box_deltas = outputs
        h, w = (self.image_size, self.image_size) if input_hw is None else input_hw
        regions = proposals / proposals.new_tensor([w, h, w, h])
        return decode_roi_detections(regions, scores > -float("inf"), class_logits, box_deltas,
                                     min_score=min_score, nms_iou=nms_iou, top_k=top_k)


# --------------------------------------------------------------------------- 5. builder


def check_config(cfg: FasterRCNNConfig) -> None:
    """Refuse settings no Faster R-CNN can use, naming the key."""
    if cfg.image_size % INPUT_MULTIPLE:
        raise ConfigError(f"model.image_size={cfg.image_size}: expected a multiple of {INPUT_MULTIPLE}")
    maps = len(FPN_STRIDES) if cfg.fpn else len(STRIDES)
    if not cfg.anchor_sizes or min(cfg.anchor_sizes) <= 0 or len(cfg.anchor_sizes) % maps:
        raise ConfigError(f"model.anchor_sizes={cfg.anchor_sizes}: expected positive sides in pixels, "
                          f"a multiple of {maps} of them (split evenly over the {maps} map(s) the RPN reads)")
    if not cfg.anchor_ratios or min(cfg.anchor_ratios) <= 0:
        raise ConfigError(f"model.anchor_ratios={cfg.anchor_ratios}: expected positive ratios h / w")
    if not 0 <= cfg.rpn_negative_iou <= cfg.rpn_positive_iou <= 1:
        raise ConfigError(f"model.rpn_negative_iou={cfg.rpn_negative_iou}, model.rpn_positive_iou="
                          f"{cfg.rpn_positive_iou}: expected 0 <= rpn_negative_iou <= rpn_positive_iou <= 1")
    if not 0 <= cfg.roi_background_iou < cfg.roi_foreground_iou <= 1:
        raise ConfigError(f"model.roi_background_iou={cfg.roi_background_iou}, model.roi_foreground_iou="
                          f"{cfg.roi_foreground_iou}: expected 0 <= roi_background_iou < roi_foreground_iou <= 1")
    for key in ("rpn_positive_fraction", "roi_foreground_fraction", "proposal_nms_iou"):
        if not 0 < getattr(cfg, key) <= 1:
            raise ConfigError(f"model.{key}={getattr(cfg, key)}: expected a fraction in (0, 1]")
    for key in ("channels", "rpn_batch", "pre_nms_top_n", "post_nms_top_n", "roi_batch", "roi_size", "hidden"):
        if getattr(cfg, key) <= 0:
            raise ConfigError(f"model.{key}={getattr(cfg, key)}: expected a positive number")


def build_faster_rcnn(cfg: FasterRCNNConfig) -> Detector:
    """FasterRCNN + FasterRCNNLoss (bound to its RoI head) + FasterRCNNPostprocess: a "scalable"
    Detector that runs on photos of any size."""
    check_config(cfg)
    strides = FPN_STRIDES if cfg.fpn else STRIDES
    shapes = rpn_anchor_shapes(cfg.anchor_sizes, cfg.anchor_ratios, len(strides))
    model = FasterRCNN(cfg.num_classes, shapes, cfg.width, cfg.fpn, cfg.channels, cfg.roi_op, cfg.roi_size,
                       cfg.hidden, cfg.pre_nms_top_n, cfg.proposal_nms_iou, cfg.post_nms_top_n)
    criterion = FasterRCNNLoss(model.second_stage, strides, shapes, cfg.rpn_positive_iou, cfg.rpn_negative_iou,
                               cfg.rpn_batch, cfg.rpn_positive_fraction, cfg.roi_batch, cfg.roi_foreground_fraction,
                               cfg.roi_foreground_iou, cfg.roi_background_iou, cfg.box_weight)
    return Detector(model, criterion, FasterRCNNPostprocess(cfg.image_size), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                    image_size=cfg.image_size, input_policy="scalable", max_size=cfg.max_size,
                    size_multiple=INPUT_MULTIPLE, min_score=MIN_SCORE, nms_iou=NMS_IOU, top_k=TOP_K)
