"""Rung 5: SSD300 (Liu et al. 2016, as taught by sgrvinod's tutorial, seed 003).

Read top to bottom:
  1. priors        - the 8732 default boxes, `make_priors()`
  2. model         - VGG16 base + L2Norm(conv4_3) + auxiliary convs + prediction convs
  3. criterion     - `MultiBoxLoss`: prior matching (facedet.boxes.match_priors), Smooth L1, CE
                     with hard negative mining (or sigmoid focal loss, facedet.models.losses)
  4. post-process  - `SSDPostprocess`: decode, then facedet.boxes.multiclass_nms: per-class score
                     filter, class-aware NMS, top_k, batched over images and classes without
                     Python loops over either
  5. builder       - `build_ssd300(cfg) -> Detector`

Inside SSD, class 0 is *background* and object class `c` (0-based in the dataset) is
score column `c + 1`. The criterion shifts labels by +1, the post-processor shifts them back.
Boxes are fractional (0..1 of the 300x300 input); the format is named where it matters.
"""
from __future__ import annotations

import math
from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facedet.boxes import box_convert, decode, encode, match_priors, multiclass_nms, pad_targets
from facedet.config import SSD300Config
from facedet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from facedet.errors import ConfigError
from facedet.models.detector import MIN_SCORE, NMS_IOU, TOP_K, Detector
from facedet.models.losses import sigmoid_focal_loss

# --------------------------------------------------------------------------- 1. priors

# (feature map, map size, prior scale s_k, aspect ratios w/h besides the extra prior).
# Scales: 0.1 for conv4_3, then linear from 0.2 to 0.9 over the other five maps.
PRIOR_MAPS: tuple[tuple[str, int, float, tuple[float, ...]], ...] = (
    ("conv4_3", 38, 0.1, (1.0, 2.0, 0.5)),
    ("conv7", 19, 0.2, (1.0, 2.0, 3.0, 0.5, 1.0 / 3.0)),
    ("conv8_2", 10, 0.375, (1.0, 2.0, 3.0, 0.5, 1.0 / 3.0)),
    ("conv9_2", 5, 0.55, (1.0, 2.0, 3.0, 0.5, 1.0 / 3.0)),
    ("conv10_2", 3, 0.725, (1.0, 2.0, 0.5)),
    ("conv11_2", 1, 0.9, (1.0, 2.0, 0.5)),
)
# priors per cell: one per aspect ratio + the extra square prior
PRIORS_PER_CELL: tuple[int, ...] = tuple(len(ratios) + 1 for _, _, _, ratios in PRIOR_MAPS)


def make_priors() -> Tensor:
    """The 8732 SSD300 priors, (8732, 4) "cxcywh" fractional, clamped to [0, 1].

    Order = order of the concatenated predictions: map by map (conv4_3 first), cells row
    by row, and within a cell the ratios of `PRIOR_MAPS` with the extra prior (ratio 1,
    scale sqrt(s_k * s_k+1), or 1 for the last map) right after the ratio-1 prior.
    A prior of scale s and ratio a has w = s*sqrt(a), h = s/sqrt(a), so its area is s^2.
    """
    all_priors = []
    for k, (_, size, scale, ratios) in enumerate(PRIOR_MAPS):
        extra = math.sqrt(scale * PRIOR_MAPS[k + 1][2]) if k + 1 < len(PRIOR_MAPS) else 1.0
        shapes = []  # (w, h) of the priors of one cell, in order
        for ratio in ratios:
            shapes.append((scale * math.sqrt(ratio), scale / math.sqrt(ratio)))
            if ratio == 1.0:
                shapes.append((extra, extra))
        wh = torch.tensor(shapes)  # (A, 2)
        centres = (torch.arange(size, dtype=torch.float32) + 0.5) / size
        cy, cx = torch.meshgrid(centres, centres, indexing="ij")  # row by row
        cxcy = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2)  # (size*size, 1, 2)
        priors = torch.cat(
            [cxcy.expand(-1, len(shapes), 2), wh.expand(size * size, -1, 2)], dim=-1
        )  # (size*size, A, 4)
        all_priors.append(priors.reshape(-1, 4))
    return torch.cat(all_priors).clamp_(0.0, 1.0)  # (8732, 4)


# --------------------------------------------------------------------------- 2. model


