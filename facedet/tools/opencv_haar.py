"""The classic baseline: OpenCV's Viola-Jones Haar cascade (SPEC section 6), scored like a rung.

Viola-Jones slides a 24 x 24 window over an image pyramid; each window goes through a
cascade of boosted stages of Haar-like features (rectangle sums read off an integral image
in constant time), and most windows are rejected by the first cheap stages. OpenCV ships the
trained frontal-face cascade with opencv-python 4.x (`cv2.data.haarcascades`; OpenCV 5 no
longer includes the files). Optional: nothing else in facedet needs cv2.

    cascade = HaarCascade()                      # haarcascade_frontalface_default.xml
    det = cascade.detect(pil_image)              # {"boxes" (K, 4) "xyxy" pixels, "scores", "labels"}
"""
from __future__ import annotations

from pathlib import Path

import numpy as np
import torch
from PIL import Image

from facedet.errors import ConfigError


def _cv2():
    try:
        import cv2
    except ImportError:
        raise ConfigError("the Haar cascade needs OpenCV: pip install 'opencv-python-headless<5'") from None
    return cv2


class HaarCascade:
    """OpenCV's cascade detector with scores, so that AP and PR curves can be computed.

    Scores are the level weights of `detectMultiScale3(outputRejectLevels=True)`: the sum of
    the last stage's weak-classifier votes, higher = more face-like. They are not
    probabilities; they only rank detections, which is all AP needs.
    scale_factor 1.1 (pyramid step) and min_neighbors 3 (overlapping raw hits a detection
    needs) are OpenCV's defaults; min_size 20 px is below the cascade's 24 px window, i.e. off.
    """

    def __init__(self, cascade: str | Path = "haarcascade_frontalface_default.xml", scale_factor: float = 1.1,
                 min_neighbors: int = 3, min_size: int = 20):
        cv2 = _cv2()
        path = Path(cascade)
        if not path.is_file():
            data = getattr(cv2, "data", None)
            path = Path(data.haarcascades) / path.name if data is not None else path
        self.classifier = cv2.CascadeClassifier(str(path))
        if self.classifier.empty():
            raise ConfigError(f"OpenCV could not load the cascade '{cascade}' (OpenCV {cv2.__version__}; "
                              "the cascade files ship with opencv-python 4.x)")
        self.name = path.name
        self.scale_factor, self.min_neighbors, self.min_size = scale_factor, min_neighbors, min_size

    def detect(self, image: Image.Image) -> dict[str, torch.Tensor]:
        """Faces in an RGB PIL image: "boxes" (K, 4) float32 "xyxy" pixels, "scores" (K,), "labels" (K,) zeros."""
        cv2 = _cv2()
        gray = np.asarray(image.convert("L"))  # the cascade was trained on grayscale, at full resolution
        boxes, _, weights = self.classifier.detectMultiScale3(
            gray, scaleFactor=self.scale_factor, minNeighbors=self.min_neighbors,
            minSize=(self.min_size, self.min_size), outputRejectLevels=True)
        xywh = torch.as_tensor(np.asarray(boxes, dtype=np.float32).reshape(-1, 4))
        boxes_xyxy = torch.cat([xywh[:, :2], xywh[:, :2] + xywh[:, 2:]], dim=1)
        scores = torch.as_tensor(np.asarray(weights, dtype=np.float32).reshape(-1))
        return {"boxes": boxes_xyxy, "scores": scores, "labels": torch.zeros(len(scores), dtype=torch.int64)}

    def __repr__(self) -> str:
        cv2 = _cv2()
        return (f"HaarCascade({self.name}, OpenCV {cv2.__version__}, scale_factor={self.scale_factor}, "
                f"min_neighbors={self.min_neighbors})")
