"""Rung 4: the YOLO-style regression face detector (seed 000, "Detector de obiecte cu regresie").

The grid rung says *which cells* hold a face; this rung makes every cell also say *where the
whole face is*: each cell predicts (p, x, y, w, h), a face probability and a box. Because a
cell's receptive field covers much more than the cell, the cell that holds a face's centre
can see the whole face and regress its box. Every cell proposes a box; non-maximum
suppression keeps the best one per face. Reading order:

    yolo_face_features   the seed's convolution stack (facedet.models.backbone: grid.GridCNNModel uses it too)
    YOLOFaceCNN          the seed's network, layer for layer (413,743,925 parameters)
    YOLOFaceTiny         a compact fully-convolutional variant (1,128,229 parameters) for CPU
    YOLOFaceSmall        the same head on the shared small backbone (model.backbone: small)
    encode_targets       boxes -> the (N, S, S, B*5+C) tensor the network should output
    cell_to_image        in-cell centres -> image-relative centres
    decode_boxes         network output -> one fractional "xyxy" box per cell and slot
    YOLOFaceLoss         {"coord", "obj", "noobj"(, "cls")}
    YOLOPostprocess      threshold -> NMS -> top-k
    build_yolo_face, build_yolo_face_tiny

Output layout, shared by every function here: `outputs[n, i, j]` is cell (row i, column j)
and holds B slots of 5 numbers, then the class scores:

    [p_0, x_0, y_0, w_0, h_0,  ...,  p_{B-1}, x_{B-1}, y_{B-1}, w_{B-1}, h_{B-1},  c_0 ... c_{C-1}]

all in [0, 1] (sigmoid). The seed is S=7, B=1, C=0: 7 x 7 x 5. With one object class
(faces) there is nothing to classify, so `num_classes=1` adds no class scores either; the
class scores appear only for num_classes > 1.

"Transition to YOLOv1" (the seed's last section), all configurable, defaults = seed:
B boxes per cell, C classes, and centres relative to the cell (`cell_relative=True`:
x, y are the centre's offset inside its cell, 0..1) instead of relative to the image (seed).
Widths and heights are always fractions of the image.
"""
from __future__ import annotations

import math
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facedet.boxes import batched_nms, box_area, box_convert, elementwise_box_iou, nms
from facedet.config import YOLOFaceConfig, YOLOFaceTinyConfig
from facedet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from facedet.errors import ConfigError
from facedet.models.backbone import LEAKY_SLOPE, GridFeatures, feature_size, yolo_face_features
from facedet.models.detector import MIN_SCORE, NMS_IOU, TOP_K, Detector
from facedet.models.losses import binary_cross_entropy


def num_class_scores(num_classes: int) -> int:
    """How many class scores a cell carries: none for a single class (faces), else C."""
    return num_classes if num_classes > 1 else 0


def cell_channels(boxes_per_cell: int, num_classes: int) -> int:
    """Numbers per cell: B * (p, x, y, w, h) + C class scores. The seed: 1 * 5 + 0 = 5."""
    return boxes_per_cell * 5 + num_class_scores(num_classes)


# --------------------------------------------------------------------------- models


class YOLOFaceCNN(nn.Module):
    """The seed's regression detector: convolution stack -> one big linear head.

    torchinfo.summary(YOLOFaceCNN(), (1, 3, 224, 224)) reproduces the seed's table:

        features  yolo_face_features()                 [1, 512, 14, 14]   1,686,080
        Flatten                                         [1, 100352]
        Linear 100352 -> 4096                           [1, 4096]        411,045,888
        BatchNorm1d(4096)                               [1, 4096]              8,192
        LeakyReLU(0.1)
        Linear 4096 -> 245 (= 7 * 7 * 5)                [1, 245]           1,003,765
        Sigmoid, view                                   [1, 7, 7, 5]
        Total params: 413,743,925

    Every cell's prediction comes out of the same 4096-d vector, so each cell can use the
    whole image. The price is the 411M-parameter first linear layer (99% of the model).
    BatchNorm1d in training mode needs batches of at least 2 images.

    Args:
        griddim: S, the grid side (7 in the seed).
        boxes_per_cell: B (1 in the seed, 2 in YOLOv1).
        num_classes: C object classes; 1 (faces) adds no class scores.
        image_size: side of the square input, a multiple of 16 (224 in the seed).
    """

    def __init__(self, griddim: int = 7, boxes_per_cell: int = 1, num_classes: int = 1, image_size: int = 224) -> None:
        super().__init__()
        self.griddim = griddim
        self.channels = cell_channels(boxes_per_cell, num_classes)
        side = feature_size(image_size, "YOLOFaceCNN")
        self.features = yolo_face_features()
        self.head = nn.Sequential(
            nn.Flatten(),                                        # (N, 512 * 14 * 14) = (N, 100352)
            nn.Linear(512 * side * side, 4096),
            nn.BatchNorm1d(4096),
            nn.LeakyReLU(LEAKY_SLOPE),
            nn.Linear(4096, griddim * griddim * self.channels),  # (N, S * S * (B*5 + C))
            nn.Sigmoid(),
        )

    def forward(self, images: Tensor) -> Tensor:
        """images (N, 3, H, W) normalised -> outputs (N, S, S, B*5 + C) in [0, 1]."""
        out = self.head(self.features(images))
        return out.view(-1, self.griddim, self.griddim, self.channels)


