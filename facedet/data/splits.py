"""Splits: the names a split goes by on disk, and holding out validation images.

Annotation tools name their splits differently: Roboflow writes `train/ valid/ test/`,
ultralytics `images/train images/val`, some people `Training/ Validation/`. facedet asks
for `data.train_split` ("train") and `data.val_split` ("val"); `match_split` finds the
folder, file or data.yaml key that answers to each:

    match_split("val", ["train", "valid", "test"])   -> "valid"
    match_split("val", ["train", "test"])            -> None   (no validation split)

A data set with no validation split (LabelImg's `train/ test/`, one folder of labelled
photos) still needs one: `hold_out` sets aside a fixed share of its training images.
"""
from __future__ import annotations

import hashlib
import os
from collections.abc import Sequence
from pathlib import Path

from facedet.data.record import Record
from facedet.errors import DataError

# Each group is one split under its usual spellings; the first is facedet's own name.
SPLIT_ALIASES = (
    ("train", "training"),
    ("val", "valid", "validation"),  # Roboflow writes "valid"
    ("test", "testing"),
)


def match_split(split: str, available: Sequence[str]) -> str | None:
    """The name in `available` that stands for `split`, or None.

    The split itself first, then its aliases, all compared without regard to case
    ("Train/" answers to "train"). Names outside the alias groups ("2007", "trainval")
    match only themselves.
    """
    by_lower = {name.lower(): name for name in available}
    group = next((g for g in SPLIT_ALIASES if split.lower() in g), ())
    for name in (split.lower(), *group):
        if name in by_lower:
            return by_lower[name]
    return None


def hold_out(records: list[Record], root: Path, fraction: float) -> tuple[list[Record], list[Record]]:
    """Split `records` into (train, val): a `fraction` of them, at least one, for validation.

    Which images are held out depends only on their file names, never on a seed, the
    order files are listed in, or the machine: each image's path relative to `root` is
    hashed (SHA-1) and the `n_val` smallest hashes go to validation. The same folder
    therefore gives the same validation set in every run, whatever `train.seed` is (runs
    with different seeds stay comparable), and adding photos moves few of the old ones.

    n_val = round(fraction * M), kept within 1 .. M - 1 so that neither part is empty.
    Both parts keep the records' own order; they are disjoint and together are `records`.
    """
    count = len(records)
    if count < 2:
        raise DataError(f"{root}: {count} image(s) and no validation split: too few to hold out validation images")
    n_val = min(max(round(fraction * count), 1), count - 1)

    def key(record: Record) -> str:
        name = Path(os.path.relpath(record.image_path, root)).as_posix()
        return hashlib.sha1(name.encode("utf-8")).hexdigest()

    held = set(sorted(range(count), key=lambda i: (key(records[i]), i))[:n_val])
    train = [r for i, r in enumerate(records) if i not in held]
    val = [r for i, r in enumerate(records) if i in held]
    return train, val
