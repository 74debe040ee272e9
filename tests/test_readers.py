"""Readers: tiny hand-made data sets in every format, label noise, and the shared real sets."""
import json
import math
import os
import warnings
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from facedet.data.labels import DataWarning, sanitize_boxes
from facedet.data.layouts import detect_format, read_data_yaml, voc_roots
from facedet.data.readers import (
    read_coco,
    read_dataset,
    read_fddb,
    read_voc,
    read_wider,
    read_yolo,
    yolo_label_path,
)
from facedet.errors import ConfigError, DataError


def write_image(path: Path, width: int, height: int, mode: str = "RGB", orientation: int = 1) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    image = Image.new(mode, (width, height))
    if orientation != 1:
        exif = Image.Exif()
        exif[0x0112] = orientation
        image.save(path, exif=exif)
    else:
        image.save(path)
    return path


def write_text(path: Path, text: str) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def boxes_of(records, name: str) -> list[list[float]]:
    (record,) = [r for r in records if r.image_path.name == name]
    return record.boxes.tolist()


@pytest.fixture
def no_warnings():
    with warnings.catch_warnings():
        warnings.simplefilter("error", DataWarning)
        yield


# --------------------------------------------------------------------------- sanitize_boxes


def test_sanitize_docstring_example():
    boxes, keep, n_dropped, n_far = sanitize_boxes([[10, 20, 401, 50], [5, 5, 5, 9]], 400, 300, "x.txt")
    assert boxes.dtype == torch.float32
    assert boxes.tolist() == [[10, 20, 400, 50], [5, 5, 5, 9]]
    assert keep.tolist() == [True, False]
    assert (n_dropped, n_far) == (1, 0)


def test_sanitize_far_outside_inverted_and_empty():
    boxes = [
        [-50, 10, 60, 80],  # 50 px past the left edge: clipped, counted as far
        [-1.5, -2, 100, 100],  # within the 2 px tolerance: clipped silently
        [30, 30, 20, 40],  # x2 < x1: dropped
        [200, 10, 300, 20],  # entirely right of the image: nothing left, dropped
    ]
    result = sanitize_boxes(boxes, 100, 100, "x.txt")
    assert result.boxes[:2].tolist() == [[0, 10, 60, 80], [0, 0, 100, 100]]
    assert result.keep.tolist() == [True, True, False, False]
    assert (result.n_dropped, result.n_far_outside) == (2, 1)
    empty = sanitize_boxes(np.zeros((0, 4)), 10, 10, "x.txt")
    assert empty.boxes.shape == (0, 4) and empty.keep.shape == (0,) and empty.n_dropped == 0


def test_sanitize_refuses_non_finite():
    with pytest.raises(DataError, match=r"labels.txt: box 1 has a non-finite"):
        sanitize_boxes([[0, 0, 1, 1], [0, float("nan"), 1, 1]], 10, 10, "labels.txt")


# --------------------------------------------------------------------------- YOLO


def make_yolo(root: Path) -> Path:
    """images/train: a.jpg 100x50 (3 boxes), b.png grayscale (empty file), c.jpg (no file),
    d.jpg stored 100x50 with EXIF orientation 6 (upright 50x100); names as a dict."""
    write_image(root / "images/train/a.jpg", 100, 50)
    write_image(root / "images/train/b.png", 40, 40, mode="L")
    write_image(root / "images/train/c.jpg", 20, 10)
    write_image(root / "images/train/d.jpg", 100, 50, orientation=6)
    write_text(root / "labels/train/a.txt", "0 0.5 0.5 0.2 0.4\n\n1 0.955 0.5 0.11 0.2\n")
    write_text(root / "labels/train/b.txt", "")
    write_text(root / "labels/train/d.txt", "0 0.5 0.25 0.2 0.1\n")
    write_text(root / "data.yaml", "path: .\ntrain: images/train\nval: images/val\nnames:\n  0: face\n  1: mask\n")
    return root