def _conv_bn(c_in: int, c_out: int, stride: int) -> nn.Sequential:
    """3x3 convolution -> BatchNorm -> LeakyReLU(0.1); the conv has no bias (BatchNorm has one)."""
    return nn.Sequential(
        nn.Conv2d(c_in, c_out, kernel_size=3, stride=stride, padding=1, bias=False),
        nn.BatchNorm2d(c_out),
        nn.LeakyReLU(LEAKY_SLOPE),
    )


class YOLOFaceTiny(nn.Module):
    """A compact, fully-convolutional YOLO-face: same outputs as YOLOFaceCNN, ~1/370 the size.

    Stride-2 3x3 convolutions halve the image until it is S x S (224 -> 7 takes five), then
    one more 3x3 convolution widens the receptive field (to 127 px at 224 -> 7, enough to see
    a face several cells wide), and a 1x1 convolution predicts the B*5 + C numbers of each
    cell. BatchNorm after every convolution is what lets it train in a few CPU minutes.

    Channels for width=32, 224 -> 7: 32, 64, 128, 128, 256, then 256 -> 1,128,229 parameters
    with the seed's 5 outputs per cell. The head has no linear layer, so one cell sees only
    its receptive field, not the whole image as in YOLOFaceCNN.

    Where is the centre? A convolution computes the same function in every cell, so it can
    hardly output a position relative to the whole image (it barely knows where it is), but
    it easily says where the centre lies *inside its own cell*. So the head always predicts
    the in-cell offset (YOLOv1); with cell_relative=False the model adds its cell's position
    (cell_to_image) and outputs the seed's image-relative centres. Either way the outputs
    follow the layout of YOLOFaceCNN with the same cell_relative setting.

    Args:
        width: channels of the first stage; stages double it up to 4x, the last two use 8x.
        griddim, boxes_per_cell, num_classes, image_size: as in YOLOFaceCNN;
            image_size / griddim must be a power of two (2 ... 2**8).
        cell_relative: the centre convention of the outputs (see above and encode_targets).
    """

    def __init__(
        self,
        width: int = 32,
        griddim: int = 7,
        boxes_per_cell: int = 1,
        num_classes: int = 1,
        image_size: int = 224,
        cell_relative: bool = False,
    ) -> None:
        super().__init__()
        self.griddim = griddim
        self.boxes_per_cell = boxes_per_cell
        self.cell_relative = cell_relative
        self.channels = cell_channels(boxes_per_cell, num_classes)
        self.features, c_out = self.make_features(width, griddim, image_size)
        self.head = nn.Conv2d(c_out, self.channels, kernel_size=1)
        # Start every p at 0.1 instead of 0.5: almost all cells hold no face, and a prior of
        # 0.1 spares the first steps from unlearning p = 0.5 everywhere (RetinaNet's trick).
        with torch.no_grad():
            self.head.bias[0 : 5 * boxes_per_cell : 5].fill_(math.log(0.1 / 0.9))

    @staticmethod
    def make_features(width: int, griddim: int, image_size: int) -> tuple[nn.Module, int]:
        """The strided stack: (N, 3, H, W) -> (N, 8w, S, S), and its 8w output channels."""
        ratio = image_size / griddim
        stages = round(math.log2(ratio)) if ratio >= 2 else 0
        if stages < 1 or stages > 8 or griddim * 2**stages != image_size:
            raise ConfigError(
                f"YOLOFaceTiny: model.image_size / model.griddim must be a power of two, "
                f"got {image_size} / {griddim}"
            )
        widths = [width * 2 ** min(i, 2) for i in range(stages - 1)] + [8 * width]
        layers, c_in = [], 3
        for c_out in widths:                                     # each halves H and W
            layers.append(_conv_bn(c_in, c_out, stride=2))
            c_in = c_out
        layers.append(_conv_bn(c_in, c_in, stride=1))            # (N, 8w, S, S)
        return nn.Sequential(*layers), c_in

    def forward(self, images: Tensor) -> Tensor:
        """images (N, 3, H, W) normalised -> outputs (N, S, S, B*5 + C) in [0, 1]."""
        out = torch.sigmoid(self.head(self.features(images)))    # (N, B*5 + C, S, S)
        out = out.permute(0, 2, 3, 1)                            # (N, S, S, B*5 + C), centres in-cell
        return out if self.cell_relative else cell_to_image(out, self.boxes_per_cell)


