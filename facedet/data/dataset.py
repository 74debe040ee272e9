"""From records to (image, target) pairs, and from pairs to batches.

    dataset = DetectionDataset(read_yolo(root, "train"), train_transforms(300, mean, std, "ssd"))
    loader = DataLoader(dataset, batch_size=8, shuffle=True, collate_fn=collate)
    images, targets = next(iter(loader))    # (8, 3, 300, 300), list of 8 dicts

Each target holds
    "boxes"      (N, 4) float32 "xyxy", FRACTIONAL in [0, 1] of the network input
    "labels"     (N,) int64, 0-based classes
    "difficult"  (N,) bool
    "image_id"   int, the index in the dataset
    "orig_size"  (2,) int64 (h, w) of the image on disk (upright)
    "path"       str
Images in a batch share one size; boxes do not share one count, so targets stay a list.
"""
from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import torch
from PIL import Image
from torch import Tensor
from torch.utils.data import Dataset

from facedet.data.images import load_image
from facedet.data.labels import DataWarning
from facedet.data.record import Record
from facedet.data.transforms import ToFractional
from facedet.errors import DataError


def image_to_tensor(image: Image.Image) -> Tensor:
    """PIL RGB image -> float32 tensor (3, H, W) with values in [0, 1].

    Channels are moved first while the pixels are still bytes, and only then turned
    into floats in place: a quarter of the memory traffic of converting first (an
    8000 x 8000 photo takes about 1 s instead of 7), with the same values.
    """
    rgb = image if image.mode == "RGB" else image.convert("RGB")
    pixels = torch.from_numpy(np.array(rgb))  # (H, W, 3) uint8, a writable copy
    return pixels.permute(2, 0, 1).contiguous().float().div_(255.0)


def tensor_to_image(image: Tensor, mean: Sequence[float] | None = None, std: Sequence[float] | None = None) -> Image.Image:
    """float tensor (3, H, W) -> PIL RGB image; pass mean and std to undo `Normalize` first."""
    image = image.detach().float().cpu()
    if mean is not None and std is not None:
        image = image * torch.tensor(std).reshape(3, 1, 1) + torch.tensor(mean).reshape(3, 1, 1)
    pixels = (image.clamp(0, 1) * 255 + 0.5).to(torch.uint8).permute(1, 2, 0).numpy()
    return Image.fromarray(pixels)


class DetectionDataset(Dataset):
    """Images and their boxes, decoded on demand and passed through `transform`.

    records:         from a reader (facedet.data.readers); boxes "xyxy" in pixels
    transform:       callable (image, target) -> (image, target), e.g. train_transforms(...);
                     it must end with ToFractional (the builders do). None = ToFractional only,
                     so images keep their own sizes (fine one by one, not for batching).
    skip_bad_images: an unreadable image (or one whose size disagrees with its record) is
                     replaced by the next good one, with a warning, instead of raising DataError.
    """

    def __init__(self, records: Sequence[Record], transform: Callable | None = None, skip_bad_images: bool = False):
        self.records = list(records)
        self.transform = transform if transform is not None else ToFractional()
        self.skip_bad_images = skip_bad_images
        self._bad: set[int] = set()  # indices already reported, so each is warned about once

    def __len__(self) -> int:
        return len(self.records)

    def _load(self, index: int) -> Tensor:
        """The record's image as (3, H, W) in [0, 1], checked against the record's size."""
        record = self.records[index]
        image = load_image(record.image_path)
        if image.size != (record.width, record.height):
            raise DataError(
                f"{record.image_path}: image is {image.size[0]}x{image.size[1]} but its record says "
                f"{record.width}x{record.height}; the labels would not match the pixels"
            )
        return image_to_tensor(image)

    def __getitem__(self, index: int) -> tuple[Tensor, dict]:
        for attempt in range(len(self.records)):
            i = (index + attempt) % len(self.records)
            try:
                image = self._load(i)
                break
            except DataError as error:
                if not self.skip_bad_images:
                    raise
                if i not in self._bad:
                    self._bad.add(i)
                    warnings.warn(f"skipping {error}", DataWarning, stacklevel=2)
        else:
            raise DataError(f"no readable image among the {len(self.records)} records")
        record = self.records[i]
        target = {
            "boxes": record.boxes.float().clone().reshape(-1, 4),
            "labels": record.labels.long().clone(),
            "difficult": record.difficult.bool().clone(),
        }
        image, target = self.transform(image, target)
        target["image_id"] = i
        target["orig_size"] = torch.tensor([record.height, record.width], dtype=torch.int64)
        target["path"] = str(record.image_path)
        return image, target


def collate_photos(batch: Sequence[tuple[Tensor, dict]]) -> tuple[list[Tensor], list[dict]]:
    """[(image (3, H_i, W_i), target), ...] -> ([images], [targets]): photos of any sizes, for
    a Detector to resize as its rung needs (evaluation and inference)."""
    return [image for image, _ in batch], [target for _, target in batch]


def collate(batch: Sequence[tuple[Tensor, dict]]) -> tuple[Tensor, list[dict]]:
    """[(image (3, H, W), target), ...] -> (images (B, 3, H, W), [target, ...]).

    Box counts differ between images, so targets stay a list of dicts.
    """
    images = [image for image, _ in batch]
    sizes = {tuple(image.shape) for image in images}
    if len(sizes) > 1:
        raise DataError(
            f"images in a batch must share one size, got {sorted(sizes)}; add Resize to the dataset's transform"
        )
    return torch.stack(images), [target for _, target in batch]