def test_yolo_boxes_in_pixels_of_the_upright_image(tmp_path, no_warnings):
    records = read_yolo(make_yolo(tmp_path), "train")
    assert [r.image_path.name for r in records] == ["a.jpg", "b.png", "c.jpg", "d.jpg"]
    a = records[0]
    assert (a.width, a.height) == (100, 50)
    # cx 0.5 cy 0.5 w 0.2 h 0.4 -> 40..60 x 15..35; the second box ends at 1.01 * 100 = 101 px
    # (1 px outside) and is clipped to 100 without a warning.
    assert torch.allclose(a.boxes, torch.tensor([[40.0, 15, 60, 35], [90.0, 20, 100, 30]]), atol=1e-4)
    assert a.labels.tolist() == [0, 1] and a.labels.dtype == torch.int64
    assert a.difficult.tolist() == [False, False]
    assert records[1].boxes.shape == (0, 4) and records[2].boxes.shape == (0, 4)  # empty / missing
    d = records[3]
    assert (d.width, d.height) == (50, 100)  # EXIF 6 swaps the sides
    assert torch.allclose(d.boxes, torch.tensor([[20.0, 20, 30, 30]]))


def test_yolo_without_yaml_and_read_dataset(tmp_path):
    root = make_yolo(tmp_path)
    (root / "data.yaml").unlink()
    records = read_yolo(root, "train")  # no names: any class id >= 0 is accepted
    assert len(records) == 4
    assert detect_format(root) == "yolo"
    _, names = read_dataset(root, "train")
    assert names == ["0", "1"]  # numbered up to the largest label used
    _, names = read_dataset(root, "train", classes="face")
    assert names == ["face"]


def test_read_data_yaml_list_names_and_errors(tmp_path):
    path = write_text(tmp_path / "d.yaml", "path: data\ntrain: [a, b]\nnames: [cat, dog]\n")
    data = read_data_yaml(path)
    assert data.root == tmp_path / "data"
    assert data.splits == {"train": [tmp_path / "data/a", tmp_path / "data/b"]}
    assert data.names == ["cat", "dog"]
    write_text(path, "train: a\nnames: {0: cat, 2: dog}\n")
    with pytest.raises(DataError, match=r"d.yaml: names ids must be 0..1"):
        read_data_yaml(path)
    with pytest.raises(DataError, match=r"data.yaml: no 'test:' key"):
        read_yolo(make_yolo(tmp_path / "y"), "test")


def test_yolo_label_path_rule():
    assert yolo_label_path(Path("/d/images/train/x.jpg")) == Path("/d/labels/train/x.txt")
    assert yolo_label_path(Path("/images/d/images/val/x.png")) == Path("/images/d/labels/val/x.txt")
    assert yolo_label_path(Path("/d/pics/x.jpg")) == Path("/d/pics/x.txt")


@pytest.mark.parametrize(
    "line,message",
    [
        ("0 0.5 0.5 0.2", r"a.txt:3: expected 'class cx cy w h' with 5 numbers, got '0 0.5 0.5 0.2'"),
        ("0 0.5 x 0.2 0.2", r"a.txt:3: expected 'class cx cy w h' with 5 numbers, got '0 0.5 x 0.2 0.2'"),
        ("2 0.5 0.5 0.2 0.2", r"a.txt:3: class id '2' is not in 0..1"),
        ("0.5 0.5 0.5 0.2 0.2", r"a.txt:3: class id '0.5'"),
        ("0 nan 0.5 0.2 0.2", r"a.txt:3: non-finite number"),
    ],
)
def test_yolo_malformed_line_names_file_and_line(tmp_path, line, message):
    root = make_yolo(tmp_path)
    write_text(root / "labels/train/a.txt", f"0 0.5 0.5 0.2 0.4\n\n{line}\n")
    with pytest.raises(DataError, match=message) as info:
        read_yolo(root, "train")
    assert "\n" not in str(info.value)