class YOLOFaceSmall(YOLOFaceTiny):
    """Rung 4 on the shared small backbone (`model.backbone: small`, the same-backbone ladder).

    YOLOFaceTiny's 1x1 head and outputs on backbone.GridFeatures (SmallBackbone read as S x S
    cells by adaptive average pooling), so image_size / griddim need not be a power of two.
    `width` is SmallBackbone's (channels at stride 4).
    """

    @staticmethod
    def make_features(width: int, griddim: int, image_size: int) -> tuple[nn.Module, int]:
        features = GridFeatures(width, griddim, image_size)
        return features, features.channels


# --------------------------------------------------------------------------- targets and boxes


def _cat_targets(targets: list[dict[str, Any]], device: torch.device) -> tuple[Tensor, Tensor, Tensor]:
    """All boxes of a batch in one tensor: (M, 4) "xyxy", labels (M,), image index (M,)."""
    counts = torch.tensor([len(t["boxes"]) for t in targets], device=device)
    boxes = torch.cat([t["boxes"].reshape(-1, 4) for t in targets]).to(device, torch.float32)
    labels = torch.cat([t["labels"].reshape(-1) for t in targets]).to(device, torch.int64)
    image_index = torch.repeat_interleave(torch.arange(len(targets), device=device), counts)
    return boxes, labels, image_index


def encode_targets(
    targets: list[dict[str, Any]],
    griddim: int = 7,
    boxes_per_cell: int = 1,
    num_classes: int = 1,
    cell_relative: bool = False,
    device: torch.device | str | None = None,
) -> Tensor:
    """Boxes -> the tensor the network should output: (N, S, S, B*5 + C).

    targets: N dicts with "boxes" (M_n, 4) fractional "xyxy" and "labels" (M_n,) 0-based.

    The rule (the seed's): a box belongs to the one cell that holds its centre,
    row i = floor(cy * S), column j = floor(cx * S). That cell gets p = 1 and the box as
    (x, y, w, h): the centre relative to the image (seed) or, with cell_relative, relative to
    the cell (x = cx * S - j, y = cy * S - i, YOLOv1); w and h are fractions of the image.
    Every other cell is all zeros.

    One box per cell: when several centres fall in the same cell, the largest box wins
    (ties: the one listed last). With B > 1 all B slots of the cell hold the same box, as in
    YOLOv1; the loss then makes the slot whose prediction overlaps it best responsible.
    With num_classes > 1 the class scores are the one-hot label.
    """
    S, B = griddim, boxes_per_cell
    C = num_class_scores(num_classes)
    if device is None:
        device = targets[0]["boxes"].device if targets else "cpu"
    encoded = torch.zeros(len(targets), S, S, B * 5 + C, device=device)
    if not targets:
        return encoded
    boxes, labels, image_index = _cat_targets(targets, encoded.device)
    if len(boxes) == 0:
        return encoded
    cx, cy, w, h = box_convert(boxes, "xyxy", "cxcywh").unbind(-1)        # each (M,)
    col = (cx * S).long().clamp(0, S - 1)
    row = (cy * S).long().clamp(0, S - 1)

    # Keep the largest box of each cell: sort by area, then (stably) by cell, so each run of
    # equal cells ends with its largest box; keep the last entry of each run.
    cell = (image_index * S + row) * S + col                            # (M,) one id per cell
    order = box_area(boxes).argsort(stable=True)
    order = order[cell[order].argsort(stable=True)]
    sorted_cell = cell[order]
    last = torch.ones_like(sorted_cell, dtype=torch.bool)
    last[:-1] = sorted_cell[1:] != sorted_cell[:-1]
    keep = order[last]                                                  # (K,) one box per cell

    if cell_relative:
        x, y = cx * S - col, cy * S - row
    else:
        x, y = cx, cy
    slot = torch.stack([torch.ones_like(x), x, y, w, h], dim=-1)[keep]  # (K, 5)
    values = slot.repeat(1, B)                                          # (K, B*5)
    if C:
        values = torch.cat([values, F.one_hot(labels[keep], C).float()], dim=-1)  # (K, B*5 + C)
    encoded[image_index[keep], row[keep], col[keep]] = values
    return encoded


