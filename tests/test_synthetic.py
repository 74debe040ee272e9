"""Tests for facedet.data.synthetic: deterministic, valid YOLO labels, the promised variety,
and a cache that is never half-written."""

import numpy as np
import pytest
import torch
from PIL import Image

from facedet.data import synthetic
from facedet.data.synthetic import (
    ensure_synthetic,
    make_demo_image,
    render_scene,
    yolo_label_lines,
)
from facedet.errors import DataError

SIZE = 96  # small images keep the test fast; faces are still >= 11 px


@pytest.fixture
def cache(tmp_path, monkeypatch):
    monkeypatch.setenv("FACEDET_CACHE", str(tmp_path / "cache"))
    return tmp_path / "cache"


@pytest.fixture(scope="module")
def dataset(tmp_path_factory):
    return ensure_synthetic(tmp_path_factory.mktemp("synthetic") / "set", n_train=60, n_val=12, size=SIZE, seed=0)


def parse_labels(path):
    """[[class, cx, cy, w, h], ...] as written, with the raw strings checked for 6 decimals."""
    rows = []
    for line in path.read_text().splitlines():
        fields = line.split()
        assert len(fields) == 5 and fields[0] == "0", line
        assert all(len(f.split(".")[1]) == 6 for f in fields[1:]), line
        rows.append([float(f) for f in fields[1:]])
    return rows


def all_labels(root, split):
    return {p.stem: parse_labels(p) for p in sorted((root / "labels" / split).glob("*.txt"))}


# ---------------------------------------------------------------- the written data set


def test_layout(dataset):
    for split, n in (("train", 60), ("val", 12)):
        images = sorted((dataset / "images" / split).glob("*.jpg"))
        labels = sorted((dataset / "labels" / split).glob("*.txt"))
        assert len(images) == len(labels) == n
        assert [p.stem for p in images] == [p.stem for p in labels]
    yaml_text = (dataset / "data.yaml").read_text()
    assert "train: images/train" in yaml_text and "0: face" in yaml_text
    assert not list(dataset.parent.glob(".*tmp*"))  # the temporary folder was renamed away


def test_labels_are_valid_and_inside(dataset):
    n_boxes = 0
    for rows in all_labels(dataset, "train").values():
        for cx, cy, w, h in rows:
            n_boxes += 1
            assert 0 < w <= 1 and 0 < h <= 1 and 0 < cx <= 1 and 0 < cy <= 1
            assert cx - w / 2 >= 0 and cx + w / 2 <= 1 and cy - h / 2 >= 0 and cy + h / 2 <= 1
            # faces are 12-60% of the side, measured on the unrotated ellipse; cut faces are smaller
            assert max(w, h) < 0.7
    assert n_boxes > 60


def test_variety(dataset):
    labels = all_labels(dataset, "train")
    counts = [len(rows) for rows in labels.values()]
    assert 0 in counts and max(counts) >= 3
    cut = [
        r for rows in labels.values() for r in rows
        if r[0] - r[2] / 2 < 1e-5 or r[0] + r[2] / 2 > 1 - 1e-5 or r[1] - r[3] / 2 < 1e-5 or r[1] + r[3] / 2 > 1 - 1e-5
    ]
    assert cut, "some faces should be cut by the border"
    heights = [r[3] for rows in labels.values() for r in rows]
    assert min(heights) < 0.2 and max(heights) > 0.4  # many scales
    modes = {p.stem: Image.open(p).mode for p in (dataset / "images" / "train").glob("*.jpg")}
    assert "L" in modes.values() and "RGB" in modes.values()
    sizes = {Image.open(p).size for p in (dataset / "images" / "train").glob("*.jpg")}
    assert sizes == {(SIZE, SIZE)}


def test_same_seed_same_bytes_other_seed_other_labels(tmp_path, dataset):
    again = ensure_synthetic(tmp_path / "again", n_train=60, n_val=12, size=SIZE, seed=0)
    for split in ("train", "val"):
        for path in sorted((dataset / "labels" / split).glob("*.txt")):
            assert path.read_bytes() == (again / "labels" / split / path.name).read_bytes()
    for name in ("00000.jpg", "00007.jpg"):
        a = np.asarray(Image.open(dataset / "images" / "train" / name))
        b = np.asarray(Image.open(again / "images" / "train" / name))
        assert np.array_equal(a, b)
    other = ensure_synthetic(tmp_path / "other", n_train=5, n_val=1, size=SIZE, seed=1)
    assert all_labels(other, "train") != {k: v for k, v in all_labels(dataset, "train").items() if int(k) < 5}


def test_readable_by_the_yolo_reader(dataset):
    readers = pytest.importorskip("facedet.data.readers")
    records = readers.read_yolo(dataset, "train")
    assert len(records) == 60
    labels = all_labels(dataset, "train")
    for record in records:
        rows = labels[record.image_path.stem]
        assert (record.width, record.height) == (SIZE, SIZE)
        assert len(record.boxes) == len(rows)
        expected = torch.tensor([[cx - w / 2, cy - h / 2, cx + w / 2, cy + h / 2] for cx, cy, w, h in rows]).reshape(-1, 4)
        assert torch.allclose(record.boxes, expected * SIZE, atol=1e-3)
        assert record.labels.eq(0).all()


