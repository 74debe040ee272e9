"""SSD the fast.ai way (seed 004): a light multi-box head on a 7x7 backbone map.

Read top to bottom: anchors, backbone + head, activations -> boxes, criterion, post-process,
builder. Differences from SSD300 (facedet/models/ssd.py), all from the seed:
  - one 7x7xC feature map, turned by stride-2 3x3 convs into 4x4, 2x2 and 1x1 grids;
  - 9 anchors per cell: zooms {0.75, 1, 1.3} x ratios {1:1, 1:0.5, 0.5:1}, 21 cells -> 189;
  - box activations go through tanh: the centre moves at most half a cell and the size
    is scaled by x0.5 .. x1.5 of the anchor, so predictions stay near their anchor;
  - one sigmoid per object class and no background column (binary cross-entropy or focal
    loss): background is "every class says no".
Prior matching and class-aware NMS are SSD's (facedet.boxes.match_priors, multiclass_nms).
"""
from __future__ import annotations

from collections.abc import Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facedet.boxes import box_convert, match_priors, multiclass_nms, pad_targets
from facedet.config import FastaiSSDConfig
from facedet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from facedet.errors import ConfigError
from facedet.models.detector import MIN_SCORE, NMS_IOU, TOP_K, Detector
from facedet.models.losses import sigmoid_focal_loss

GRIDS = (4, 2, 1)
ZOOMS = (0.75, 1.0, 1.3)
RATIOS = ((1.0, 1.0), (1.0, 0.5), (0.5, 1.0))  # (width, height) factors


# --------------------------------------------------------------------------- anchors


def make_anchors(grids: Sequence[int] = GRIDS, zooms: Sequence[float] = ZOOMS,
                 ratios: Sequence[tuple[float, float]] = RATIOS) -> tuple[Tensor, Tensor]:
    """Anchors (A, 4) "cxcywh" fractional and the cell size of each anchor (A, 1).

    A = sum(g^2 for g in grids) * len(zooms) * len(ratios) = 21 * 9 = 189 by default.
    Order = the head's output order: grid by grid (4x4 first), cells row by row, then the
    9 shapes with the zoom varying slowest. A cell-sized anchor of a g x g grid is 1/g
    wide; zoom 1.3 makes the 1x1 grid's anchors larger than the image (not clamped, as in
    the seed).
    """
    anchors, cell_sizes = [], []
    for g in grids:
        shapes = torch.tensor([(z * rw / g, z * rh / g) for z in zooms for rw, rh in ratios])
        centres = (torch.arange(g, dtype=torch.float32) + 0.5) / g
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")  # row by row
        cxcy = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2).expand(-1, len(shapes), 2)
        wh = shapes.expand(g * g, -1, 2)
        anchors.append(torch.cat([cxcy, wh], dim=-1).reshape(-1, 4))
        cell_sizes.append(torch.full((g * g * len(shapes), 1), 1.0 / g))
    return torch.cat(anchors), torch.cat(cell_sizes)


# --------------------------------------------------------------------------- model


class StdConv(nn.Module):
    """The seed's building block: 3x3 conv (stride 2 by default) -> ReLU -> BatchNorm -> Dropout."""

    def __init__(self, in_ch: int, out_ch: int, stride: int = 2, drop: float = 0.1) -> None:
        super().__init__()
        self.conv = nn.Conv2d(in_ch, out_ch, 3, stride=stride, padding=1)
        self.bn = nn.BatchNorm2d(out_ch)
        self.drop = nn.Dropout(drop)

    def forward(self, x: Tensor) -> Tensor:
        return self.drop(self.bn(F.relu(self.conv(x))))