def cell_to_image(outputs: Tensor, boxes_per_cell: int = 1) -> Tensor:
    """Cell-relative centres -> image-relative centres: (N, S, S, B*5 + C) -> same shape.

    In cell (row i, column j) every slot's x becomes (j + x) / S and y becomes (i + y) / S;
    p, w, h and the class scores are unchanged.
    """
    S, D = outputs.shape[1], outputs.shape[-1]
    steps = torch.arange(S, device=outputs.device, dtype=outputs.dtype)
    shift = torch.zeros(S, S, D, device=outputs.device, dtype=outputs.dtype)
    shift[:, :, 1 : 5 * boxes_per_cell : 5] = steps.view(1, S, 1)   # + column j on every x
    shift[:, :, 2 : 5 * boxes_per_cell : 5] = steps.view(S, 1, 1)   # + row i on every y
    scale = torch.ones(D, device=outputs.device, dtype=outputs.dtype)
    scale[1 : 5 * boxes_per_cell : 5] = 1 / S
    scale[2 : 5 * boxes_per_cell : 5] = 1 / S
    return (outputs + shift) * scale


def decode_boxes(outputs: Tensor, boxes_per_cell: int = 1, cell_relative: bool = False) -> Tensor:
    """Network outputs (N, S, S, B*5 + C) -> boxes (N, S, S, B, 4) fractional "xyxy", unclipped.

    The inverse of encode_targets' coordinates: with cell_relative the centre of cell (i, j)'s
    slot is ((j + x) / S, (i + y) / S), otherwise (x, y) directly.
    """
    if cell_relative:
        outputs = cell_to_image(outputs, boxes_per_cell)
    N, S = outputs.shape[0], outputs.shape[1]
    xywh = outputs[..., : 5 * boxes_per_cell].reshape(N, S, S, boxes_per_cell, 5)[..., 1:]  # (N,S,S,B,4)
    return box_convert(xywh, "cxcywh", "xyxy")


# --------------------------------------------------------------------------- loss


def _mean(values: Tensor, count: int) -> Tensor:
    """Sum / count, and exactly 0 (not NaN) when there is nothing to average."""
    return values.sum() / max(count, 1)