def test_yolo_zero_area_and_far_outside_boxes_are_counted(tmp_path):
    root = make_yolo(tmp_path)
    write_text(root / "labels/train/a.txt", "0 0.5 0.5 0 0.4\n0 0.5 0.5 0.2 0.4\n0 1.0 0.5 0.4 0.4\n")
    with pytest.warns(DataWarning) as caught:
        records = read_yolo(root, "train")
    (message,) = [str(w.message) for w in caught]
    assert message == f"{tmp_path.name}: dropped 1 zero-area box; clipped 1 box reaching more than 2 px outside the image"
    assert torch.allclose(records[0].boxes, torch.tensor([[40.0, 15, 60, 35], [80, 15, 100, 35]]))


def test_bad_images_fail_or_are_skipped(tmp_path):
    root = make_yolo(tmp_path)
    write_text(root / "images/train/e.jpg", "this is not a picture")
    with pytest.raises(DataError, match=r"e.jpg: not a readable image"):
        read_yolo(root, "train")
    with pytest.warns(DataWarning, match=r"skipped 1 unreadable image \(first: .*e.jpg\)"):
        records = read_yolo(root, "train", skip_bad_images=True)
    assert [r.image_path.name for r in records] == ["a.jpg", "b.png", "c.jpg", "d.jpg"]


# --------------------------------------------------------------------------- Pascal VOC


def voc_xml(filename: str, objects: list[tuple]) -> str:
    parts = [f"<annotation><filename>{filename}</filename><size><width>1</width><height>1</height></size>"]
    for name, box, difficult in objects:
        coords = "".join(f"<{k}>{v}</{k}>" for k, v in zip(("xmin", "ymin", "xmax", "ymax"), box))
        parts.append(f"<object><name>{name}</name><difficult>{difficult}</difficult><bndbox>{coords}</bndbox></object>")
    return "".join(parts) + "</annotation>"


def make_voc(root: Path, year_objects: dict[str, list[tuple]] | None = None) -> Path:
    objects = year_objects or {
        "img1": [("with_mask", (10, 20, 401, 60), 0), ("without_mask", (1, 2, 30, 40), 1)],
        "img2": [("mask_weared_incorrect", (5.5, 5, 50, 25.5), 0)],
        "img3": [],
    }
    for image_id, objs in objects.items():
        write_image(root / "JPEGImages" / f"{image_id}.jpg", 400, 300)
        write_text(root / "Annotations" / f"{image_id}.xml", voc_xml(f"{image_id}.jpg", objs))
    write_text(root / "ImageSets/Main/train.txt", "\n".join(objects) + "\n")
    return root


MASK_CLASSES = ["with_mask", "without_mask", "mask_weared_incorrect"]


def test_voc_boxes_labels_difficult(tmp_path, no_warnings):
    records = read_voc(make_voc(tmp_path), "train", MASK_CLASSES)
    assert [r.image_path.name for r in records] == ["img1.jpg", "img2.jpg", "img3.jpg"]
    assert records[0].boxes.tolist() == [[10, 20, 400, 60], [1, 2, 30, 40]]  # 401 clipped to 400
    assert records[0].labels.tolist() == [0, 1]
    assert records[0].difficult.tolist() == [False, True]
    assert records[1].boxes.tolist() == [[5.5, 5, 50, 25.5]] and records[1].labels.tolist() == [2]
    assert records[2].boxes.shape == (0, 4)
    faces = read_voc(tmp_path, "train", "face")
    assert [r.labels.tolist() for r in faces] == [[0, 0], [0], []]


def test_voc_unknown_class_names_xml_and_known(tmp_path):
    make_voc(tmp_path)
    with pytest.raises(DataError, match=r"img1.xml: unknown class 'without_mask' \(known: with_mask, mask_weared_incorrect\)"):
        read_voc(tmp_path, "train", ["with_mask", "mask_weared_incorrect"])
    with pytest.raises(ConfigError, match="class_map"):
        read_voc(tmp_path, "train", "faces")