def _conv(in_ch: int, out_ch: int, kernel: int, batch_norm: bool, **kwargs) -> nn.Sequential:
    """conv -> [BatchNorm] -> ReLU. The BatchNorm makes training from scratch practical."""
    layers: list[nn.Module] = [nn.Conv2d(in_ch, out_ch, kernel, **kwargs)]
    if batch_norm:
        layers.append(nn.BatchNorm2d(out_ch))
    layers.append(nn.ReLU(inplace=True))
    return nn.Sequential(*layers)


class VGGBase(nn.Module):
    """VGG16's conv layers turned into SSD's base; returns conv4_3 and conv7 feature maps.

    Changes to VGG16: pool3 rounds up (75 -> 38, not 37); pool5 is 3x3 stride 1 so conv5
    stays 19x19; fc6/fc7 become conv6 (3x3, dilation 6: the decimated 7x7 fc6 kernel keeps
    its receptive field, the "atrous" trick) and conv7 (1x1).
    images (N, 3, 300, 300) -> conv4_3 (N, 512, 38, 38), conv7 (N, 1024, 19, 19)
    """

    # (name, out channels) of VGG16's 13 convs, in torchvision's order
    CONVS = (("conv1_1", 64), ("conv1_2", 64), ("conv2_1", 128), ("conv2_2", 128),
             ("conv3_1", 256), ("conv3_2", 256), ("conv3_3", 256),
             ("conv4_1", 512), ("conv4_2", 512), ("conv4_3", 512),
             ("conv5_1", 512), ("conv5_2", 512), ("conv5_3", 512))

    def __init__(self, batch_norm: bool = False) -> None:
        super().__init__()
        in_ch = 3
        for name, out_ch in self.CONVS:
            self.add_module(name, _conv(in_ch, out_ch, 3, batch_norm, padding=1))
            in_ch = out_ch
        self.pool1 = nn.MaxPool2d(2, 2)
        self.pool2 = nn.MaxPool2d(2, 2)
        self.pool3 = nn.MaxPool2d(2, 2, ceil_mode=True)
        self.pool4 = nn.MaxPool2d(2, 2)
        self.pool5 = nn.MaxPool2d(3, stride=1, padding=1)
        self.conv6 = _conv(512, 1024, 3, batch_norm, padding=6, dilation=6)
        self.conv7 = _conv(1024, 1024, 1, batch_norm)
        for m in self.modules():  # torchvision's VGG init, used when training from scratch
            if isinstance(m, nn.Conv2d):
                nn.init.kaiming_normal_(m.weight, mode="fan_out", nonlinearity="relu")
                nn.init.zeros_(m.bias)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        x = self.pool1(self.conv1_2(self.conv1_1(images)))  # (N, 64, 150, 150)
        x = self.pool2(self.conv2_2(self.conv2_1(x)))  # (N, 128, 75, 75)
        x = self.pool3(self.conv3_3(self.conv3_2(self.conv3_1(x))))  # (N, 256, 38, 38)
        conv4_3 = self.conv4_3(self.conv4_2(self.conv4_1(x)))  # (N, 512, 38, 38)
        x = self.pool4(conv4_3)  # (N, 512, 19, 19)
        x = self.pool5(self.conv5_3(self.conv5_2(self.conv5_1(x))))  # (N, 512, 19, 19)
        conv7 = self.conv7(self.conv6(x))  # (N, 1024, 19, 19)
        return conv4_3, conv7


class L2Norm(nn.Module):
    """Scale each position's channel vector to unit L2 norm, then by a learned per-channel
    factor (init 20): conv4_3's activations are much larger than the deeper maps'."""

    def __init__(self, channels: int, init_scale: float = 20.0, eps: float = 1e-10) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.full((channels,), init_scale))
        self.eps = eps

    def forward(self, x: Tensor) -> Tensor:  # (N, C, H, W) -> (N, C, H, W)
        norm = x.pow(2).sum(dim=1, keepdim=True).sqrt() + self.eps  # (N, 1, H, W)
        return x / norm * self.scale.view(1, -1, 1, 1)


