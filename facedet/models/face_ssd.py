"""The default face detector: the ladder's best idea (SSD) made small enough to ship.

SSD300 (rung 5) answers every limit of the rungs below it, but its VGG16 base costs 24 M
parameters and ~390 ms per photo on a CPU, its priors were chosen for PASCAL objects (from
30 px to the whole image, aspect ratios 1/3 to 3), and it sees every photo stretched to
300 x 300, where a 50 px face of a 600 px group photo shrinks to 25 px. Faces are narrower in
kind: nearly square, often small. FaceSSD keeps SSD's recipe (priors on several feature maps,
MultiBoxLoss with hard negative mining, SSDPostprocess) and changes what faces let us change:

  * a slim MobileNet-style base (3x3 depthwise + 1x1 pointwise convolutions, BatchNorm,
    ReLU) giving feature maps at strides 8, 16, 32 and 64, with a feature pyramid's top-down
    path into the two finest maps;
  * square priors whose sides are PIXELS, from 10 px (stride 8) to 256 px (stride 64);
  * fully convolutional: trained on 320 x 320 square crops, it runs on a photo of any size
    (facedet.models.detector, policy "scalable"), with the priors of that photo's own grid.

The same design drives the widely used "Ultra-Light-Fast-Generic-Face-Detector-1MB" and
FaceBoxes; the 0.35 matching threshold and the square training crops are S3FD's and
RetinaFace's. Read top to bottom:
  1. priors        - `FACE_PRIOR_MAPS`, `make_face_priors(height, width)`
  2. model         - `FaceSSD`: base + FPN path + one 3x3 prediction conv per map for offsets and scores
  3. criterion     - ssd.MultiBoxLoss with the priors of the training crop (reused, not rewritten)
  4. post-process  - ssd.SSDPostprocess with the priors of each input size (reused)
  5. builder       - `build_face_ssd(cfg) -> Detector`

As in SSD, score column 0 is background and column 1 is face; boxes are fractional.
"""
from __future__ import annotations

import math
from functools import partial

import torch
from torch import Tensor, nn

from facedet.config import FaceSSDConfig
from facedet.errors import ConfigError
from facedet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from facedet.models.backbone import SmallBackbone, TopDown, conv_bn, conv_dw, load_legacy_keys
from facedet.models.detector import MIN_SCORE, NMS_IOU, TOP_K, Detector
# Deliberately rung -> rung: FaceSSD IS an SSD, with other priors and another base. Its loss and
# post-processing are SSD's own (rung 5's idea), reused unchanged, not rewritten.
from facedet.models.ssd import MultiBoxLoss, SSDPostprocess

# --------------------------------------------------------------------------- 1. priors

# (stride of the feature map, prior sides in pixels of the network input). The sides are
# pixels whatever the input size: a 40 px face is a 40 px face on a 320 x 320 training crop
# and on a 1280 x 960 photo, so one trained network serves every photo size; only the number
# of cells of each map follows the input (see `make_face_priors`).
# A prior matches a face when their IoU is >= 0.35 (S3FD's threshold for small faces); two
# concentric squares of sides a < b have IoU (a/b)^2, so a prior covers faces from its
# side x 0.6 to its side / 0.6. Sides about 1.5 apart leave no face between 6 px and 430 px
# uncovered. Each map takes the faces 1 to 4 times its stride; a 10 px face on the stride-8
# map can be 4 px off a cell centre, which still leaves IoU >= 0.35 with the 10 or 16 px prior
# for most positions, and every face also takes its best prior whatever the overlap.
#   stride 8:   10, 16, 24 px - the small faces of crowds and group photos
#   stride 16:  32, 48 px
#   stride 32:  64, 96 px
#   stride 64:  128, 192, 256 px - portraits
FACE_PRIOR_MAPS: tuple[tuple[int, tuple[int, ...]], ...] = (
    (8, (10, 16, 24)),
    (16, (32, 48)),
    (32, (64, 96)),
    (64, (128, 192, 256)),
)
# Close-up portraits: a face filling 80 % of a 640 px photo is 512 px, twice the largest prior
# above, and no prior covers it (IoU with the 256 px square: (256 / 512)^2 = 0.25 < 0.35), so
# the smaller priors fire on its parts instead, one box each. `large_priors` adds these sides to
# the stride-64 map: with them every face from 6 px to the whole 640 px input (and up to 850 px
# under --size native) has a prior at IoU >= 0.35. They learn from the training crops' largest
# faces, which the "face" augmentation keeps whole even when they overflow the crop
# (facedet.data.transforms.RandomSquareCrop, min_visible).
LARGE_PRIOR_SIDES: tuple[int, ...] = (384, 512)
# Aspect ratios h / w of the priors of each size. Squares only: face boxes are at most a little
# taller than wide (faces-mask: median h/w about 1.2; faces-caltech's brow-to-chin boxes are
# close to square), and a square and a 1.25-tall box of the same area and centre overlap by
# IoU 0.8, which the box regression covers. One aspect instead of two halves the prediction
# convolutions, the costliest layers at stride 8 on a 640 px photo.
FACE_ASPECTS: tuple[float, ...] = (1.0,)
# The coarsest stride: network inputs are padded to a multiple of it, so every map's cells
# tile the input exactly.
INPUT_MULTIPLE = 64
# By default a photo keeps its own resolution, and one whose longer side exceeds this is
# shrunk to it: a 4000 px photo costs what a 640 px one does, and its faces (as photographed
# by people, rarely under 1/60 of the frame) stay above the 10 px priors. Photos are never
# enlarged by default: on the validation sets, enlarging small photos to 640 px found more of
# the tiniest faces but scored lower AP (many more false alarms on upscaled texture).
# `facedet.infer --size N` resizes to N either way; `--size native` never shrinks.
DEFAULT_MAX_SIZE = 640