def test_voc_broken_files(tmp_path):
    make_voc(tmp_path)
    with pytest.raises(DataError, match=r"ImageSets/Main/val.txt: no such split file \(available: train\)"):
        read_voc(tmp_path, "val", "face")
    write_text(tmp_path / "Annotations/img2.xml", voc_xml("img2.jpg", [("with_mask", (1, 2, "x", 4), 0)]))
    with pytest.raises(DataError, match=r"img2.xml: object 0 \('with_mask'\) needs numeric"):
        read_voc(tmp_path, "train", "face")
    write_text(tmp_path / "Annotations/img2.xml", "<annotation><object>")
    with pytest.raises(DataError, match=r"img2.xml: not a readable VOC annotation"):
        read_voc(tmp_path, "train", "face")


def test_voc_zero_area_box_is_dropped_and_counted(tmp_path):
    make_voc(tmp_path, {"a": [("RBC", (504, 337, 504, 337), 0), ("WBC", (1, 1, 9, 9), 0)]})
    with pytest.warns(DataWarning, match=f"{tmp_path.name}: dropped 1 zero-area box$"):
        (record,) = read_voc(tmp_path, "train", ["RBC", "WBC"])
    assert record.labels.tolist() == [1]


def test_voc07_plus_12(tmp_path):
    make_voc(tmp_path / "VOCdevkit/VOC2007", {"000001": [("dog", (1, 1, 5, 5), 0)]})
    make_voc(tmp_path / "VOCdevkit/VOC2012", {"2008_1": [("cat", (1, 1, 5, 5), 0)], "2008_2": []})
    roots = voc_roots(tmp_path / "VOCdevkit")
    assert [r.name for r in roots] == ["VOC2007", "VOC2012"]
    records = read_voc(roots, "train", ["cat", "dog"])
    assert [r.image_path.name for r in records] == ["000001.jpg", "2008_1.jpg", "2008_2.jpg"]
    assert [r.labels.tolist() for r in records] == [[1], [0], []]
    assert detect_format(tmp_path / "VOCdevkit") == "voc"
    records, names = read_dataset(tmp_path / "VOCdevkit", "train")
    assert names == ["cat", "dog"] and len(records) == 3


# --------------------------------------------------------------------------- WIDER FACE


WIDER_TXT = """0--Parade/a.jpg
2
10 20 30 40 0 0 0 0 0 0 
50 60 0 10 2 0 0 1 0 0 
0--Parade/b.jpg
0
0 0 0 0 0 0 0 0 0 0 
1--Handshaking/c.jpg
1
5 5 10 10 1 0 0 1 2 0 
"""


def test_wider_boxes_zero_count_and_invalid(tmp_path):
    for name in ("0--Parade/a.jpg", "0--Parade/b.jpg", "1--Handshaking/c.jpg"):
        write_image(tmp_path / "images" / name, 200, 100)
    annotation = write_text(tmp_path / "wider_face_val_bbx_gt.txt", WIDER_TXT)
    with pytest.warns(DataWarning, match="wider_face_val_bbx_gt.txt: dropped 1 zero-area box"):
        records = read_wider(annotation, tmp_path / "images")
    assert [r.image_path.name for r in records] == ["a.jpg", "b.jpg", "c.jpg"]
    assert records[0].boxes.tolist() == [[10, 20, 40, 60]]  # x y w h -> xyxy; w = 0 dropped
    assert records[1].boxes.shape == (0, 4)  # count 0 and its placeholder line
    assert records[2].boxes.tolist() == [[5, 5, 15, 15]] and records[2].difficult.tolist() == [True]
    assert all(r.labels.tolist() == [0] * len(r.boxes) for r in records)