class AuxiliaryConvs(nn.Module):
    """Four 1x1-then-3x3 blocks after conv7, each giving a smaller feature map.

    conv7 (N, 1024, 19, 19) -> conv8_2 (N, 512, 10, 10), conv9_2 (N, 256, 5, 5),
                               conv10_2 (N, 256, 3, 3), conv11_2 (N, 256, 1, 1)
    """

    def __init__(self) -> None:
        super().__init__()
        self.conv8_1 = _conv(1024, 256, 1, False)
        self.conv8_2 = _conv(256, 512, 3, False, stride=2, padding=1)  # 19 -> 10
        self.conv9_1 = _conv(512, 128, 1, False)
        self.conv9_2 = _conv(128, 256, 3, False, stride=2, padding=1)  # 10 -> 5
        self.conv10_1 = _conv(256, 128, 1, False)
        self.conv10_2 = _conv(128, 256, 3, False)  # 5 -> 3 (no padding)
        self.conv11_1 = _conv(256, 128, 1, False)
        self.conv11_2 = _conv(128, 256, 3, False)  # 3 -> 1

    def forward(self, conv7: Tensor) -> list[Tensor]:
        conv8_2 = self.conv8_2(self.conv8_1(conv7))
        conv9_2 = self.conv9_2(self.conv9_1(conv8_2))
        conv10_2 = self.conv10_2(self.conv10_1(conv9_2))
        conv11_2 = self.conv11_2(self.conv11_1(conv10_2))
        return [conv8_2, conv9_2, conv10_2, conv11_2]


class PredictionConvs(nn.Module):
    """One 3x3 conv per feature map for box offsets (4 per prior) and one for class scores.

    Six maps -> pred_locs (N, 8732, 4) encoded offsets, pred_scores (N, 8732, num_scores),
    flattened in the priors' order (map, row, column, prior).
    """

    CHANNELS = (512, 1024, 512, 256, 256, 256)  # of conv4_3, conv7, conv8_2 ... conv11_2

    def __init__(self, num_scores: int) -> None:
        super().__init__()
        self.num_scores = num_scores
        self.loc = nn.ModuleList(
            nn.Conv2d(ch, k * 4, 3, padding=1) for ch, k in zip(self.CHANNELS, PRIORS_PER_CELL)
        )
        self.cls = nn.ModuleList(
            nn.Conv2d(ch, k * num_scores, 3, padding=1)
            for ch, k in zip(self.CHANNELS, PRIORS_PER_CELL)
        )

    def forward(self, features: Sequence[Tensor]) -> tuple[Tensor, Tensor]:
        n = features[0].shape[0]
        # (N, k*4, H, W) -> (N, H, W, k*4) -> (N, H*W*k, 4): channels-last puts each cell's
        # k priors next to each other, as in make_priors()
        locs = [
            conv(f).permute(0, 2, 3, 1).reshape(n, -1, 4) for conv, f in zip(self.loc, features)
        ]
        scores = [
            conv(f).permute(0, 2, 3, 1).reshape(n, -1, self.num_scores)
            for conv, f in zip(self.cls, features)
        ]
        return torch.cat(locs, dim=1), torch.cat(scores, dim=1)


class SSD300(nn.Module):
    """SSD300 for `num_classes` object classes (background is added: num_classes + 1 scores).

    images (N, 3, 300, 300) ImageNet-normalised ->
        pred_locs   (N, 8732, 4) offsets to the priors (see facedet.boxes.encode)
        pred_scores (N, 8732, num_classes + 1) logits, column 0 = background

    batch_norm:  BatchNorm after every base conv (for training from scratch).
    class_prior: if given (e.g. 0.01 for focal loss), class biases start at
                 -log((1 - p) / p) so every sigmoid begins near p (RetinaNet's init).
    """

    def __init__(self, num_classes: int, batch_norm: bool = False,
                 class_prior: float | None = None) -> None:
        super().__init__()
        self.num_classes = num_classes
        self.base = VGGBase(batch_norm)
        self.l2norm = L2Norm(512)
        self.aux = AuxiliaryConvs()
        self.pred = PredictionConvs(num_classes + 1)
        for m in [*self.aux.modules(), *self.pred.modules()]:
            if isinstance(m, nn.Conv2d):
                nn.init.xavier_uniform_(m.weight)
                nn.init.zeros_(m.bias)
        if class_prior is not None:
            for conv in self.pred.cls:
                nn.init.constant_(conv.bias, -math.log((1 - class_prior) / class_prior))

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        conv4_3, conv7 = self.base(images)
        features = [self.l2norm(conv4_3), conv7, *self.aux(conv7)]
        return self.pred(features)