class YOLOFaceLoss(nn.Module):
    """The seed's YOLOFaceLoss, generalised to B slots and C classes.

    obj cells: target p > 0 (the cell holding a box centre); noobj cells: target p == 0.

        coord = lambda_coord * MSE(x, y, w, h)   mean over obj cells x 4 coordinates
        obj   =                BCE(p, 1)         mean over obj cells
        noobj = lambda_noobj * BCE(p, 0)         mean over noobj cells
        cls   =                BCE(classes)      mean over obj cells x C   (only when C > 1)

    The means are the seed's reductions (nn.MSELoss / nn.BCELoss on the masked cells, whose
    default is the mean); YOLOv1 sums over cells instead. The weights are YOLOv1's 5 and 0.5:
    a 7 x 7 grid has ~48 empty cells per face, and lambda_noobj keeps them from drowning
    the few cells that hold faces. An image without faces has no obj cells: coord and obj are
    exactly 0 there.

    With B > 1 (YOLOv1), in each obj cell the slot whose predicted box has the highest IoU
    with the target box is responsible (gets coord and obj); the cell's other slots count
    as noobj.

    forward(outputs, targets): outputs (N, S, S, B*5 + C); targets either the batch's list of
    dicts (encoded here with encode_targets) or an already encoded (N, S, S, B*5 + C) tensor,
    the seed's YOLOFaceLoss(pred, target) call. Returns a dict of weighted scalar terms; a NaN
    in the outputs makes its term NaN, which the trainer reports by name.
    """

    def __init__(
        self,
        lambda_coord: float = 5.0,
        lambda_noobj: float = 0.5,
        griddim: int = 7,
        boxes_per_cell: int = 1,
        num_classes: int = 1,
        cell_relative: bool = False,
    ) -> None:
        super().__init__()
        self.lambda_coord = lambda_coord
        self.lambda_noobj = lambda_noobj
        self.griddim = griddim
        self.boxes_per_cell = boxes_per_cell
        self.num_classes = num_classes
        self.cell_relative = cell_relative

    def forward(self, outputs: Tensor, targets: list[dict[str, Any]] | Tensor) -> dict[str, Tensor]:
        """outputs, targets as in the class docstring -> {"coord", "obj", "noobj"(, "cls")}."""
        if outputs.shape[1:] != (self.griddim, self.griddim, cell_channels(self.boxes_per_cell, self.num_classes)):
            raise ConfigError(
                f"YOLOFaceLoss: outputs of shape {tuple(outputs.shape)} do not match model.griddim="
                f"{self.griddim}, boxes_per_cell={self.boxes_per_cell}, num_classes={self.num_classes}"
            )
        if isinstance(targets, Tensor):
            encoded = targets.to(outputs.device, outputs.dtype)
        else:
            encoded = encode_targets(
                targets, self.griddim, self.boxes_per_cell, self.num_classes, self.cell_relative, outputs.device
            ).to(outputs.dtype)
        N, S = outputs.shape[0], outputs.shape[1]
        B = self.boxes_per_cell
        pred = outputs[..., : 5 * B].reshape(N, S, S, B, 5)
        true = encoded[..., : 5 * B].reshape(N, S, S, B, 5)

        if B == 1:
            obj = true[..., 0] > 0                                   # (N, S, S, 1)
            noobj = true[..., 0] == 0
        else:
            has_face = true[..., 0, 0] > 0                           # (N, S, S)
            with torch.no_grad():
                iou = elementwise_box_iou(
                    decode_boxes(outputs, B, self.cell_relative), decode_boxes(encoded, B, self.cell_relative)
                )                                                    # (N, S, S, B)
            best = F.one_hot(iou.argmax(-1), B).bool()               # (N, S, S, B)
            obj = best & has_face[..., None]
            noobj = ~obj

        coord_error = (pred[..., 1:][obj] - true[..., 1:][obj]) ** 2     # (n_obj, 4)
        obj_error = binary_cross_entropy(pred[..., 0][obj], true[..., 0][obj])  # (n_obj,)
        p_empty = pred[..., 0][noobj]                                    # (n_noobj,)
        noobj_error = binary_cross_entropy(p_empty, torch.zeros_like(p_empty))
        terms = {
            "coord": self.lambda_coord * _mean(coord_error, coord_error.numel()),
            "obj": _mean(obj_error, obj_error.numel()),
            "noobj": self.lambda_noobj * _mean(noobj_error, noobj_error.numel()),
        }
        C = num_class_scores(self.num_classes)
        if C:
            has_face = true[..., 0, 0] > 0                           # (N, S, S)
            cls_error = binary_cross_entropy(outputs[..., 5 * B :][has_face], encoded[..., 5 * B :][has_face])
            terms["cls"] = _mean(cls_error, cls_error.numel())
        return terms


# --------------------------------------------------------------------------- post-processing