def test_wider_malformed_lines(tmp_path):
    write_image(tmp_path / "images/0--Parade/a.jpg", 200, 100)
    bad = write_text(tmp_path / "gt.txt", "0--Parade/a.jpg\n2\n10 20 30 40 0 0 0 0 0 0\n1 2 3\n")
    with pytest.raises(DataError, match=r"gt.txt:4: expected 'x y w h blur .*' with 10 numbers, got '1 2 3'"):
        read_wider(bad, tmp_path / "images")
    bad = write_text(tmp_path / "gt.txt", "0--Parade/a.jpg\ntwo\n")
    with pytest.raises(DataError, match=r"gt.txt:2: expected the number of faces, got 'two'"):
        read_wider(bad, tmp_path / "images")
    bad = write_text(tmp_path / "gt.txt", "0--Parade/a.jpg\n3\n10 20 30 40 0 0 0 0 0 0\n")
    with pytest.raises(DataError, match=r"gt.txt:2: announces 3 faces but the file ends after 1"):
        read_wider(bad, tmp_path / "images")


# --------------------------------------------------------------------------- FDDB


def test_fddb_ellipses_at_0_and_90_degrees(tmp_path):
    write_image(tmp_path / "pics/2002/img_1.jpg", 200, 150)
    write_image(tmp_path / "pics/2002/img_2.jpg", 200, 150)
    text = f"2002/img_1\n2\n20 10 0 50 40  1\n20 10 {math.pi / 2} 100 80  1\n2002/img_2\n1\n30 30 0.7 100 75 1\n"
    ellipses = write_text(tmp_path / "FDDB-fold-01-ellipseList.txt", text)
    records = read_fddb(ellipses, tmp_path / "pics")
    # angle 0: major half-axis 20 along x, minor 10 along y; angle pi/2: the other way round.
    assert torch.allclose(records[0].boxes, torch.tensor([[30.0, 30, 70, 50], [90, 60, 110, 100]]), atol=1e-4)
    # a circle (a = b) has the same box at any angle.
    assert torch.allclose(records[1].boxes, torch.tensor([[70.0, 45, 130, 105]]), atol=1e-4)
    assert records[0].image_path == tmp_path / "pics/2002/img_1.jpg"


def test_fddb_box_matches_sampled_ellipse(tmp_path):
    # Oracle: walk around the rotated ellipse and take the extremes.
    write_image(tmp_path / "p/x.jpg", 400, 400)
    rng = np.random.default_rng(0)
    ellipses = [(rng.uniform(20, 60), rng.uniform(5, 20), rng.uniform(-3, 3)) for _ in range(5)]
    lines = "".join(f"{a} {b} {t} 200 200 1\n" for a, b, t in ellipses)
    (record,) = read_fddb(write_text(tmp_path / "e.txt", f"x\n5\n{lines}"), tmp_path / "p")
    for box, (a, b, t) in zip(record.boxes.tolist(), ellipses):
        s = np.linspace(0, 2 * np.pi, 20001)
        xs = 200 + a * np.cos(s) * np.cos(t) - b * np.sin(s) * np.sin(t)
        ys = 200 + a * np.cos(s) * np.sin(t) + b * np.sin(s) * np.cos(t)
        np.testing.assert_allclose(box, [xs.min(), ys.min(), xs.max(), ys.max()], atol=1e-2)


# --------------------------------------------------------------------------- COCO


def coco_json(path: Path) -> Path:
    content = {
        "images": [{"id": 7, "file_name": "a.jpg"}, {"id": 3, "file_name": "b.jpg"}],
        "categories": [{"id": 18, "name": "dog"}, {"id": 1, "name": "person"}],
        "annotations": [
            {"id": 1, "image_id": 7, "category_id": 1, "bbox": [10, 20, 30, 40], "iscrowd": 0},
            {"id": 2, "image_id": 7, "category_id": 18, "bbox": [0, 0, 100, 50], "iscrowd": 1},
            {"id": 3, "image_id": 7, "category_id": 1, "bbox": [5, 5, 0, 10], "iscrowd": 0},
        ],
    }
    return write_text(path, json.dumps(content))