def prior_maps(large: bool = False) -> tuple[tuple[int, tuple[int, ...]], ...]:
    """FACE_PRIOR_MAPS, with LARGE_PRIOR_SIDES added to the coarsest map when `large`."""
    if not large:
        return FACE_PRIOR_MAPS
    *finer, (stride, sides) = FACE_PRIOR_MAPS
    return (*finer, (stride, sides + LARGE_PRIOR_SIDES))


def priors_per_cell(large: bool = False) -> tuple[int, ...]:
    """Priors of one cell of each map: sizes x aspects. (3, 2, 2, 3), or (3, 2, 2, 5) when `large`."""
    return tuple(len(sides) * len(FACE_ASPECTS) for _, sides in prior_maps(large))


def make_face_priors(height: int, width: int | None = None, large: bool = False) -> Tensor:
    """The face priors of a `height` x `width` input (multiples of 64), (P, 4) "cxcywh"
    fractional of that input, NOT clamped.

    Order = order of the concatenated predictions: map by map (stride 8 first), cells row by
    row, and in each cell side by side (smallest first), each side in every aspect of FACE_ASPECTS.
    A prior of side s px and aspect a = h / w has w = s / sqrt(a), h = s * sqrt(a) (area s^2).
    P = 40*40*3 + 20*20*2 + 10*10*2 + 5*5*3 = 5,875 for 320 x 320 (+ 5*5*2 = 50 when `large`).

    Toy check (64 x 64: one 1 x 1 map of stride 64 has cx = cy = 0.5, and its square of
    side 128 px is 2.0 wide).

    Why no clamp: SSD300's priors are fractions of its one input size, and clamping them to
    [0, 1] caps the extra prior of its last map at the whole image. These sides are pixels: the
    network learns its offsets against a 256 px prior on 320 px crops, so that prior must stay
    256 px on a 180 x 200 photo (padded to 192 x 256) too; clamping the fractions would shrink it
    to the input's side there, and the same output would decode to a smaller box. A prior that
    overhangs the input is harmless: decoded boxes are clipped to the photo (facedet.models.detector).
    """
    width = height if width is None else width
    if height % INPUT_MULTIPLE or width % INPUT_MULTIPLE or height <= 0 or width <= 0:
        raise ConfigError(f"FaceSSD: the input must be a positive multiple of {INPUT_MULTIPLE} px on each side, "
                          f"got {height} x {width}")
    all_priors = []
    for stride, sides in prior_maps(large):
        rows, cols = height // stride, width // stride
        shapes = [(s / math.sqrt(a) / width, s * math.sqrt(a) / height)
                  for s in sides for a in FACE_ASPECTS]  # (w, h) fractional, in cell order
        wh = torch.tensor(shapes)  # (A, 2)
        cy, cx = torch.meshgrid((torch.arange(rows, dtype=torch.float32) + 0.5) / rows,
                                (torch.arange(cols, dtype=torch.float32) + 0.5) / cols, indexing="ij")
        cxcy = torch.stack([cx, cy], dim=-1).reshape(-1, 1, 2)  # (rows*cols, 1, 2), row by row
        priors = torch.cat([cxcy.expand(-1, len(shapes), 2), wh.expand(rows * cols, -1, 2)], dim=-1)
        all_priors.append(priors.reshape(-1, 4))  # (rows*cols*A, 4)
    return torch.cat(all_priors)  # (P, 4); no clamp, see above


# --------------------------------------------------------------------------- 2. model