class OutConv(nn.Module):
    """Per grid: k*C class logits and k*4 box activations, flattened to (N, H*W*k, .)."""

    def __init__(self, in_ch: int, num_classes: int, k: int, class_bias: float) -> None:
        super().__init__()
        self.k = k
        self.cls = nn.Conv2d(in_ch, k * num_classes, 3, padding=1)
        self.loc = nn.Conv2d(in_ch, k * 4, 3, padding=1)
        # every sigmoid starts near sigmoid(-3) = 0.05: background is the common answer
        nn.init.constant_(self.cls.bias, class_bias)

    def forward(self, x: Tensor) -> tuple[Tensor, Tensor]:
        n = x.shape[0]
        locs = self.loc(x).permute(0, 2, 3, 1).reshape(n, -1, 4)  # (N, H*W*k, 4)
        scores = self.cls(x).permute(0, 2, 3, 1).reshape(n, -1, self.cls.out_channels // self.k)
        return locs, scores


class FastaiBackbone(nn.Module):
    """The fast.ai variant's compact CNN: images (N, 3, 224, 224) -> (N, 16*width, 7, 7), five stride-2
    stages (plain 3x3 convs; not facedet.models.backbone.SmallBackbone, the shared base of the other rungs)."""

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        layers: list[nn.Module] = []
        in_ch = 3
        for out_ch in (width, 2 * width, 4 * width, 8 * width, 16 * width):  # 224 -> 7
            layers += [nn.Conv2d(in_ch, out_ch, 3, stride=2, padding=1, bias=False),
                       nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True),
                       nn.Conv2d(out_ch, out_ch, 3, padding=1, bias=False),
                       nn.BatchNorm2d(out_ch), nn.ReLU(inplace=True)]
            in_ch = out_ch
        self.layers = nn.Sequential(*layers)
        self.out_channels = in_ch

    def forward(self, images: Tensor) -> Tensor:
        return self.layers(images)


class FastaiSSD(nn.Module):
    """Backbone + the seed's SSD_MultiHead.

    backbone: any module mapping images to (N, backbone_channels, 7, 7) (default FastaiBackbone).
    images -> pred_locs (N, 189, 4) raw box activations (see `activations_to_boxes`),
              pred_scores (N, 189, num_classes) one logit per object class.
    """

    def __init__(self, num_classes: int, backbone: nn.Module | None = None,
                 backbone_channels: int | None = None, width: int = 32, k: int = 9,
                 drop: float = 0.4, class_bias: float = -3.0) -> None:
        super().__init__()
        self.backbone = backbone if backbone is not None else FastaiBackbone(width)
        in_ch = backbone_channels or self.backbone.out_channels
        self.drop = nn.Dropout(drop)
        self.sconv0 = StdConv(in_ch, 256, stride=1, drop=drop)  # 7x7
        self.sconv1 = StdConv(256, 256, drop=drop)  # 7 -> 4
        self.sconv2 = StdConv(256, 256, drop=drop)  # 4 -> 2
        self.sconv3 = StdConv(256, 256, drop=drop)  # 2 -> 1
        self.out = nn.ModuleList(OutConv(256, num_classes, k, class_bias) for _ in GRIDS)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = self.sconv0(self.drop(F.relu(self.backbone(images))))  # (N, 256, 7, 7)
        grids = []
        for sconv in (self.sconv1, self.sconv2, self.sconv3):
            x = sconv(x)
            grids.append(x)  # (N, 256, 4, 4), (N, 256, 2, 2), (N, 256, 1, 1)
        locs, scores = zip(*(out(g) for out, g in zip(self.out, grids)))
        return torch.cat(locs, dim=1), torch.cat(scores, dim=1)


def activations_to_boxes(pred_locs: Tensor, anchors: Tensor, cell_sizes: Tensor) -> Tensor:
    """Raw activations (..., A, 4) -> boxes (..., A, 4) "xyxy" fractional.

    tanh squashes each activation into (-1, 1): the centre moves by at most half a cell,
    the width and height become (1 + t/2) x the anchor's, i.e. between x0.5 and x1.5.
    anchors (A, 4) "cxcywh", cell_sizes (A, 1).
    """
    t = torch.tanh(pred_locs)
    centres = anchors[:, :2] + t[..., :2] / 2 * cell_sizes
    sizes = (t[..., 2:] / 2 + 1) * anchors[:, 2:]
    return box_convert(torch.cat([centres, sizes], dim=-1), "cxcywh", "xyxy")


# --------------------------------------------------------------------------- criterion


