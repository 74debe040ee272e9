"""Face / not-face crops for the classifier: sampling invariants, framing, determinism, cache."""
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

import facedet.data.crops as crops_module
from facedet.data.crops import (
    FaceCropDataset,
    crop_and_resize,
    sample_negative_boxes,
    square_boxes,
)
from facedet.data.record import Record
from facedet.errors import ConfigError

from conftest import iou_oracle


def make_record(folder: Path, name: str, size: tuple[int, int], faces: list[list[float]]) -> Record:
    """A noise photo with each face painted as a solid red box."""
    width, height = size
    rng = np.random.default_rng(abs(hash(name)) % 2**32)
    pixels = rng.integers(0, 100, (height, width, 3), dtype=np.uint8)  # dark noise, never pure red
    for x1, y1, x2, y2 in faces:
        pixels[int(y1) : int(y2), int(x1) : int(x2)] = (255, 0, 0)
    path = folder / f"{name}.png"
    Image.fromarray(pixels).save(path)
    boxes = torch.tensor(faces, dtype=torch.float32).reshape(-1, 4)
    return Record(image_path=path, width=width, height=height, boxes=boxes,
                  labels=torch.zeros(len(boxes), dtype=torch.int64),
                  difficult=torch.zeros(len(boxes), dtype=torch.bool))


@pytest.fixture(scope="module")
def records(tmp_path_factory) -> list[Record]:
    folder = tmp_path_factory.mktemp("photos")
    return [
        make_record(folder, "two", (200, 160), [[20, 30, 80, 100], [120, 40, 170, 90]]),
        make_record(folder, "one_and_tiny", (180, 180), [[60, 50, 120, 120], [5, 5, 15, 15]]),  # 10-px face: skipped
        make_record(folder, "none", (150, 120), []),
    ]


@pytest.fixture(scope="module")
def nonface_paths(tmp_path_factory) -> list[Path]:
    folder = tmp_path_factory.mktemp("nonfaces")
    paths = []
    for i in range(3):
        path = folder / f"n{i}.jpg"
        Image.fromarray(np.full((100 + 10 * i, 140, 3), 40 * i, dtype=np.uint8)).save(path)
        paths.append(path)
    return paths


def test_square_boxes_hand_example():
    boxes = torch.tensor([[10.0, 20.0, 30.0, 60.0]])  # 20 wide, 40 tall, centre (20, 40)
    assert square_boxes(boxes).tolist() == [[0.0, 20.0, 40.0, 60.0]]
    assert square_boxes(boxes, 1.5).tolist() == [[-10.0, 10.0, 50.0, 70.0]]


def test_negative_boxes_avoid_every_face():
    faces = torch.tensor([[20.0, 30.0, 80.0, 100.0], [120.0, 40.0, 170.0, 90.0], [0.0, 0.0, 30.0, 30.0]])
    boxes = sample_negative_boxes(faces, 200, 160, 200, torch.Generator().manual_seed(1), min_side=24)
    assert len(boxes) == 200
    sides = boxes[:, 2:] - boxes[:, :2]
    assert (sides[:, 0] == sides[:, 1]).all() and (sides >= 24).all() and (sides <= 160).all()
    assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 200).all() and (boxes[:, 3] <= 160).all()
    for box in boxes.tolist():
        for face in faces.tolist():
            assert iou_oracle(box, face) < 0.3


def test_negative_boxes_edge_cases():
    generator = torch.Generator().manual_seed(0)
    assert sample_negative_boxes(torch.zeros(0, 4), 100, 100, 0, generator).shape == (0, 4)
    assert sample_negative_boxes(torch.zeros(0, 4), 20, 100, 5, generator, min_side=24).shape == (0, 4)  # too narrow
    # one face filling the image: only squares of side < sqrt(0.3) * 100 = 54.8 qualify
    face = torch.tensor([[0.0, 0.0, 100.0, 100.0]])
    small = sample_negative_boxes(face, 100, 100, 50, generator, min_side=24)
    assert len(small) == 50 and ((small[:, 2] - small[:, 0]) <= 54).all()
    # ...and with min_side 60 none does: the sampler gives up after max_rounds
    assert sample_negative_boxes(face, 100, 100, 50, generator, min_side=60, max_rounds=3).shape == (0, 4)


def test_crop_and_resize_fills_outside_with_the_given_colour():
    image = torch.full((3, 10, 10), 200, dtype=torch.uint8)
    fill = torch.tensor([1, 2, 3], dtype=torch.uint8)
    # a 20 x 20 square whose left and bottom halves lie outside; size 20 = no resampling
    out = crop_and_resize(image, torch.tensor([[-10.0, 0.0, 10.0, 20.0]]), 20, fill)
    assert out.shape == (1, 3, 20, 20) and out.dtype == torch.uint8
    assert (out[0, :, :10, 10:] == 200).all()                                 # inside: the image
    assert (out[0, :, :, :10] == fill.view(3, 1, 1)).all()                    # outside: the fill
    assert (out[0, :, 10:, :] == fill.view(3, 1, 1)).all()
    assert crop_and_resize(image, torch.tensor([[0.0, 0.0, 10.0, 10.0]]), 4, fill).shape == (1, 3, 4, 4)