class YOLOPostprocess:
    """Network outputs -> detections: every cell's every slot proposes a box.

    score = p (times the best class score when C > 1, whose class is the label; else
    label 0). Boxes scoring below min_score are dropped, NMS removes the near-duplicates
    that neighbouring cells propose for the same face (class-aware with several classes),
    and the top_k best remain.
    """

    def __init__(
        self, griddim: int = 7, boxes_per_cell: int = 1, num_classes: int = 1, cell_relative: bool = False
    ) -> None:
        self.griddim = griddim
        self.boxes_per_cell = boxes_per_cell
        self.num_classes = num_classes
        self.cell_relative = cell_relative

    @torch.no_grad()
    def __call__(self, outputs: Tensor, *, min_score: float, nms_iou: float, top_k: int) -> list[dict[str, Tensor]]:
        """outputs (N, S, S, B*5 + C) -> N dicts {"boxes" (K, 4) fractional "xyxy",
        "scores" (K,), "labels" (K,) int64 0-based}, sorted by decreasing score, K <= top_k."""
        N, S = outputs.shape[0], outputs.shape[1]
        B = self.boxes_per_cell
        boxes = decode_boxes(outputs, B, self.cell_relative).clamp(0, 1).reshape(N, S * S * B, 4)
        scores = outputs[..., 0 : 5 * B : 5]                                   # (N, S, S, B)
        C = num_class_scores(self.num_classes)
        if C:
            class_scores, labels = outputs[..., 5 * B :].max(dim=-1)           # (N, S, S) each
            scores = scores * class_scores[..., None]
            labels = labels[..., None].expand(N, S, S, B)
        else:
            labels = torch.zeros_like(scores, dtype=torch.int64)
        scores, labels = scores.reshape(N, -1), labels.reshape(N, -1)          # (N, S*S*B)

        detections = []
        for n in range(N):  # NMS keeps a different number of boxes per image
            keep = (scores[n] >= min_score).nonzero().squeeze(1)
            b, s, l = boxes[n, keep], scores[n, keep], labels[n, keep]
            kept = batched_nms(b, s, l, nms_iou) if C else nms(b, s, nms_iou)
            kept = kept[:top_k]
            detections.append({"boxes": b[kept], "scores": s[kept], "labels": l[kept]})
        return detections


# --------------------------------------------------------------------------- builders


def _loss_and_postprocess(cfg: YOLOFaceConfig) -> tuple[YOLOFaceLoss, YOLOPostprocess]:
    grid = dict(
        griddim=cfg.griddim,
        boxes_per_cell=cfg.boxes_per_cell,
        num_classes=cfg.num_classes,
        cell_relative=cfg.cell_relative,
    )
    return YOLOFaceLoss(cfg.lambda_coord, cfg.lambda_noobj, **grid), YOLOPostprocess(**grid)


def build_yolo_face(cfg: YOLOFaceConfig) -> Detector:
    """Config -> Detector with the seed's YOLOFaceCNN.

    Reads cfg.griddim, boxes_per_cell, num_classes, cell_relative, lambda_coord, lambda_noobj
    and image_size. The seed does not state its input normalisation; we use the ImageNet
    mean/std like the rest of the ladder. cfg.backbone: small -> YOLOFaceSmall(cfg.width).
    """
    if cfg.backbone == "small":
        model: nn.Module = YOLOFaceSmall(cfg.width, cfg.griddim, cfg.boxes_per_cell, cfg.num_classes, cfg.image_size,
                                         cfg.cell_relative)
    else:
        model = YOLOFaceCNN(cfg.griddim, cfg.boxes_per_cell, cfg.num_classes, cfg.image_size)
    criterion, postprocess = _loss_and_postprocess(cfg)
    return Detector(model, criterion, postprocess, mean=IMAGENET_MEAN, std=IMAGENET_STD, image_size=cfg.image_size,
                    min_score=MIN_SCORE, nms_iou=NMS_IOU, top_k=TOP_K)


def build_yolo_face_tiny(cfg: YOLOFaceTinyConfig) -> Detector:
    """Config -> Detector with YOLOFaceTiny; also reads cfg.width (channels of the first stage).
    cfg.backbone: small -> YOLOFaceSmall, as yolo_face."""
    if cfg.backbone == "small":
        return build_yolo_face(cfg)
    model = YOLOFaceTiny(
        cfg.width, cfg.griddim, cfg.boxes_per_cell, cfg.num_classes, cfg.image_size, cfg.cell_relative
    )
    criterion, postprocess = _loss_and_postprocess(cfg)
    return Detector(model, criterion, postprocess, mean=IMAGENET_MEAN, std=IMAGENET_STD, image_size=cfg.image_size,
                    min_score=MIN_SCORE, nms_iou=NMS_IOU, top_k=TOP_K)