class FastaiSSDLoss(nn.Module):
    """L1 on the positives' boxes + per-class binary cross-entropy (or focal loss).

    outputs = (pred_locs (B, A, 4), pred_scores (B, A, C)); targets as in the contract.
    Anchors are matched to objects as in SSD (best object per anchor, forced best anchor
    per object, IoU < threshold -> background). The seed divides the class loss by C;
    here both terms are divided by the number of positives, like SSD and RetinaNet.
    returns {"loc": L1 term, "conf": BCE or focal term}.
    """

    def __init__(self, anchors: Tensor, cell_sizes: Tensor, threshold: float = 0.5,
                 loss: str = "bce", focal_alpha: float = 0.25, focal_gamma: float = 2.0) -> None:
        super().__init__()
        if loss not in ("bce", "focal"):
            raise ConfigError(f"fast.ai SSD loss={loss!r}: expected 'bce' or 'focal'")
        self.register_buffer("anchors", anchors)  # (A, 4) "cxcywh"
        self.register_buffer("cell_sizes", cell_sizes)  # (A, 1)
        self.threshold = threshold
        self.loss = loss
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    def forward(self, outputs: tuple[Tensor, Tensor], targets: Sequence[dict]) -> dict[str, Tensor]:
        pred_locs, pred_scores = outputs  # (B, A, 4), (B, A, C)
        gt_boxes, gt_labels, valid = pad_targets(targets, self.anchors.device)
        anchors_xyxy = box_convert(self.anchors, "cxcywh", "xyxy")
        labels, matched = match_priors(gt_boxes, gt_labels, valid, anchors_xyxy, self.threshold)
        positives = labels > 0  # (B, A)
        num_pos = positives.sum().clamp(min=1).float()

        pred_boxes = activations_to_boxes(pred_locs, self.anchors, self.cell_sizes)  # (B, A, 4)
        loc = (pred_boxes[positives] - matched[positives]).abs().sum()

        onehot = F.one_hot(labels, pred_scores.shape[-1] + 1)[..., 1:].to(pred_scores.dtype)
        if self.loss == "focal":
            conf = sigmoid_focal_loss(pred_scores, onehot, self.focal_alpha, self.focal_gamma).sum()
        else:
            conf = F.binary_cross_entropy_with_logits(pred_scores, onehot, reduction="sum")
        return {"loc": loc / num_pos, "conf": conf / num_pos}


# --------------------------------------------------------------------------- post-process


class FastaiSSDPostprocess:
    """(pred_locs, pred_scores) -> per-image detections: tanh boxes, sigmoid scores,
    per-class score filter, class-aware NMS and top_k (facedet.boxes.multiclass_nms)."""

    def __init__(self, anchors: Tensor, cell_sizes: Tensor) -> None:
        self.anchors = anchors
        self.cell_sizes = cell_sizes

    @torch.no_grad()
    def __call__(self, outputs: tuple[Tensor, Tensor], *, min_score: float, nms_iou: float,
                 top_k: int) -> list[dict[str, Tensor]]:
        pred_locs, pred_scores = outputs
        device = pred_locs.device
        boxes = activations_to_boxes(pred_locs, self.anchors.to(device), self.cell_sizes.to(device))
        return multiclass_nms(boxes, pred_scores.sigmoid(), min_score, nms_iou, top_k)


# --------------------------------------------------------------------------- builder


def build_fastai_ssd(cfg: FastaiSSDConfig) -> Detector:
    """FastaiSSD on a FastaiBackbone(cfg.width) for 224x224 inputs.

    Uses cfg.num_classes, cfg.width, cfg.image_size (must be 224: the backbone divides by
    32 to reach the head's 7x7 map), cfg.loss ("focal" -> focal loss, otherwise the seed's
    BCE), cfg.focal_alpha, cfg.focal_gamma.
    """
    image_size = cfg.image_size
    if image_size != 224:
        raise ConfigError(f"model.image_size={image_size}: the fast.ai SSD head needs 224 "
                          "(a 7x7 backbone map)")
    anchors, cell_sizes = make_anchors()
    model = FastaiSSD(cfg.num_classes, width=cfg.width)
    loss = "focal" if cfg.loss == "focal" else "bce"
    criterion = FastaiSSDLoss(anchors, cell_sizes, loss=loss,
                              focal_alpha=cfg.focal_alpha, focal_gamma=cfg.focal_gamma)
    return Detector(model, criterion, FastaiSSDPostprocess(anchors, cell_sizes), image_size=cfg.image_size,
                    mean=IMAGENET_MEAN, std=IMAGENET_STD, min_score=MIN_SCORE, nms_iou=NMS_IOU, top_k=TOP_K)