def test_coco_boxes_labels_crowd(tmp_path):
    write_image(tmp_path / "val/a.jpg", 100, 80)
    write_image(tmp_path / "val/b.jpg", 50, 50)
    json_path = coco_json(tmp_path / "annotations/instances_val.json")
    with pytest.warns(DataWarning, match="dropped 1 zero-area box"):
        records, names = read_coco(json_path, tmp_path / "val")
    assert names == ["person", "dog"]  # sorted by category id: 1, 18
    a, b = records
    assert a.boxes.tolist() == [[10, 20, 40, 60], [0, 0, 100, 50]]
    assert a.labels.tolist() == [0, 1]
    assert a.difficult.tolist() == [False, True]  # the crowd region
    assert b.boxes.shape == (0, 4)  # image without annotations
    assert detect_format(tmp_path) == "coco"
    with pytest.warns(DataWarning):
        records, names = read_dataset(tmp_path, "val")
    assert len(records) == 2 and names == ["person", "dog"]


def test_coco_unknown_category_and_missing_key(tmp_path):
    path = tmp_path / "c.json"
    content = {"images": [], "categories": [{"id": 1, "name": "a"}]}
    write_text(path, json.dumps({**content, "annotations": [{"image_id": 1, "category_id": 5, "bbox": [0, 0, 1, 1]}]}))
    with pytest.raises(DataError, match="c.json: annotation category_id 5 is not in categories"):
        read_coco(path, tmp_path)
    write_text(path, json.dumps({"categories": []}))
    with pytest.raises(DataError, match="c.json: not a readable COCO instances file \\(missing key 'images'\\)"):
        read_coco(path, tmp_path)


def test_unknown_format(tmp_path):
    with pytest.raises(DataError, match="cannot tell the data set format"):
        detect_format(tmp_path)
    with pytest.raises(ConfigError, match="unknown data set format 'csv'"):
        read_dataset(tmp_path, "train", fmt="csv")


# --------------------------------------------------------------------------- the shared real sets


DATA = Path(os.environ.get("FACEDET_DATA", Path(__file__).resolve().parents[1] / "../shared/data"))
needs_data = pytest.mark.skipif(not DATA.is_dir(), reason=f"no shared data at {DATA} (set FACEDET_DATA)")


def in_image(records) -> bool:
    return all(
        bool((r.boxes[:, :2] >= 0).all() and (r.boxes[:, 2] <= r.width).all() and (r.boxes[:, 3] <= r.height).all())
        for r in records
    )


@needs_data
def test_real_faces_caltech_val(no_warnings):
    records, names = read_dataset(DATA / "faces-caltech", "val")
    assert names == ["face"]
    assert len(records) == 709
    assert sum(len(r.boxes) for r in records) == 1072
    assert in_image(records)


@needs_data
def test_real_faces_mask_val_as_faces(no_warnings):
    # Its twelve xmax = 401 boxes on 400-px images are clipped within the tolerance: no warning.
    records, names = read_dataset(DATA / "faces-mask", "val", classes="face")
    assert names == ["face"]
    assert len(records) == 170  # ImageSets/Main/val.txt lists 170 ids (683 in train.txt)
    assert sum(len(r.boxes) for r in records) == 798
    assert all(r.labels.eq(0).all() for r in records)
    assert in_image(records)


@needs_data
def test_real_bccd_train():
    with pytest.warns(DataWarning, match="bccd: dropped 1 zero-area box$"):  # BloodImage_00343
        records, names = read_dataset(DATA / "bccd", "train")
    assert names == ["Platelets", "RBC", "WBC"]
    assert len(records) == 205
    assert sum(len(r.boxes) for r in records) == 2804
    counts = torch.bincount(torch.cat([r.labels for r in records]), minlength=3).tolist()
    assert counts == [209, 2381, 214]


@needs_data
def test_real_coco8_val(no_warnings):
    records, names = read_dataset(DATA / "coco8", "val")
    assert len(records) == 4
    assert sum(len(r.boxes) for r in records) == 17
    assert len(names) == 59  # no data.yaml: "0".."58", up to the largest COCO class id used
