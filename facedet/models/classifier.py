"""Rung 1: a face / not-face classifier (seed 000, "Clasificator cu rețele neuronale").

The network sees one 128 x 128 crop and answers one number: is there a face in it?
It gives no position: that is what the next rungs add. Reading order:

    CNNClassifier      the seed's network, layer for layer (67,203,137 parameters)
    ClassifierLoss     binary cross-entropy on the face logit -> {"bce": ...}
    classifier_postprocess   logits -> face probabilities
    build_classifier   config -> Detector(task="classification")

The layer table the seed prints with `torchinfo.summary(model, (1, 3, 128, 128))`:

    Conv2d 3->32    k3 p1    [1, 32, 128, 128]          896
    Conv2d 32->64   k3 p1    [1, 64, 128, 128]       18,496
    (max-pool 2)
    Conv2d 64->128  k3 p1    [1, 128, 64, 64]        73,856
    (max-pool 2, flatten 128 * 32 * 32 = 131,072)
    Linear 131072->512       [1, 512]            67,109,376   <- the "embedding" layer
    Linear 512->1            [1, 1]                     513
    Total params: 67,203,137

The seed applies ReLU and max-pooling as functions inside `forward`, which is why torchinfo
lists only the five layers above; we do the same so the table matches line for line. (Our
forward squeezes the logit to shape (B,), so torchinfo's top row reads [1] instead of [1, 1].)
"""
from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from facedet.config import ClassifierConfig
from facedet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from facedet.errors import ConfigError
from facedet.models.backbone import SmallBackbone
from facedet.models.detector import MIN_SCORE, NMS_IOU, TOP_K, Detector

# The seed's input resolution; the embedding layer's width depends on it.
CLASSIFIER_IMAGE_SIZE = 128


