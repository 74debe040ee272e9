"""Face / not-face crops for the classifier rung, cut from any detection dataset.

The classifier (facedet.models.classifier) answers "is this 128 x 128 crop a face?", so
its data is crops, not whole images:

    positives   every face box big enough (side >= min_face_size), cut as a square around
                the box centre and resized to 128 x 128. `framing` decides how much of the
                head the square holds (the seed's framing experiment):
                    "tight"  side = the box's longer side (the face itself)
                    "large"  side = large_factor x that (hair, chin, some background)
                    "both"   one crop of each: the seed's cure for framing sensitivity
    negatives   random squares from the same photos whose IoU with EVERY face is < max_iou,
                plus random squares from face-free photos (data.nonfaces) when given.
                IoU < 0.3 also admits a small square inside a large face (an eye, a cheek):
                a negative on purpose, since the classifier should answer for whole faces
                framed like its positives, not for their parts.

Crops are square because the sliding-window detector (rung 2) scans square windows: train
on what you will see. Parts of a square outside the photo are filled with the dataset mean
colour, which after normalisation is 0, the same value the sliding window pads with.

Cutting thousands of crops takes minutes, so the crops are made once and cached as one
uint8 tensor file whose name is a hash of every parameter and every record (path and boxes):
change anything and a new file is made. The sampling uses one seeded generator, so the
same parameters always give the same crops.
"""
from __future__ import annotations

import hashlib
import json
import math
import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset
from tqdm import tqdm

from facedet.boxes import box_iou
from facedet.files import atomic_save
from facedet.data.images import is_image, load_image
from facedet.data.record import Record
from facedet.data.synthetic import cache_dir
from facedet.errors import ConfigError, DataError
from facedet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, resize_image

# Crop kinds, stored as int8 codes in the cache.
KINDS = ("background", "nonface", "tight", "large")
FRAMINGS = ("tight", "large", "both")
CACHE_VERSION = 1  # bump when the way crops are cut changes


# --------------------------------------------------------------------------- geometry


def square_boxes(boxes: Tensor, factor: float = 1.0) -> Tensor:
    """Squares centred on each box, side = factor x the box's longer side.

    boxes: (N, 4) "xyxy" pixels -> (N, 4) "xyxy" pixels, rounded to whole pixels.
    Example: [10, 20, 30, 60] (20 wide, 40 tall), factor 1.5 -> side 60 -> [-10, 10, 50, 70].
    """
    centres = (boxes[:, :2] + boxes[:, 2:]) / 2                          # (N, 2)
    side = (boxes[:, 2:] - boxes[:, :2]).amax(dim=1, keepdim=True) * factor  # (N, 1)
    top_left = torch.round(centres - side / 2)
    return torch.cat([top_left, top_left + torch.round(side)], dim=1)


def sample_negative_boxes(
    faces: Tensor,
    width: int,
    height: int,
    count: int,
    generator: torch.Generator,
    min_side: int = 24,
    max_iou: float = 0.3,
    max_rounds: int = 20,
) -> Tensor:
    """Up to `count` random squares inside the image, each with IoU < max_iou to every face.

    faces: (N, 4) "xyxy" pixels (N may be 0). Returns (K, 4) "xyxy" whole pixels, K <= count
    (fewer only when faces cover the photo so much that `max_rounds` rounds find too few).

    Rejection sampling, vectorised: each round draws 4 x count candidates at once, sides
    log-uniform in [min_side, shorter image side] (as many small windows as large ones,
    like the sliding window's scales), scores them all against all faces with one
    box_iou call, and keeps the ones under max_iou.
    """
    short = min(width, height)
    if count <= 0 or short < min_side:
        return torch.zeros(0, 4)
    kept: list[Tensor] = []
    n_kept = 0
    for _ in range(max_rounds):
        n = 4 * count
        log_side = torch.empty(n).uniform_(math.log(min_side), math.log(short), generator=generator)
        side = torch.round(log_side.exp()).clamp(min_side, short)                     # (n,)
        x1 = torch.floor(torch.rand(n, generator=generator) * (width - side + 1))
        y1 = torch.floor(torch.rand(n, generator=generator) * (height - side + 1))
        candidates = torch.stack([x1, y1, x1 + side, y1 + side], dim=1)              # (n, 4)
        if len(faces):
            candidates = candidates[box_iou(candidates, faces.float()).amax(dim=1) < max_iou]
        kept.append(candidates)
        n_kept += len(candidates)
        if n_kept >= count:
            break
    return torch.cat(kept)[:count]