# --------------------------------------------------------------------------- 3. criterion


class MultiBoxLoss(nn.Module):
    """SSD's loss: Smooth L1 on the positives' offsets + classification, both / N_pos.

    outputs = (pred_locs (B, P, 4), pred_scores (B, P, C + 1)); targets as in the contract.
    loss="ce":    softmax cross-entropy over the positives and the `neg_pos_ratio` x N_pos
                  highest-loss negatives of each image (hard negative mining); an image
                  without objects therefore adds no term.
    loss="focal": sigmoid focal loss over every prior and object class (column 0 unused);
                  no mining, the focal weight does that job.
    returns {"loc": alpha * loc loss, "conf": conf loss}; with no object in the batch
    "loc" is exactly 0 and "conf" finite.
    """

    def __init__(self, priors: Tensor, threshold: float = 0.5, neg_pos_ratio: float = 3.0,
                 alpha: float = 1.0, variances: tuple[float, float] = (0.1, 0.2),
                 loss: str = "ce", focal_alpha: float = 0.25, focal_gamma: float = 2.0) -> None:
        super().__init__()
        if loss not in ("ce", "focal"):
            raise ConfigError(f"model.loss={loss!r}: expected 'ce' or 'focal'")
        self.register_buffer("priors", priors)  # (P, 4) "cxcywh"
        self.threshold = threshold
        self.neg_pos_ratio = neg_pos_ratio
        self.alpha = alpha
        self.variances = variances
        self.loss = loss
        self.focal_alpha = focal_alpha
        self.focal_gamma = focal_gamma

    def encode_targets(self, targets: Sequence[dict]) -> tuple[Tensor, Tensor]:
        """labels (B, P) with 0 = background, loc targets (B, P, 4) offsets."""
        gt_boxes, gt_labels, valid = pad_targets(targets, self.priors.device)
        priors_xyxy = box_convert(self.priors, "cxcywh", "xyxy")
        labels, matched = match_priors(gt_boxes, gt_labels, valid, priors_xyxy, self.threshold)
        loc_targets = encode(box_convert(matched, "xyxy", "cxcywh"), self.priors, self.variances)
        return labels, loc_targets

    def hard_negatives(self, ce: Tensor, positives: Tensor) -> Tensor:
        """The `neg_pos_ratio` x N_pos negatives with the highest loss in each image.

        ce (B, P) per-prior cross-entropy, positives (B, P) bool -> mask (B, P) bool.
        One sort for the whole batch: positives' losses are zeroed so they sort last
        among the candidates, and the first `ratio * N_pos` ranks of each row are kept.
        """
        neg_ce = ce.detach().masked_fill(positives, 0.0)
        order = neg_ce.sort(dim=1, descending=True).indices  # (B, P)
        num_hard = (self.neg_pos_ratio * positives.sum(dim=1, keepdim=True)).long()  # (B, 1)
        ranks = torch.arange(ce.shape[1], device=ce.device).expand_as(ce)
        hard_sorted = ranks < num_hard  # (B, P) in sorted order
        hard = torch.zeros_like(positives).scatter(1, order, hard_sorted)
        return hard & ~positives

    def forward(self, outputs: tuple[Tensor, Tensor], targets: Sequence[dict]) -> dict[str, Tensor]:
        pred_locs, pred_scores = outputs  # (B, P, 4), (B, P, C + 1)
        labels, loc_targets = self.encode_targets(targets)  # (B, P), (B, P, 4)
        positives = labels > 0
        num_pos = positives.sum().clamp(min=1).float()  # guard: a batch without objects

        # Smooth L1 summed over the positives' 4 offsets, as in the paper
        # (the tutorial used plain L1 averaged over coordinates)
        loc = F.smooth_l1_loss(pred_locs[positives], loc_targets[positives], reduction="sum")

        if self.loss == "focal":
            onehot = F.one_hot(labels, pred_scores.shape[-1])[..., 1:].float()  # drop background
            conf = sigmoid_focal_loss(pred_scores[..., 1:], onehot, self.focal_alpha,
                                      self.focal_gamma).sum()
        else:
            ce = F.cross_entropy(pred_scores.flatten(0, 1), labels.flatten(),
                                 reduction="none").view_as(labels)  # (B, P)
            keep = positives | self.hard_negatives(ce, positives)
            conf = (ce * keep).sum()
        return {"loc": self.alpha * loc / num_pos, "conf": conf / num_pos}


