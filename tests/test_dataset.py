"""Tests for facedet.data.dataset: targets follow the contract, batches of uneven box counts."""

import numpy as np
import pytest
import torch
from PIL import Image
from torch.utils.data import DataLoader

from facedet.data.dataset import (
    DetectionDataset,
    collate,
    image_to_tensor,
    tensor_to_image,
)
from facedet.data.record import Record
from facedet.data.transforms import eval_transforms, train_transforms
from facedet.errors import DataError

ZERO, ONE = (0.0, 0.0, 0.0), (1.0, 1.0, 1.0)


def write_image(path, width, height, value=128):
    Image.new("RGB", (width, height), (value, value, value)).save(path)
    return path


def record(path, width, height, boxes, labels=None, difficult=None):
    boxes = torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4)
    n = len(boxes)
    return Record(
        image_path=path, width=width, height=height, boxes=boxes,
        labels=torch.tensor(labels if labels is not None else [0] * n, dtype=torch.int64),
        difficult=torch.tensor(difficult if difficult is not None else [False] * n, dtype=torch.bool),
    )


@pytest.fixture
def records(tmp_path):
    """Three images of different sizes holding 0, 1 and 3 boxes."""
    return [
        record(write_image(tmp_path / "a.png", 40, 20), 40, 20, []),
        record(write_image(tmp_path / "b.png", 50, 100), 50, 100, [[5, 10, 25, 50]], [0], [True]),
        record(write_image(tmp_path / "c.jpg", 80, 60), 80, 60,
               [[0, 0, 40, 30], [40, 30, 80, 60], [10, 15, 20, 45]], [0, 2, 1], [False, True, False]),
    ]


def test_item_follows_the_contract(records):
    dataset = DetectionDataset(records, eval_transforms(32, ZERO, ONE))
    assert len(dataset) == 3
    image, target = dataset[2]
    assert image.shape == (3, 32, 32) and image.dtype == torch.float32
    assert torch.allclose(image, torch.full_like(image, 128 / 255), atol=2 / 255)  # mean 0, std 1
    expected = torch.tensor([[0, 0, 0.5, 0.5], [0.5, 0.5, 1, 1], [0.125, 0.25, 0.25, 0.75]])
    assert torch.allclose(target["boxes"], expected)
    assert target["labels"].tolist() == [0, 2, 1] and target["labels"].dtype == torch.int64
    assert target["difficult"].tolist() == [False, True, False] and target["difficult"].dtype == torch.bool
    assert target["image_id"] == 2
    assert target["orig_size"].tolist() == [60, 80] and target["orig_size"].dtype == torch.int64
    assert target["path"] == str(records[2].image_path)


def test_records_are_not_modified(records):
    before = records[2].boxes.clone()
    dataset = DetectionDataset(records, train_transforms(32, ZERO, ONE, "ssd", generator=torch.Generator().manual_seed(0)))
    for _ in range(5):
        dataset[2]
    assert torch.equal(records[2].boxes, before)


def test_without_transform_boxes_become_fractional(records):
    image, target = DetectionDataset(records)[1]
    assert image.shape == (3, 100, 50)
    assert torch.allclose(target["boxes"], torch.tensor([[0.1, 0.1, 0.5, 0.5]]))


def test_collate_batches_uneven_box_counts(records):
    dataset = DetectionDataset(records, train_transforms(24, ZERO, ONE, "flip"))
    images, targets = next(iter(DataLoader(dataset, batch_size=3, collate_fn=collate)))
    assert images.shape == (3, 3, 24, 24)
    assert [len(t["boxes"]) for t in targets] == [0, 1, 3]
    assert [t["image_id"] for t in targets] == [0, 1, 2]
    assert targets[0]["boxes"].shape == (0, 4)


def test_collate_refuses_mixed_sizes(records):
    dataset = DetectionDataset(records)  # no Resize
    with pytest.raises(DataError, match="share one size"):
        collate([dataset[0], dataset[1]])


def test_bad_image_raises_or_is_skipped(records, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg")
    bad = [records[0], record(broken, 10, 10, [[1, 1, 5, 5]]), records[2]]
    with pytest.raises(DataError, match="broken.jpg"):
        DetectionDataset(bad, eval_transforms(16, ZERO, ONE))[1]
    dataset = DetectionDataset(bad, eval_transforms(16, ZERO, ONE), skip_bad_images=True)
    with pytest.warns(UserWarning, match="broken.jpg"):
        _, target = dataset[1]
    assert target["image_id"] == 2 and target["path"] == str(records[2].image_path)


def test_size_mismatch_is_a_data_error(records):
    wrong = record(records[1].image_path, 100, 50, [[1, 1, 5, 5]])  # sides swapped
    with pytest.raises(DataError, match="50x100 but its record says 100x50"):
        DetectionDataset([wrong])[0]


def test_image_tensor_round_trip():
    pixels = np.random.default_rng(0).integers(0, 256, (5, 7, 3), dtype=np.uint8)
    tensor = image_to_tensor(Image.fromarray(pixels))
    assert tensor.shape == (3, 5, 7) and tensor.min() >= 0 and tensor.max() <= 1
    assert np.array_equal(np.asarray(tensor_to_image(tensor)), pixels)
    mean, std = (0.5, 0.4, 0.3), (0.2, 0.25, 0.3)
    normalised = (tensor - torch.tensor(mean).reshape(3, 1, 1)) / torch.tensor(std).reshape(3, 1, 1)
    assert np.array_equal(np.asarray(tensor_to_image(normalised, mean, std)), pixels)


def test_on_the_synthetic_set(tmp_path):
    readers = pytest.importorskip("facedet.data.readers")
    from facedet.data.synthetic import ensure_synthetic

    root = ensure_synthetic(tmp_path / "set", n_train=6, n_val=1, size=64)
    dataset = DetectionDataset(readers.read_yolo(root, "train"), train_transforms(48, ZERO, ONE, "ssd"))
    images, targets = collate([dataset[i] for i in range(len(dataset))])
    assert images.shape == (6, 3, 48, 48)
    for t in targets:
        assert t["boxes"].shape[1] == 4 and (t["boxes"] >= 0).all() and (t["boxes"] <= 1).all()
