"""The ladder's models. `MODELS` maps a config's `model.name` to the builder of its rung.

    detector = build_model(cfg.model)   # Detector(model, criterion, postprocess, ...)
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from facedet.config import ModelConfig

from facedet.errors import ConfigError
from facedet.models.centernet import build_centernet
from facedet.models.classifier import build_classifier
from facedet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from facedet.models.detector import Detector
from facedet.models.face_ssd import build_face_ssd
from facedet.models.faster_rcnn import build_faster_rcnn
from facedet.models.fastai_ssd import build_fastai_ssd
from facedet.models.grid import build_grid_cnn, build_grid_simple
from facedet.models.retinanet import build_retinanet
from facedet.models.ssd import build_ssd300
from facedet.models.viola_jones import build_viola_jones
from facedet.models.yolo_face import build_yolo_face, build_yolo_face_tiny

MODELS: dict[str, Callable[..., Detector]] = {
    "viola_jones": build_viola_jones,  # rung 0: the classic Haar cascade, trained by boosting (facedet/boosting.py)
    "classifier": build_classifier,  # rung 1 (and 2, wrapped in a sliding window at inference)
    "grid_simple": build_grid_simple,  # rung 3, the seed's GridSimpleCNNModel
    "grid_cnn": build_grid_cnn,  # rung 3 with the YOLO-face convolution stack
    "yolo_face": build_yolo_face,  # rung 4, the seed's YOLOFaceCNN
    "yolo_face_tiny": build_yolo_face_tiny,  # rung 4, compact: the CPU quick start
    "ssd300": build_ssd300,  # rung 5
    "fastai_ssd": build_fastai_ssd,  # rung 5 variant: fast.ai head, 189 anchors
    "face_ssd": build_face_ssd,  # rung 5 made small: the shipped default face detector
    "retinanet": build_retinanet,  # rung 6: feature pyramid + focal loss
    "centernet": build_centernet,  # rung 7: objects as points, no anchors, no NMS
    "faster_rcnn": build_faster_rcnn,  # two stages: an RPN proposes ~300 regions, a RoI head classifies them
}


def build_model(cfg: ModelConfig) -> Detector:
    """The Detector named by `cfg.name`.

    `num_classes: 0` ("as many as the data has") is resolved by the trainer before this;
    called directly (a notebook), 0 builds a one-class (face) model.
    """
    if cfg.name not in MODELS:
        raise ConfigError(f"model.name '{cfg.name}' is not a facedet model; expected one of {', '.join(MODELS)}")
    if cfg.num_classes == 0:
        cfg = dataclasses.replace(cfg, num_classes=1)
    return MODELS[cfg.name](cfg)


__all__ = ["MODELS", "build_model", "Detector", "IMAGENET_MEAN", "IMAGENET_STD"]