def crop_and_resize(image: Tensor, boxes: Tensor, size: int, fill: Tensor) -> Tensor:
    """Cut each box out of the image and resize it to size x size.

    image: (3, H, W) uint8; boxes: (K, 4) "xyxy" whole pixels, may extend past the image
    (that part is filled with `fill`, (3,) uint8). Returns (K, 3, size, size) uint8.

    A loop over boxes: every crop has its own size, and each goes through
    facedet.data.transforms.resize_image (the sliding window resizes its image pyramid with it).
    This runs once per dataset; the result is cached.
    """
    _, height, width = image.shape
    crops = torch.empty(len(boxes), 3, size, size, dtype=torch.uint8)
    for k, (x1, y1, x2, y2) in enumerate(boxes.long().tolist()):
        canvas = fill.view(3, 1, 1).expand(3, y2 - y1, x2 - x1).clone()
        ix1, iy1, ix2, iy2 = max(x1, 0), max(y1, 0), min(x2, width), min(y2, height)
        if ix2 > ix1 and iy2 > iy1:
            canvas[:, iy1 - y1 : iy2 - y1, ix1 - x1 : ix2 - x1] = image[:, iy1:iy2, ix1:ix2]
        crops[k] = resize_image(canvas.float(), (size, size)).round().clamp(0, 255).to(torch.uint8)
    return crops


def load_image_tensor(path: str | os.PathLike) -> Tensor:
    """An image file -> (3, H, W) uint8, upright RGB."""
    return torch.from_numpy(np.array(load_image(path))).permute(2, 0, 1)


def list_images(folder: str | os.PathLike) -> list[Path]:
    """Image files directly inside `folder`, sorted by name."""
    folder = Path(folder)
    if not folder.is_dir():
        raise DataError(f"{folder}: face-free image folder not found")
    return sorted(p for p in folder.iterdir() if is_image(p))


# --------------------------------------------------------------------------- building the crops


def make_crops(
    records: Sequence[Record],
    nonface_paths: Sequence[str | os.PathLike] = (),
    framing: str = "tight",
    large_factor: float = 1.6,
    neg_ratio: float = 1.0,
    nonface_fraction: float = 0.5,
    min_face_size: int = 24,
    max_iou: float = 0.3,
    size: int = 128,
    seed: int = 0,
    fill: Sequence[float] = IMAGENET_MEAN,
    progress: bool = False,
) -> dict[str, Any]:
    """Cut every positive and negative crop. Arguments: see FaceCropDataset.

    Returns {"images": (N, 3, size, size) uint8, "labels": (N,) float32 0./1.,
             "kinds": (N,) int8 index into KINDS, "sources": (N,) int64 index into "paths",
             "boxes": (N, 4) float32 "xyxy" pixels of each crop in its source image,
             "paths": list[str] (the records' images, then the face-free images)}.
    """
    if framing not in FRAMINGS:
        raise ConfigError(f"framing '{framing}': expected one of {', '.join(FRAMINGS)}")
    generator = torch.Generator().manual_seed(seed)
    fill_u8 = torch.tensor([round(255 * v) for v in fill], dtype=torch.uint8)
    factors = {"tight": [("tight", 1.0)], "large": [("large", large_factor)],
               "both": [("tight", 1.0), ("large", large_factor)]}[framing]

    # Count positives from the annotations alone, so negatives can be shared out
    # before any pixel is decoded.
    def big_enough(boxes: Tensor) -> Tensor:
        return (boxes[:, 2:] - boxes[:, :2]).amin(dim=1) >= min_face_size if len(boxes) else torch.zeros(0, dtype=torch.bool)

    n_faces = sum(int(big_enough(r.boxes).sum()) for r in records)
    n_negatives = round(neg_ratio * n_faces * len(factors))
    n_nonface = round(n_negatives * nonface_fraction) if nonface_paths else 0
    n_background = n_negatives - n_nonface

    # Each negative goes to a random photo: (len(records),) and (len(nonface_paths),) counts.
    def share(n: int, n_images: int) -> list[int]:
        if n_images == 0:
            return []
        owners = torch.randint(n_images, (n,), generator=generator)
        return torch.bincount(owners, minlength=n_images).tolist()

    background_counts = share(n_background, len(records))
    nonface_counts = share(n_nonface, len(nonface_paths))

    paths = [str(r.image_path) for r in records] + [str(p) for p in nonface_paths]
    images, labels, kinds, sources, boxes_out = [], [], [], [], []

    def add(crop_boxes: Tensor, kind: str, label: float, source: int, image: Tensor) -> None:
        if len(crop_boxes) == 0:
            return
        images.append(crop_and_resize(image, crop_boxes, size, fill_u8))
        labels.append(torch.full((len(crop_boxes),), label))
        kinds.append(torch.full((len(crop_boxes),), KINDS.index(kind), dtype=torch.int8))
        sources.append(torch.full((len(crop_boxes),), source, dtype=torch.int64))
        boxes_out.append(crop_boxes.float())

    jobs = [(i, r.image_path, r) for i, r in enumerate(records)]
    jobs += [(len(records) + j, p, None) for j, p in enumerate(nonface_paths)]
    for source, path, record in tqdm(jobs, desc="cutting crops", disable=None if progress else True, mininterval=1.0):
        if record is not None:
            faces = record.boxes.float()
            positives = faces[big_enough(faces)]
            count = background_counts[source]
            # sample on the annotated size, before decoding, so the RNG stream does not
            # depend on whether an image is skipped
            negatives = sample_negative_boxes(faces, record.width, record.height, count, generator,
                                              min_side=min_face_size, max_iou=max_iou)
            if len(positives) == 0 and len(negatives) == 0:
                continue
            image = load_image_tensor(path)
            if (image.shape[2], image.shape[1]) != (record.width, record.height):
                raise DataError(f"{path}: image is {image.shape[2]}x{image.shape[1]}, "
                                f"annotation says {record.width}x{record.height}")
            for kind, factor in factors:
                add(square_boxes(positives, factor), kind, 1.0, source, image)
            add(negatives, "background", 0.0, source, image)
        else:
            count = nonface_counts[source - len(records)]
            if count == 0:
                continue
            image = load_image_tensor(path)
            negatives = sample_negative_boxes(torch.zeros(0, 4), image.shape[2], image.shape[1], count,
                                              generator, min_side=min_face_size)
            add(negatives, "nonface", 0.0, source, image)

    if not images:
        return {"images": torch.zeros(0, 3, size, size, dtype=torch.uint8), "labels": torch.zeros(0),
                "kinds": torch.zeros(0, dtype=torch.int8), "sources": torch.zeros(0, dtype=torch.int64),
                "boxes": torch.zeros(0, 4), "paths": paths}
    return {"images": torch.cat(images), "labels": torch.cat(labels), "kinds": torch.cat(kinds),
            "sources": torch.cat(sources), "boxes": torch.cat(boxes_out), "paths": paths}


