"""Rung 3: the grid detector (seed 000, "Detecție cu grilă").

A classifier says whether a crop holds a face, not where. Here the image is cut into an
S x S grid and the network classifies every cell at once, "face fragment or not", in one
pass: S * S sigmoid outputs instead of one. Boxes do not come out of the network; they are
read off the thresholded grid afterwards by connected-component labelling. Reading order:

    grid_simple_features   the seed's simple convolution stack
    GridSimpleCNNModel     the seed's network (412,989,681 parameters at S = 7)
    GridCNNModel           the same head on the YOLO-face stack ("more complex extractor")
    GridSmallModel         a 1x1 conv head on the shared small backbone (model.backbone: small)
    truth_matrix           boxes -> the S x S 0/1 "truth matrix" (and truth_matrices, batched)
    GridLoss               BCE per cell -> {"bce": ...}
    GridPostprocess        threshold -> connected components -> one box per component
    build_grid_simple, build_grid_cnn

Each grid size S is a separate model: the seed trains S = 7 and S = 14 and compares them.
"""
from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from facedet.boxes import box_convert, component_boxes, label_components
from facedet.config import GridConfig
from facedet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from facedet.errors import ConfigError
from facedet.models.backbone import LEAKY_SLOPE, GridFeatures, feature_size, yolo_face_features
from facedet.models.detector import MIN_SCORE, NMS_IOU, TOP_K, Detector
from facedet.models.losses import binary_cross_entropy

# --------------------------------------------------------------------------- models


def grid_simple_features() -> nn.Sequential:
    """The seed's simple stack: images (N, 3, 224, 224) -> (N, 512, 14, 14); 1,743,040 parameters."""
    return nn.Sequential(
        nn.Conv2d(3, 64, kernel_size=7, stride=2, padding=3),    # (N, 64, 112, 112)    9,472
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.MaxPool2d(2),                                         # (N, 64, 56, 56)
        nn.Conv2d(64, 192, kernel_size=3, padding=1),            # (N, 192, 56, 56)   110,784
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.MaxPool2d(2),                                         # (N, 192, 28, 28)
        nn.Conv2d(192, 256, kernel_size=3, padding=1),           # (N, 256, 28, 28)   442,624
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.Conv2d(256, 512, kernel_size=3, padding=1),           # (N, 512, 28, 28) 1,180,160
        nn.LeakyReLU(LEAKY_SLOPE),
        nn.MaxPool2d(2),                                         # (N, 512, 14, 14)
    )


class GridSimpleCNNModel(nn.Module):
    """The seed's grid model: convolution stack -> Linear 4096 -> one probability per cell.

    torchinfo.summary(GridSimpleCNNModel(7), (1, 3, 224, 224)) reproduces the seed's table:

        features  grid_simple_features()             [1, 512, 14, 14]   1,743,040
        Flatten                                       [1, 100352]
        Linear 100352 -> 4096                         [1, 4096]        411,045,888
        ReLU
        Linear 4096 -> S * S                          [1, 49]              200,753
        Sigmoid, view                                 [1, 7, 7]
        Total params: 412,989,681        (S = 14: 413,591,940)

    The 4096-d "embedding" gives every cell's neuron plenty of weights (the seed's reason
    for its size); all cells read the same vector, so each cell can use the whole image.

    Args:
        griddim: S, the grid side (7 or 14 in the seed).
        image_size: side of the square input, a multiple of 16 (224 in the seed).
    """

    def __init__(self, griddim: int = 7, image_size: int = 224) -> None:
        super().__init__()
        self.griddim = griddim
        side = feature_size(image_size, type(self).__name__)
        self.features = self.make_features()
        self.head = nn.Sequential(
            nn.Flatten(),                                        # (N, 100352)
            nn.Linear(512 * side * side, 4096),
            nn.ReLU(),
            nn.Linear(4096, griddim * griddim),                  # (N, S * S)
            nn.Sigmoid(),
        )

    @staticmethod
    def make_features() -> nn.Module:
        """The convolution stack: (N, 3, H, W) -> (N, 512, H/16, W/16)."""
        return grid_simple_features()

    def forward(self, images: Tensor) -> Tensor:
        """images (N, 3, H, W) normalised -> cell face probabilities (N, S, S)."""
        return self.head(self.features(images)).view(-1, self.griddim, self.griddim)


