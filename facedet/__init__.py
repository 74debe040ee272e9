"""facedet: a ladder of face detectors, from a classifier to SSD300.

    import facedet
    det = facedet.load()                  # the shipped face detector (or facedet.load("runs/x/best.pt"))
    facedet.list_detectors()              # every shipped detector: facedet.load("retinanet"), ...
    found = det("photo.jpg")              # boxes (K, 4) in pixels, scores, labels, names
"""

__version__ = "0.1.0"

from facedet.checkpoint import list_detectors, load  # noqa: E402  (after __version__, which the package metadata reads)
from facedet.models.detector import Detections, Detector  # noqa: E402

__all__ = ["load", "list_detectors", "Detector", "Detections", "__version__"]