def crops_key(records: Sequence[Record], nonface_paths: Sequence[str | os.PathLike], params: dict[str, Any]) -> str:
    """A hex digest of the parameters and of every record (path and boxes) and face-free path."""
    digest = hashlib.sha256()
    digest.update(json.dumps({"version": CACHE_VERSION, **params}, sort_keys=True).encode())
    for record in records:
        digest.update(f"{record.image_path}|{record.width}x{record.height}|".encode())
        digest.update(record.boxes.float().contiguous().numpy().tobytes())
    for path in nonface_paths:
        digest.update(f"nonface|{path}".encode())
    return digest.hexdigest()[:20]


# --------------------------------------------------------------------------- the dataset


class FaceCropDataset(Dataset):
    """Face / not-face crops: items `(image, target)`.

    image:  (3, size, size) float32, normalised with mean/std
    target: {"label": tensor(1.) face or tensor(0.) not a face,
             "kind": "tight" | "large" | "background" | "nonface",
             "box": (4,) float32 "xyxy" pixels of the crop in its source image,
             "path": str, the source image}

    Args:
        records: any detection dataset (facedet.data.readers); every box is taken as a face.
        nonface_paths: photos without faces (e.g. /work/shared/data/nonfaces/*.jpg).
        framing: "tight", "large" or "both" (see the module docstring).
        large_factor: square side / box side for "large" framing (1.6 keeps hair and chin).
        neg_ratio: negatives per positive crop.
        nonface_fraction: share of the negatives taken from nonface_paths (when given).
        min_face_size: faces with a shorter side (pixels) are skipped; also the smallest
            negative square.
        max_iou: a negative overlaps every face with IoU below this.
        size: crop side in pixels (the classifier's input, 128).
        seed: seeds all sampling; same arguments -> same crops.
        cache_dir: where the uint8 crops are stored (None: keep in memory only).
        mean, std: normalisation (the classifier Detector's mean and std).
        flip: mirror crops left-right at random (training augmentation).
    """

    def __init__(
        self,
        records: Sequence[Record],
        nonface_paths: Sequence[str | os.PathLike] = (),
        framing: str = "tight",
        large_factor: float = 1.6,
        neg_ratio: float = 1.0,
        nonface_fraction: float = 0.5,
        min_face_size: int = 24,
        max_iou: float = 0.3,
        size: int = 128,
        seed: int = 0,
        cache_dir: str | os.PathLike | None = None,
        mean: Sequence[float] = IMAGENET_MEAN,
        std: Sequence[float] = IMAGENET_STD,
        flip: bool = False,
        progress: bool = False,
    ) -> None:
        params = dict(framing=framing, large_factor=large_factor, neg_ratio=neg_ratio,
                      nonface_fraction=nonface_fraction, min_face_size=min_face_size, max_iou=max_iou,
                      size=size, seed=seed, fill=list(mean))
        self.cache_path: Path | None = None
        if cache_dir is not None:
            self.cache_path = Path(cache_dir) / f"crops-{crops_key(records, nonface_paths, params)}.pt"
        if self.cache_path is not None and self.cache_path.is_file():
            state = torch.load(self.cache_path, map_location="cpu", weights_only=True)
        else:
            state = make_crops(records, nonface_paths, progress=progress, **params)
            if self.cache_path is not None:
                atomic_save(state, self.cache_path)
        self.images: Tensor = state["images"]    # (N, 3, size, size) uint8
        self.labels: Tensor = state["labels"]    # (N,) float32
        self.kinds: Tensor = state["kinds"]      # (N,) int8, index into KINDS
        self.sources: Tensor = state["sources"]  # (N,) int64, index into self.paths
        self.boxes: Tensor = state["boxes"]      # (N, 4) "xyxy" pixels in the source image
        self.paths: list[str] = state["paths"]
        self.mean = torch.tensor(mean, dtype=torch.float32).view(3, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(3, 1, 1)
        self.flip = flip

    def __len__(self) -> int:
        return len(self.labels)

    def __getitem__(self, index: int) -> tuple[Tensor, dict[str, Any]]:
        image = self.images[index].float() / 255
        if self.flip and torch.rand(()) < 0.5:  # global RNG: seeded per DataLoader worker
            image = image.flip(-1)
        image = (image - self.mean) / self.std
        target = {"label": self.labels[index].clone(), "kind": KINDS[int(self.kinds[index])],
                  "box": self.boxes[index].clone(), "path": self.paths[int(self.sources[index])]}
        return image, target

    def counts(self) -> dict[str, int]:
        """How many crops of each kind: {"tight": ..., "large": ..., "background": ..., "nonface": ...}."""
        return {kind: int((self.kinds == k).sum()) for k, kind in enumerate(KINDS)}


# --------------------------------------------------------------------------- from a config


def default_cache_dir() -> Path:
    """facedet's cache folder ($FACEDET_CACHE, else ~/.cache/facedet) / "crops"."""
    return cache_dir() / "crops"


def build_crop_datasets(cfg: Any, train_records: Sequence[Record], val_records: Sequence[Record],
                        mean: Sequence[float], std: Sequence[float]) -> tuple[FaceCropDataset, FaceCropDataset, list[str]]:
    """Train and validation crop datasets for the classifier rung, from a facedet Config and the
    detection records of both splits.

    Reads cfg.data (nonfaces and, when present, framing, large_factor, neg_ratio,
    min_face_size, cache_dir), cfg.model.image_size and cfg.train.seed.
    The face-free photos are split by name: every 5th goes to validation.
    Returns (train, val, ["not face", "face"]).
    """
    data = cfg.data
    nonfaces = list_images(os.path.expandvars(os.path.expanduser(data.nonfaces))) if data.nonfaces else []
    cache_dir = getattr(data, "cache_dir", "") or default_cache_dir()
    common = dict(framing=getattr(data, "framing", "tight"), large_factor=getattr(data, "large_factor", 1.6),
                  neg_ratio=getattr(data, "neg_ratio", 1.0), min_face_size=getattr(data, "min_face_size", 24),
                  size=cfg.model.image_size, cache_dir=cache_dir, mean=mean, std=std,
                  progress=True)
    seed = getattr(cfg.train, "seed", 0)
    train = FaceCropDataset(train_records, [p for i, p in enumerate(nonfaces) if i % 5], seed=seed,
                            flip=getattr(data, "augment", "flip") != "none", **common)
    val = FaceCropDataset(val_records, nonfaces[::5], seed=seed + 1, **common)
    return train, val, ["not face", "face"]
