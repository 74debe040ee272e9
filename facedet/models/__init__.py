"""The ladder's models. `MODELS` maps a config's `model.name` to its builder."""
from facedet.models.detector import IMAGENET_MEAN, IMAGENET_STD, Detector

__all__ = ["Detector", "IMAGENET_MEAN", "IMAGENET_STD"]