class FaceSSD(nn.Module):
    """A slim SSD for faces, fully convolutional: any input whose sides are multiples of 64.

    images (N, 3, H, W) ImageNet-normalised ->
        pred_locs   (N, P, 4) offsets to `make_face_priors(H, W)` (see facedet.boxes.encode)
        pred_scores (N, P, C + 1) logits, column 0 = background

    Base: facedet.models.backbone.SmallBackbone (shapes for width w = 32, one 320 x 320 image)
        f8  (2w, 40, 40), f16 (4w, 20, 20), f32 (8w, 10, 10)       maps 1, 2, 3
        extra  conv_bn 1x1 8w -> 2w, conv_dw 2w -> 8w, stride 2 (8w, 5, 5)    f64, map 4
    With `fpn` (backbone.TopDown over f8, f16, f32, a feature pyramid's top-down path):
        map 2 = conv_dw(f16 + up2(1x1 conv f32))                (4w, 20, 20)
        map 1 = conv_dw(f8 + up2(1x1 conv map 2))               (2w, 40, 40)
    so the stride-8 map, whose own layers have seen only ~100 px, also carries what the deeper
    layers found around each small face; without it maps 1 and 2 are f8 and f16.
    Each map feeds one 3x3 conv for 4 offsets per prior and one for C + 1 scores per prior.
    """

    def __init__(self, width: int = 32, num_classes: int = 1, fpn: bool = True, large_priors: bool = False) -> None:
        super().__init__()
        w = width
        self.num_scores = num_classes + 1  # + background
        self.backbone = SmallBackbone(w)
        self.extra = nn.Sequential(conv_bn(8 * w, 2 * w, kernel=1), conv_dw(2 * w, 8 * w, stride=2))
        self.top_down = TopDown(self.backbone.channels[1:]) if fpn else None
        channels = (2 * w, 4 * w, 8 * w, 8 * w)  # of the four maps
        self.loc = nn.ModuleList(nn.Conv2d(c, k * 4, 3, padding=1) for c, k in zip(channels, priors_per_cell(large_priors)))
        self.cls = nn.ModuleList(
            nn.Conv2d(c, k * self.num_scores, 3, padding=1) for c, k in zip(channels, priors_per_cell(large_priors))
        )
        for conv in [*self.loc, *self.cls]:
            nn.init.xavier_uniform_(conv.weight)
            nn.init.zeros_(conv.bias)
        self.register_load_state_dict_pre_hook(load_legacy_keys)  # checkpoints from before backbone.py

    def features(self, images: Tensor) -> list[Tensor]:
        """The four prediction maps, strides 8, 16, 32, 64."""
        f4, *maps = self.backbone(images)  # f8 (N, 2w, H/8, W/8), f16 (N, 4w, H/16, W/16), f32 (N, 8w, H/32, W/32)
        if self.top_down is not None:
            maps = self.top_down(maps)
        return [*maps, self.extra(maps[-1])]  # + f64 (N, 8w, H/64, W/64)

    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        maps = self.features(images)
        n = images.shape[0]
        # (N, k*4, H, W) -> (N, H, W, k*4) -> (N, H*W*k, 4): each cell's k priors side by side,
        # the order of make_face_priors()
        locs = [conv(f).permute(0, 2, 3, 1).reshape(n, -1, 4) for conv, f in zip(self.loc, maps)]
        scores = [conv(f).permute(0, 2, 3, 1).reshape(n, -1, self.num_scores) for conv, f in zip(self.cls, maps)]
        return torch.cat(locs, dim=1), torch.cat(scores, dim=1)  # (N, P, 4), (N, P, C + 1)


# --------------------------------------------------------------------------- 3-5. loss, post-process, builder


def build_face_ssd(cfg: FaceSSDConfig) -> Detector:
    """FaceSSD + ssd.MultiBoxLoss + ssd.SSDPostprocess, both on `make_face_priors`.

    Reads cfg.width, cfg.image_size (the square training input), cfg.num_classes, cfg.fpn,
    cfg.large_priors, cfg.match_iou, cfg.neg_pos_ratio, cfg.loss ("ce" | "focal"), cfg.focal_alpha, cfg.focal_gamma.
    """
    loss = cfg.loss
    model = FaceSSD(cfg.width, cfg.num_classes, fpn=cfg.fpn, large_priors=cfg.large_priors)
    if loss == "focal":  # RetinaNet's init: every face sigmoid starts near 0.01
        for conv in model.cls:
            nn.init.constant_(conv.bias, -math.log((1 - 0.01) / 0.01))
    prior_fn = partial(make_face_priors, large=cfg.large_priors)
    priors = prior_fn(cfg.image_size)
    criterion = MultiBoxLoss(priors, threshold=cfg.match_iou, neg_pos_ratio=cfg.neg_pos_ratio, loss=loss,
                             focal_alpha=cfg.focal_alpha, focal_gamma=cfg.focal_gamma)
    postprocess = SSDPostprocess(priors, score="sigmoid" if loss == "focal" else "softmax", prior_fn=prior_fn)
    return Detector(model, criterion, postprocess, mean=IMAGENET_MEAN, std=IMAGENET_STD, image_size=cfg.image_size,
                    input_policy="scalable", max_size=DEFAULT_MAX_SIZE, size_multiple=INPUT_MULTIPLE,
                    min_score=MIN_SCORE, nms_iou=NMS_IOU, top_k=TOP_K)