class GridCNNModel(GridSimpleCNNModel):
    """The seed's "more complex extractor": the YOLO-face convolution stack with the same head.

    Six convolutions instead of four (1x1 reductions between 3x3 ones), 412,932,721
    parameters at S = 7: fewer than the simple model, yet the seed finds it recognises faces
    better. Same interface as GridSimpleCNNModel.
    """

    @staticmethod
    def make_features() -> nn.Module:
        return yolo_face_features()


class GridSmallModel(nn.Module):
    """The grid rung on the shared small backbone (`model.backbone: small`, the same-backbone ladder).

    backbone.GridFeatures (SmallBackbone read as S x S cells) -> 1x1 conv -> sigmoid: one face
    probability per cell, (N, S, S) like the seed's models. Where the seed's 4096-d linear layer
    lets every cell read the whole image, here a cell reads its receptive field (231 px of a
    256 px input at S = 7, so nearly the whole image anyway) at about 1/1800 of the parameters.
    """

    def __init__(self, width: int = 32, griddim: int = 7, image_size: int = 256) -> None:
        super().__init__()
        self.griddim = griddim
        self.features = GridFeatures(width, griddim, image_size)
        self.head = nn.Conv2d(self.features.channels, 1, kernel_size=1)
        # every cell starts at p = 0.1 (most cells hold no face), as YOLOFaceTiny's confidences
        nn.init.constant_(self.head.bias, math.log(0.1 / 0.9))

    def forward(self, images: Tensor) -> Tensor:
        """images (N, 3, H, W) normalised -> cell face probabilities (N, S, S)."""
        return torch.sigmoid(self.head(self.features(images))).squeeze(1)


# --------------------------------------------------------------------------- truth matrix


def _cells_inside(boxes_xyxy: Tensor, griddim: int) -> Tensor:
    """boxes (M, 4) fractional "xyxy" -> (M, S, S) bool, True where the cell counts as inside."""
    S = griddim
    centres = (torch.arange(S, device=boxes_xyxy.device, dtype=boxes_xyxy.dtype) + 0.5) / S  # (S,)
    x1, y1, x2, y2 = (v[:, None] for v in boxes_xyxy.unbind(-1))         # each (M, 1)
    in_cols = (x1 <= centres) & (centres <= x2)                          # (M, S)
    in_rows = (y1 <= centres) & (centres <= y2)                          # (M, S)
    inside = in_rows[:, :, None] & in_cols[:, None, :]                   # (M, S, S)
    # A box smaller than a cell may hold no cell centre: mark the cell holding its centre,
    # so that every face leaves at least one positive cell.
    cx, cy = box_convert(boxes_xyxy, "xyxy", "cxcywh")[:, :2].unbind(-1)
    col = (cx * S).long().clamp(0, S - 1)
    row = (cy * S).long().clamp(0, S - 1)
    inside[torch.arange(len(boxes_xyxy), device=inside.device), row, col] = True
    return inside


def truth_matrix(boxes_xyxy: Tensor, griddim: int) -> Tensor:
    """The seed's "truth matrix" of one image: boxes (M, 4) fractional "xyxy" -> (S, S) float 0/1.

    Rule: a cell is 1 when its centre lies inside a face box (edges included): a partly
    covered cell counts when the box covers the cell's middle point. A box too small to
    contain any cell centre marks the one cell holding its own centre. Every other cell is 0.

    Example, S = 4 (cell centres at 0.125, 0.375, 0.625, 0.875): the box (0.1, 0.1, 0.4, 0.4)
    marks the 2 x 2 block of rows/cols 0-1; the box (0.2, 0.2, 0.3, 0.3) holds no centre
    and marks only cell (1, 1).
    """
    if len(boxes_xyxy) == 0:
        return torch.zeros(griddim, griddim, device=boxes_xyxy.device)
    return _cells_inside(boxes_xyxy.float(), griddim).any(dim=0).float()