def test_positives_follow_the_framing_and_skip_tiny_faces(records):
    tight = FaceCropDataset(records, framing="tight", neg_ratio=1.0, min_face_size=24)
    large = FaceCropDataset(records, framing="large", large_factor=1.6, neg_ratio=1.0, min_face_size=24)
    both = FaceCropDataset(records, framing="both", neg_ratio=1.0, min_face_size=24)
    faces = [[20, 30, 80, 100], [120, 40, 170, 90], [60, 50, 120, 120]]  # the 10-px face is skipped
    assert tight.counts()["tight"] == 3 and large.counts()["large"] == 3
    assert both.counts()["tight"] == 3 and both.counts()["large"] == 3
    tight_boxes = tight.boxes[tight.labels == 1]
    large_boxes = large.boxes[large.labels == 1]
    for face, t, g in zip(faces, tight_boxes.tolist(), large_boxes.tolist()):
        side = max(face[2] - face[0], face[3] - face[1])
        centre = ((face[0] + face[2]) / 2, (face[1] + face[3]) / 2)
        assert t[2] - t[0] == t[3] - t[1] == side
        assert abs(g[2] - g[0] - 1.6 * side) <= 1 and abs(g[3] - g[1] - 1.6 * side) <= 1
        for box in (t, g):
            assert abs((box[0] + box[2]) / 2 - centre[0]) <= 1 and abs((box[1] + box[3]) / 2 - centre[1]) <= 1
    # a tight crop of a red face is mostly red; the large crop has less red in it
    red = lambda ds: (ds.images[ds.labels == 1][:, 0].float().mean() - ds.images[ds.labels == 1][:, 1].float().mean())
    assert red(tight) > red(large) > 0


def test_negatives_have_low_iou_with_every_face_and_follow_the_ratio(records, nonface_paths):
    ds = FaceCropDataset(records, nonface_paths, framing="tight", neg_ratio=3.0, nonface_fraction=1 / 3)
    counts = ds.counts()
    assert counts["tight"] == 3
    assert counts["background"] + counts["nonface"] == 9  # 3 negatives per positive
    assert counts["nonface"] == 3
    for box, kind, source in zip(ds.boxes.tolist(), ds.kinds.tolist(), ds.sources.tolist()):
        if crops_module.KINDS[kind] == "background":
            for face in records[source].boxes.tolist():  # the tiny face counts too
                assert iou_oracle(box, face) < 0.3
    assert set(ds.paths[s] for s in ds.sources[ds.kinds == 1].tolist()) <= {str(p) for p in nonface_paths}


def test_items_are_normalised_crops_with_labels(records):
    ds = FaceCropDataset(records, neg_ratio=1.0, mean=(0.5, 0.5, 0.5), std=(0.25, 0.25, 0.25))
    image, target = ds[0]
    assert image.shape == (3, 128, 128) and image.dtype == torch.float32
    torch.testing.assert_close(image, (ds.images[0].float() / 255 - 0.5) / 0.25)
    assert target["label"].item() == 1.0 and target["kind"] == "tight" and target["path"].endswith("two.png")
    labels = torch.stack([ds[i][1]["label"] for i in range(len(ds))])
    assert labels.sum() == 3 and len(ds) == 6


def test_crops_are_deterministic(records, nonface_paths):
    a = FaceCropDataset(records, nonface_paths, neg_ratio=2.0, seed=7)
    b = FaceCropDataset(records, nonface_paths, neg_ratio=2.0, seed=7)
    c = FaceCropDataset(records, nonface_paths, neg_ratio=2.0, seed=8)
    assert torch.equal(a.images, b.images) and torch.equal(a.boxes, b.boxes)
    assert not torch.equal(a.boxes, c.boxes)


def test_cache_is_reused_and_keyed_by_parameters(records, tmp_path, monkeypatch):
    first = FaceCropDataset(records, neg_ratio=1.0, cache_dir=tmp_path)
    assert first.cache_path is not None and first.cache_path.is_file()

    def no_cutting(*args, **kwargs):
        raise AssertionError("crops were cut again instead of read from the cache")

    monkeypatch.setattr(crops_module, "make_crops", no_cutting)
    again = FaceCropDataset(records, neg_ratio=1.0, cache_dir=tmp_path)
    assert again.cache_path == first.cache_path and torch.equal(again.images, first.images)
    assert again.images.dtype == torch.uint8
    with pytest.raises(AssertionError, match="cut again"):  # another parameter -> another file
        FaceCropDataset(records, neg_ratio=2.0, cache_dir=tmp_path)
    moved = [Record(r.image_path, r.width, r.height, r.boxes + 1, r.labels, r.difficult) for r in records]
    with pytest.raises(AssertionError, match="cut again"):  # other boxes -> another file
        FaceCropDataset(moved, neg_ratio=1.0, cache_dir=tmp_path)


def test_empty_and_invalid_inputs(records):
    empty = FaceCropDataset([records[2]], neg_ratio=1.0)  # no faces -> no positives, no negatives
    assert len(empty) == 0 and empty.images.shape == (0, 3, 128, 128)
    with pytest.raises(ConfigError, match="framing"):
        FaceCropDataset(records, framing="loose")
