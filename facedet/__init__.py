"""facedet: a ladder of face detectors, from a classifier to SSD300."""

__version__ = "0.1.0"