def truth_matrices(
    targets: list[dict[str, Any]], griddim: int, device: torch.device | str | None = None
) -> Tensor:
    """Batched truth_matrix: N dicts with "boxes" (M_n, 4) fractional "xyxy" -> (N, S, S) float 0/1."""
    if device is None:
        device = targets[0]["boxes"].device if targets else "cpu"
    truth = torch.zeros(len(targets), griddim, griddim, device=device)
    if not targets:
        return truth
    counts = torch.tensor([len(t["boxes"]) for t in targets], device=truth.device)
    boxes = torch.cat([t["boxes"].reshape(-1, 4) for t in targets]).to(truth.device, torch.float32)
    image_index = torch.repeat_interleave(torch.arange(len(targets), device=truth.device), counts)
    if len(boxes):
        # count the boxes covering each cell, per image, then turn counts into 0/1
        truth.index_add_(0, image_index, _cells_inside(boxes, griddim).float())
    return truth.clamp_(max=1)


# --------------------------------------------------------------------------- loss


class GridLoss(nn.Module):
    """Binary cross-entropy per cell, averaged over all N * S * S cells -> {"bce": ...}.

    The seed's worked example: truth t = [0, 1, 0, 1], predictions p = [0.2, 0.4, 0.1, 0.7]
    give (0.2231 + 0.9163 + 0.1054 + 0.3567) / 4 = 0.4004.

    forward(outputs, targets): outputs (N, S, S) probabilities; targets the batch's list of
    dicts (turned into truth matrices here) or an (N, S, S) truth tensor.
    """

    def __init__(self, griddim: int = 7) -> None:
        super().__init__()
        self.griddim = griddim

    def forward(self, outputs: Tensor, targets: list[dict[str, Any]] | Tensor) -> dict[str, Tensor]:
        """outputs (N, S, S), targets as in the class docstring -> {"bce": scalar}."""
        if outputs.shape[1:] != (self.griddim, self.griddim):
            raise ConfigError(
                f"GridLoss: outputs of shape {tuple(outputs.shape)} do not match model.griddim={self.griddim}"
            )
        if isinstance(targets, Tensor):
            truth = targets.to(outputs.device, outputs.dtype)
        else:
            truth = truth_matrices(targets, self.griddim, outputs.device).to(outputs.dtype)
        # the written-out BCE (models/losses.py), not F.binary_cross_entropy, which refuses NaN inputs (a
        # device assert on CUDA): a NaN output gives a NaN term, which the trainer names
        return {"bce": binary_cross_entropy(outputs, truth).mean()}


# --------------------------------------------------------------------------- post-processing


