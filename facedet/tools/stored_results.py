"""Each shipped detector's measured numbers, stored beside its weights, so a chapter can show
them on a fresh clone without the data sets (and without re-running a benchmark).

    python -m facedet.tools.benchmark --data $FACEDET_DATA/faces-caltech --ladder shipped \
        --window-max-images 100 --results facedet/weights/results     # then the same for faces-mask

writes facedet/weights/results/<name>.json, one file per shipped detector holding one entry
per data set (the data folder's name), updated in place:

    {"faces-caltech": {"photos": 709, "faces": 1072, "AP50": ..., "AP30": ..., "AP_coco": ...,
                       "recall_at_50fp": ..., "precision": [...], "recall": [...],
                       "operating_point": {"min_score": ..., "precision": ..., "recall": ...,
                                           "recall_by_size": {"10-16 px": [found, faces], ...}}}}

precision / recall is the PR curve at IoU 0.5 (decreasing score) at its true positives, the
points that decide AP (`thin_curve`); AP50 is the benchmark's, computed on the whole curve.
"""
from __future__ import annotations

import json
from pathlib import Path

import numpy as np

from facedet.checkpoint import SHIPPED_WEIGHTS
from facedet.errors import DataError

RESULTS_DIR = SHIPPED_WEIGHTS / "results"
MAX_CURVE_POINTS = 1000  # more than the faces of a 100-photo benchmark; a full curve has a point per detection


def thin_curve(precision: np.ndarray, recall: np.ndarray, max_points: int = MAX_CURVE_POINTS) -> tuple[list, list]:
    """The points of a (precision (K,), recall (K,)) curve where recall rises (one per true
    positive), with its first and last points, as lists of floats rounded to 4 decimals; evenly
    spaced among those when there are more than `max_points`.

    All-point AP depends only on the precision where recall rises (the envelope's maxima are
    there), so the kept points give the same AP as the whole curve, up to the rounding.
    """
    precision, recall = np.asarray(precision, dtype=np.float64), np.asarray(recall, dtype=np.float64)
    if len(recall):
        rises = np.flatnonzero(np.diff(recall, prepend=0.0) > 0)
        keep = np.unique(np.r_[0, rises, len(recall) - 1])
        if len(keep) > max_points:
            keep = keep[np.unique(np.linspace(0, len(keep) - 1, max_points).round().astype(int))]
        precision, recall = precision[keep], recall[keep]
    return [round(float(p), 4) for p in precision], [round(float(r), 4) for r in recall]


def result_entry(row: dict, curve: tuple[np.ndarray, np.ndarray]) -> dict:
    """One data set's entry from a benchmark row (`Row` as a dict) and its IoU-0.5 PR curve;
    "faces" counts the faces scored (difficult ones aside), on the photos the detector saw."""
    precision, recall = thin_curve(*curve)
    point = row["operating_point"]
    return {"photos": row["images"], "faces": point["num_gt"], "AP50": row["AP50"], "AP30": row["AP30"],
            "AP_coco": row["AP_coco"], "recall_at_50fp": row["recall_at_50fp"],
            "precision": precision, "recall": recall,
            "operating_point": {k: point[k] for k in ("min_score", "precision", "recall", "recall_by_size")}}


def write_result(folder: str | Path, name: str, data_set: str, entry: dict) -> Path:
    """Store `entry` as `data_set`'s in folder/<name>.json, keeping the other data sets' entries."""
    path = Path(folder) / f"{name}.json"
    stored = json.loads(path.read_text()) if path.is_file() else {}
    stored[data_set] = entry
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(dict(sorted(stored.items())), indent=1) + "\n")
    return path


def load_result(name: str, folder: str | Path = RESULTS_DIR) -> dict[str, dict]:
    """Data set name -> entry, as stored for the shipped detector `name`."""
    path = Path(folder) / f"{name}.json"
    if not path.is_file():
        stored = sorted(p.stem for p in Path(folder).glob("*.json"))
        raise DataError(f"{path}: no stored results for detector {name!r}; stored: {', '.join(stored) or 'none'}")
    return json.loads(path.read_text())