# --------------------------------------------------------------------------- 4. post-process


class SSDPostprocess:
    """Raw SSD outputs -> detections per image.

    outputs = (pred_locs (B, P, 4), pred_scores (B, P, C + 1)); decodes the offsets
    against `priors` ("cxcywh"), turns logits into probabilities (softmax over the
    background and the classes for a CE-trained model; per-class sigmoid for focal loss),
    then facedet.boxes.multiclass_nms with the caller's min_score, nms_iou and top_k (the
    Detector's, set by the builder). `candidates` (a speed knob, never a change of result) is the
    first cut of boxes per (image, class) that enters NMS.
    """

    def __init__(self, priors: Tensor, variances: tuple[float, float] = (0.1, 0.2),
                 score: str = "softmax", prior_fn: Callable[[int, int], Tensor] | None = None) -> None:
        if score not in ("softmax", "sigmoid"):
            raise ConfigError(f"postprocess score={score!r}: expected 'softmax' or 'sigmoid'")
        self.priors = priors
        self.variances = variances
        self.score = score
        self.prior_fn = prior_fn  # (height, width) -> priors of that input: fully convolutional models
        self._priors_by_size: dict[tuple[int, int], Tensor] = {}

    def priors_for(self, input_hw: tuple[int, int] | None) -> Tensor:
        """The priors of an input of `input_hw` (cached per size); the fixed ones when None."""
        if input_hw is None:
            return self.priors
        if self.prior_fn is None:
            raise ConfigError("this SSD has one fixed input size; it cannot take input_hw")
        key = (int(input_hw[0]), int(input_hw[1]))
        if key not in self._priors_by_size:
            if len(self._priors_by_size) >= 16:  # photos of many sizes: keep the cache small
                self._priors_by_size.clear()
            self._priors_by_size[key] = self.prior_fn(*key)
        return self._priors_by_size[key]

    @torch.no_grad()
    def __call__(self, outputs: tuple[Tensor, Tensor], *, min_score: float, nms_iou: float, top_k: int,
                 candidates: int | None = None, input_hw: tuple[int, int] | None = None) -> list[dict[str, Tensor]]:
        pred_locs, pred_scores = outputs
        priors = self.priors_for(input_hw).to(pred_locs.device)
        boxes = box_convert(decode(pred_locs, priors, self.variances), "cxcywh", "xyxy")
        if self.score == "softmax":
            probs = pred_scores.softmax(dim=-1)[..., 1:]  # drop the background column
        else:
            probs = pred_scores[..., 1:].sigmoid()
        return multiclass_nms(boxes, probs, min_score, nms_iou, top_k, candidates)


# --------------------------------------------------------------------------- 5. builder


def build_ssd300(cfg: SSD300Config) -> Detector:
    """SSD300 + MultiBoxLoss + SSDPostprocess from a ModelConfig.

    Uses cfg.num_classes, cfg.batch_norm, cfg.pretrained ("" = from scratch, a path to a
    torchvision vgg16-*.pth, or "torchvision" to download it), cfg.neg_pos_ratio,
    cfg.loss ("ce" | "focal"), cfg.focal_alpha, cfg.focal_gamma.
    """
    image_size = cfg.image_size
    if image_size != 300:
        raise ConfigError(f"model.image_size={image_size}: SSD300's priors need 300")
    loss = cfg.loss
    model = SSD300(cfg.num_classes, batch_norm=cfg.batch_norm,
                   class_prior=0.01 if loss == "focal" else None)
    pretrained = cfg.pretrained
    if pretrained:
        from facedet.models.vgg_weights import load_vgg16_base  # only when asked for

        load_vgg16_base(model, pretrained)
    priors = make_priors()
    criterion = MultiBoxLoss(priors, neg_pos_ratio=cfg.neg_pos_ratio, loss=loss,
                             focal_alpha=cfg.focal_alpha, focal_gamma=cfg.focal_gamma)
    postprocess = SSDPostprocess(priors, score="sigmoid" if loss == "focal" else "softmax")
    return Detector(model, criterion, postprocess, mean=IMAGENET_MEAN, std=IMAGENET_STD, image_size=300,
                    min_score=MIN_SCORE, nms_iou=NMS_IOU, top_k=TOP_K)