class GridPostprocess:
    """Cell probabilities -> boxes: one box per connected group of confident cells.

    Cells with p >= cell_threshold are foreground; 8-neighbour connected-component labelling
    (facedet.boxes.label_components) groups them, and each group becomes the smallest box
    holding its cells (facedet.boxes.component_boxes), in fractional "xyxy" (cell column j
    spans [j / S, (j + 1) / S]).
    Its score is the mean probability of its cells; the label is always 0 (face).
    `min_score` then filters components by that score, so evaluation at min_score 0.01
    ranks the same components instead of merging every faintly positive cell into one.

    Known failure, shown on purpose by the seed: two faces whose cells touch (even only at
    a corner) form one component and come out as ONE box. Boxes are also only as precise as
    the grid: a 7 x 7 grid snaps every edge to multiples of 1/7 of the image. The next rung
    (YOLO-face) regresses the boxes instead.
    """

    def __init__(self, griddim: int = 7, cell_threshold: float = 0.5) -> None:
        self.griddim = griddim
        self.cell_threshold = cell_threshold

    @torch.no_grad()
    def __call__(self, outputs: Tensor, min_score: float = MIN_SCORE, nms_iou: float | None = None,
                 top_k: int = TOP_K) -> list[dict[str, Tensor]]:
        """outputs (N, S, S) -> N dicts {"boxes" (K, 4) fractional "xyxy", "scores" (K,),
        "labels" (K,) int64}, by decreasing score, K <= top_k.

        nms_iou is accepted for a uniform call and ignored: components never share a cell.
        Unlike the other rungs' post-processors this one has defaults, the Detector's own
        settings (facedet.models.detector): chapter 3 reads the boxes off a hand-made grid with
        GridPostprocess(7)(probs[None]).
        """
        S = outputs.shape[1]
        detections = []
        for probs in outputs:  # one labelling per image
            components, K = label_components(probs >= self.cell_threshold, connectivity=8)
            boxes = component_boxes(components, K).to(probs.dtype) / S       # (K, 4) cells -> fractional
            ids = components.flatten() - 1                                   # (S*S,) -1 = background
            fg = ids >= 0
            ids, p = ids[fg], probs.flatten()[fg]
            # score of a component: the mean probability of its cells
            scores = torch.zeros(K, dtype=probs.dtype, device=outputs.device).index_add(0, ids, p)
            scores = scores / torch.bincount(ids, minlength=K).clamp(min=1)
            order = scores.argsort(descending=True)[:top_k]
            order = order[scores[order] >= min_score]
            detections.append(
                {
                    "boxes": boxes[order],
                    "scores": scores[order],
                    "labels": torch.zeros(len(order), dtype=torch.int64, device=outputs.device),
                }
            )
        return detections


# --------------------------------------------------------------------------- builders


def _check_single_class(cfg: GridConfig, name: str) -> None:
    if cfg.num_classes != 1:
        raise ConfigError(
            f"{name}: the grid detector finds one class (faces); model.num_classes must be 1, got {cfg.num_classes}"
        )


def build_grid_simple(cfg: GridConfig) -> Detector:
    """Config -> Detector with the seed's GridSimpleCNNModel; reads cfg.griddim and image_size
    (and cfg.backbone: small -> GridSmallModel(cfg.width)).

    The seed does not state its input normalisation; we use the ImageNet mean/std like the
    rest of the ladder.
    """
    _check_single_class(cfg, "grid_simple")
    if cfg.backbone == "small":
        model: nn.Module = GridSmallModel(cfg.width, cfg.griddim, cfg.image_size)
    else:
        model = GridSimpleCNNModel(cfg.griddim, cfg.image_size)
    return Detector(model, GridLoss(cfg.griddim), GridPostprocess(cfg.griddim), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                    image_size=cfg.image_size, min_score=MIN_SCORE, nms_iou=NMS_IOU, top_k=TOP_K)


def build_grid_cnn(cfg: GridConfig) -> Detector:
    """Config -> Detector with GridCNNModel (YOLO-face stack); reads cfg.griddim and image_size
    (and cfg.backbone: small -> GridSmallModel(cfg.width), as grid_simple)."""
    _check_single_class(cfg, "grid_cnn")
    if cfg.backbone == "small":
        model: nn.Module = GridSmallModel(cfg.width, cfg.griddim, cfg.image_size)
    else:
        model = GridCNNModel(cfg.griddim, cfg.image_size)
    return Detector(model, GridLoss(cfg.griddim), GridPostprocess(cfg.griddim), mean=IMAGENET_MEAN, std=IMAGENET_STD,
                    image_size=cfg.image_size, min_score=MIN_SCORE, nms_iou=NMS_IOU, top_k=TOP_K)