class CNNClassifier(nn.Module):
    """Three 3x3 convolutions, then two linear layers: one face logit per image.

    Args:
        embedding_dim: width of the penultimate ("embedding") layer. The seed draws the
            512-d embedding and a 32-d variant (`embedding_dim=32`, 4,287,617 parameters).
        image_size: side of the square input; the seed uses 128.
    """

    def __init__(self, embedding_dim: int = 512, image_size: int = CLASSIFIER_IMAGE_SIZE) -> None:
        super().__init__()
        if image_size % 4:
            # two 2x2 max-pools must divide the side exactly for the flatten size below
            raise ConfigError(f"CNNClassifier: image_size must be a multiple of 4, got {image_size}")
        self.embedding_dim = embedding_dim
        self.image_size = image_size
        self.conv1 = nn.Conv2d(3, 32, kernel_size=3, padding=1)
        self.conv2 = nn.Conv2d(32, 64, kernel_size=3, padding=1)
        self.conv3 = nn.Conv2d(64, 128, kernel_size=3, padding=1)
        flat = 128 * (image_size // 4) ** 2  # 128 channels x 32 x 32 = 131,072 at 128 px
        self.embedding = nn.Linear(flat, embedding_dim)
        self.fc = nn.Linear(embedding_dim, 1)

    def feature_maps(self, images: Tensor) -> dict[str, Tensor]:
        """Every intermediate activation, for the per-layer figure.

        images: (B, 3, S, S) or (3, S, S) normalised, S = image_size.
        Returns {"conv1": (B, 32, S, S), "conv2": (B, 64, S, S), "conv3": (B, 128, S/2, S/2),
                 "embedding": (B, embedding_dim), "logit": (B,)}, all after their ReLU
        (except the logit).
        """
        if images.dim() == 3:
            images = images.unsqueeze(0)
        conv1 = F.relu(self.conv1(images))                        # (B, 32, 128, 128)
        conv2 = F.relu(self.conv2(conv1))                         # (B, 64, 128, 128)
        conv3 = F.relu(self.conv3(F.max_pool2d(conv2, 2)))        # (B, 128, 64, 64)
        flat = torch.flatten(F.max_pool2d(conv3, 2), 1)           # (B, 131072)
        embedding = F.relu(self.embedding(flat))                  # (B, 512)
        logit = self.fc(embedding).squeeze(1)                     # (B,)
        return {"conv1": conv1, "conv2": conv2, "conv3": conv3, "embedding": embedding, "logit": logit}

    def embed(self, images: Tensor) -> Tensor:
        """The embedding layer's activations (after ReLU): (B, 3, S, S) -> (B, embedding_dim)."""
        return self.feature_maps(images)["embedding"]

    def forward(self, images: Tensor) -> Tensor:
        """images (B, 3, S, S) normalised -> face logits (B,).

        No sigmoid here: the loss works on logits (see ClassifierLoss) and
        `classifier_postprocess` turns them into probabilities.
        """
        return self.feature_maps(images)["logit"]


class SmallClassifier(nn.Module):
    """Rung 1 on the shared small backbone (`model.backbone: small`, the same-backbone ladder).

    images (B, 3, S, S) normalised -> face logits (B,): SmallBackbone's stride-32 map, averaged
    over its cells (global average pooling, so any S that is a multiple of 32 works), then one
    linear layer. 163,840 + 257 parameters at width 32; CNNClassifier's two linear layers on a
    flattened 32 x 32 map are 4.3-67 M.
    """

    def __init__(self, width: int = 32) -> None:
        super().__init__()
        self.backbone = SmallBackbone(width)
        self.fc = nn.Linear(self.backbone.channels[-1], 1)

    def forward(self, images: Tensor) -> Tensor:
        f32 = self.backbone(images)[-1]  # (B, 8w, S/32, S/32)
        return self.fc(f32.mean(dim=(2, 3))).squeeze(1)


class ClassifierLoss(nn.Module):
    """Binary cross-entropy between the face logit and the crop's 0/1 label.

    `BCEWithLogits` folds the sigmoid into the log: log(sigmoid(z)) = -softplus(-z), which
    stays finite for any logit, whereas sigmoid followed by BCE rounds sigmoid(z) to
    exactly 0 or 1 for |z| > ~17 in float32 and then takes log(0).
    """

    def forward(self, outputs: Tensor, targets: list[dict[str, Any]]) -> dict[str, Tensor]:
        """outputs: logits (B,); targets: B dicts with "label" a scalar tensor 0. or 1.

        Returns {"bce": scalar}, the mean over the batch.
        """
        labels = torch.stack([torch.as_tensor(t["label"], dtype=outputs.dtype) for t in targets])
        bce = F.binary_cross_entropy_with_logits(outputs, labels.to(outputs.device))
        return {"bce": bce}


def classifier_postprocess(outputs: Tensor, **unused: Any) -> Tensor:
    """logits (B,) -> face probabilities (B,) in [0, 1].

    Accepts (and ignores) the detectors' `min_score`, `nms_iou`, `top_k` keywords so every
    rung's post-processor can be called the same way.
    """
    return torch.sigmoid(outputs)


def build_classifier(cfg: ClassifierConfig) -> Detector:
    """Config -> Detector(task="classification").

    Reads `cfg.embedding_dim` and `cfg.image_size` (set it to 128, the seed's input); with
    `cfg.backbone: small`, SmallClassifier(cfg.width) instead of the seed's network.
    The seed does not state its input normalisation; we use the ImageNet mean/std that
    the rest of the ladder uses, so crops and sliding-window scans share one convention.
    """
    if cfg.backbone == "small":
        model: nn.Module = SmallClassifier(cfg.width)
    else:
        model = CNNClassifier(embedding_dim=cfg.embedding_dim, image_size=cfg.image_size)
    return Detector(
        model=model,
        criterion=ClassifierLoss(),
        postprocess=classifier_postprocess,
        task="classification",
        mean=IMAGENET_MEAN,
        std=IMAGENET_STD,
        image_size=cfg.image_size,
        # min_score: a crop is a face from probability 0.5; with nms_iou and top_k, also the
        # settings of the sliding window (rung 2) that facedet.load wraps a classifier in
        min_score=MIN_SCORE,
        nms_iou=NMS_IOU,
        top_k=TOP_K,
    )