# ---------------------------------------------------------------- the cache


def test_default_root_is_in_the_cache_and_reused(cache):
    root = ensure_synthetic(n_train=3, n_val=1, size=32)
    assert root.parent == cache and root.name.startswith("synthetic-v1-")
    marker = root / synthetic.MARKER
    stamp = marker.stat().st_mtime_ns
    assert ensure_synthetic(n_train=3, n_val=1, size=32) == root
    assert marker.stat().st_mtime_ns == stamp  # not regenerated
    assert ensure_synthetic(n_train=4, n_val=1, size=32) != root  # other parameters, other folder


def test_failed_generation_leaves_nothing(cache, monkeypatch):
    calls = []

    def broken(rng, size):
        calls.append(1)
        if len(calls) == 3:
            raise RuntimeError("disk full")
        return render_scene(rng, size)

    monkeypatch.setattr(synthetic, "render_scene", broken)
    with pytest.raises(RuntimeError, match="disk full"):
        ensure_synthetic(n_train=5, n_val=1, size=32)
    assert not cache.exists() or not any(cache.iterdir())


def test_incomplete_or_foreign_folder_is_refused(tmp_path):
    (tmp_path / "half").mkdir()
    (tmp_path / "half" / "images").mkdir()
    with pytest.raises(DataError, match="half.*missing"):
        ensure_synthetic(tmp_path / "half", n_train=2, n_val=1, size=32)
    root = ensure_synthetic(tmp_path / "set", n_train=2, n_val=1, size=32)
    with pytest.raises(DataError, match="made with"):
        ensure_synthetic(root, n_train=3, n_val=1, size=32)


# ---------------------------------------------------------------- scenes and labels


def test_render_scene_boxes_and_determinism():
    seen_faces = 0
    for i in range(10):
        image, boxes = render_scene(np.random.default_rng(i), (48, 64))
        again, boxes2 = render_scene(np.random.default_rng(i), (48, 64))
        assert np.array_equal(np.asarray(image), np.asarray(again)) and torch.equal(boxes, boxes2)
        assert image.size == (64, 48) and image.mode in ("RGB", "L")
        assert boxes.dtype == torch.float32 and boxes.shape[1] == 4
        assert (boxes[:, :2] >= 0).all() and (boxes[:, 2] <= 64).all() and (boxes[:, 3] <= 48).all()
        assert (boxes[:, 2:] > boxes[:, :2]).all()
        seen_faces += len(boxes)
    assert seen_faces > 0


def test_faces_differ_from_background():
    """A face is drawn where its box is: the box interior differs from the scene without faces."""
    rng_state = np.random.default_rng(123)
    for _ in range(5):
        seed = int(rng_state.integers(1 << 30))
        with_face, boxes = render_scene(np.random.default_rng(seed), 64, min_faces=1, max_faces=1)
        assert len(boxes) == 1
        x1, y1, x2, y2 = boxes[0].round().int().tolist()
        pixels = np.asarray(with_face.convert("L"), np.float32)
        inside = pixels[y1:y2, x1:x2]
        assert inside.std() > 5  # eyes, brows, nose and mouth make contrast


def test_yolo_label_lines_hand_values_and_inward_rounding():
    boxes = torch.tensor([[0.0, 0.0, 256.0, 128.0], [10.0, 20.0, 30.0, 60.0]])
    assert yolo_label_lines(boxes, 256, 256) == [
        "0 0.500000 0.250000 1.000000 0.500000",
        # x: 10/256 = 0.0390625 and 30/256 = 0.1171875 fall on half millionths, so they are
        # rounded inward to 0.039063 and 0.117187: width 0.078124, centre 0.078125
        "0 0.078125 0.156250 0.078124 0.156250",
    ]
    # thirds do not round evenly: the written box must stay inside the true one
    box = torch.tensor([[1.0, 1.0, 2.0, 3.0]])
    (line,) = yolo_label_lines(box, 3, 3)
    cx, cy, w, h = (float(v) for v in line.split()[1:])
    assert cx - w / 2 >= 1 / 3 - 1e-12 and cx + w / 2 <= 2 / 3 + 1e-12
    assert cy - h / 2 >= 1 / 3 - 1e-12 and cy + h / 2 <= 1 + 1e-12
    assert abs(w - 1 / 3) < 3e-6 and abs(h - 2 / 3) < 3e-6
    assert yolo_label_lines(torch.zeros(0, 4), 10, 10) == []


def test_make_demo_image(tmp_path):
    path = tmp_path / "demo" / "scene.jpg"
    boxes = make_demo_image(path, seed=4, size=80)
    assert len(boxes) >= 1
    assert Image.open(path).size == (80, 80)
    assert torch.equal(make_demo_image(tmp_path / "again.jpg", seed=4, size=80), boxes)
