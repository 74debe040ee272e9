"""Properties over generated inputs (hypothesis): the label parsers and the box toolkit.

tests/test_boxes.py checks hand values and loop oracles on fixed random boxes; here
hypothesis searches the corners those miss (degenerate and inverted boxes, tiny and huge
scales, ties, garbage text) for a counter-example to each stated property.
"""
from __future__ import annotations

import math
import warnings
from pathlib import Path
from xml.sax.saxutils import escape

import pytest
import torch

hypothesis = pytest.importorskip("hypothesis")  # in the dev extra; CI installs it
from hypothesis import HealthCheck, example, given, settings  # noqa: E402
from hypothesis import strategies as st  # noqa: E402
from PIL import Image  # noqa: E402

from facedet.boxes import batched_nms, box_area, box_convert, box_iou, clip_boxes, decode, encode, nms  # noqa: E402
from facedet.data.labels import sanitize_boxes  # noqa: E402
from facedet.data.readers import read_voc, read_wider, read_yolo  # noqa: E402
from facedet.errors import DataError  # noqa: E402

# Modest example counts keep the file to a few seconds; no deadline, the machine is shared.
FEW = settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
WIDTH, HEIGHT = 64, 48  # the image every label file below belongs to


# --------------------------------------------------------------------------- strategies

coordinate = st.floats(-1e4, 1e4, allow_nan=False, width=32)
side = st.floats(2**-6, 1e4, allow_nan=False, width=32)  # from 1/64: exact in float32


@st.composite
def boxes_xyxy(draw, min_size: int = 0, max_size: int = 12, positive: bool = True) -> torch.Tensor:
    """(N, 4) float32 "xyxy"; with positive=False also zero-area and inverted boxes."""
    n = draw(st.integers(min_size, max_size))
    rows = []
    for _ in range(n):
        x, y = draw(coordinate), draw(coordinate)
        if positive:
            w, h = draw(side), draw(side)
        else:
            w, h = draw(st.floats(-1e3, 1e4, width=32)), draw(st.floats(-1e3, 1e4, width=32))
        rows.append([x, y, x + w, y + h])
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4)


@st.composite
def distinct_scores(draw, n: int) -> torch.Tensor:
    values = draw(st.lists(st.integers(0, 10**6), min_size=n, max_size=n, unique=True))
    return torch.tensor(values, dtype=torch.float32) / 10**6


def positive_area(boxes: torch.Tensor) -> torch.Tensor:
    return box_area(boxes) > 0


# --------------------------------------------------------------------------- box conversions


@FEW
@given(boxes=boxes_xyxy(positive=False), formats=st.permutations(["xyxy", "cxcywh", "xywh"]))
def test_box_convert_round_trips_any_box(boxes, formats):
    a, b, _ = formats
    boxes = box_convert(boxes.double(), "xyxy", a)
    back = box_convert(box_convert(boxes, a, b), b, a)
    torch.testing.assert_close(back, boxes, rtol=1e-9, atol=1e-9 * (1 + boxes.abs().max().item() if len(boxes) else 1))


@FEW
@given(boxes=boxes_xyxy(positive=False), width=st.floats(1, 5000), height=st.floats(1, 5000))
def test_clip_boxes_is_idempotent_and_inside(boxes, width, height):
    clipped = clip_boxes(boxes, width, height)
    assert torch.equal(clip_boxes(clipped, width, height), clipped)
    limits = torch.tensor([width, height, width, height], dtype=torch.float32)
    assert (clipped >= 0).all() and (clipped <= limits).all()
    inside = ((boxes >= 0) & (boxes <= limits)).all(dim=1)
    assert torch.equal(clipped[inside], boxes[inside])  # boxes already inside are untouched


# --------------------------------------------------------------------------- IoU


@FEW
@given(a=boxes_xyxy(positive=False), b=boxes_xyxy(positive=False))
def test_iou_symmetric_and_between_0_and_1(a, b):
    iou = box_iou(a, b)
    assert iou.shape == (len(a), len(b))
    assert torch.equal(iou, box_iou(b, a).T)
    assert torch.isfinite(iou).all() and (iou >= 0).all() and (iou <= 1).all()


@FEW
@given(boxes=boxes_xyxy(min_size=1))
def test_iou_of_a_box_with_itself_is_one(boxes):
    diagonal = box_iou(boxes, boxes).diagonal()
    assert (diagonal[positive_area(boxes)] == 1).all()
    assert (diagonal[~positive_area(boxes)] == 0).all()  # only if float32 rounds the area away


@FEW
@given(a=boxes_xyxy(min_size=1, max_size=5), b=boxes_xyxy(min_size=1, max_size=5),
       scale=st.floats(0.1, 10), shift=st.floats(-1e3, 1e3))
def test_iou_ignores_a_common_scale_and_shift(a, b, scale, shift):
    a, b = a.double(), b.double()
    moved = box_iou(a * scale + shift, b * scale + shift)
    torch.testing.assert_close(moved, box_iou(a, b), rtol=1e-6, atol=1e-6)


# --------------------------------------------------------------------------- encode / decode


@st.composite
def boxes_and_priors(draw) -> tuple[torch.Tensor, torch.Tensor]:
    """Fractional "cxcywh" boxes and priors (P, 4), sizes within a factor 100 of each other."""
    p = draw(st.integers(1, 10))
    unit = st.floats(0.0, 1.0, allow_nan=False)
    size = st.floats(0.01, 1.0, allow_nan=False)
    rows = [[draw(unit), draw(unit), draw(size), draw(size)] for _ in range(2 * p)]
    table = torch.tensor(rows, dtype=torch.float64)
    return table[:p], table[p:]


@FEW
@given(pair=boxes_and_priors(), variances=st.sampled_from([(0.1, 0.2), (1.0, 1.0), (0.05, 0.5)]))
def test_decode_inverts_encode(pair, variances):
    boxes, priors = pair
    offsets = encode(boxes, priors, variances)
    assert torch.isfinite(offsets).all()
    torch.testing.assert_close(decode(offsets, priors, variances), boxes, rtol=1e-9, atol=1e-12)
    torch.testing.assert_close(encode(decode(offsets, priors, variances), priors, variances), offsets,
                               rtol=1e-7, atol=1e-7)


# --------------------------------------------------------------------------- NMS


@st.composite
def detections(draw) -> tuple[torch.Tensor, torch.Tensor]:
    """Crowded boxes (so that many overlap) with distinct scores."""
    n = draw(st.integers(0, 25))
    corner = st.floats(0, 100, width=32)
    size = st.floats(0.5, 60, width=32)
    rows = []
    for _ in range(n):
        x, y = draw(corner), draw(corner)
        rows.append([x, y, x + draw(size), y + draw(size)])
    return torch.tensor(rows, dtype=torch.float32).reshape(-1, 4), draw(distinct_scores(n))


@FEW
@given(dets=detections(), threshold=st.floats(0.0, 1.0))
def test_nms_keeps_no_overlapping_pair_and_explains_every_removal(dets, threshold):
    boxes, scores = dets
    keep = nms(boxes, scores, threshold)
    assert keep.dtype == torch.int64 and len(set(keep.tolist())) == len(keep)
    assert (scores[keep][1:] < scores[keep][:-1]).all()  # decreasing score
    kept_iou = box_iou(boxes[keep], boxes[keep]).fill_diagonal_(0)
    assert (kept_iou <= threshold).all()
    removed = torch.tensor(sorted(set(range(len(boxes))) - set(keep.tolist())), dtype=torch.int64)
    if len(removed):  # each removed box overlaps a kept box that scores higher
        blame = (box_iou(boxes[removed], boxes[keep]) > threshold) & (scores[keep][None, :] > scores[removed][:, None])
        assert blame.any(dim=1).all()


@FEW
@given(dets=detections(), threshold=st.floats(0.0, 1.0), data=st.data())
def test_nms_does_not_depend_on_input_order(dets, threshold, data):
    boxes, scores = dets
    order = torch.tensor(data.draw(st.permutations(range(len(boxes)))), dtype=torch.int64)
    kept = nms(boxes, scores, threshold)
    kept_shuffled = order[nms(boxes[order], scores[order], threshold)]
    assert kept_shuffled.tolist() == kept.tolist()


@FEW
@given(dets=detections(), threshold=st.floats(0.0, 1.0), data=st.data())
def test_batched_nms_is_nms_per_class(dets, threshold, data):
    boxes, scores = dets
    labels = torch.tensor(data.draw(st.lists(st.integers(0, 2), min_size=len(boxes), max_size=len(boxes))),
                          dtype=torch.int64)
    expected = []
    for label in labels.unique().tolist():
        members = (labels == label).nonzero().flatten()
        expected += members[nms(boxes[members], scores[members], threshold)].tolist()
    expected.sort(key=lambda i: -scores[i].item())
    assert batched_nms(boxes, scores, labels, threshold).tolist() == expected


# --------------------------------------------------------------------------- sanitize_boxes


@FEW
@given(boxes=boxes_xyxy(positive=False), width=st.integers(1, 4000), height=st.integers(1, 4000))
def test_sanitize_boxes_keeps_only_positive_boxes_inside_the_image(boxes, width, height):
    result = sanitize_boxes(boxes, width, height, "labels.txt")
    kept = result.boxes[result.keep]
    assert (kept[:, 0] >= 0).all() and (kept[:, 1] >= 0).all()
    assert (kept[:, 2] <= width).all() and (kept[:, 3] <= height).all()
    assert (kept[:, 2] > kept[:, 0]).all() and (kept[:, 3] > kept[:, 1]).all()
    assert result.n_dropped == int((~result.keep).sum()) and 0 <= result.n_far_outside <= len(kept)


# --------------------------------------------------------------------------- label parsers


@pytest.fixture(scope="module")
def yolo_root(tmp_path_factory) -> Path:
    """images/train/a.jpg (64 x 48); the tests rewrite labels/train/a.txt."""
    root = tmp_path_factory.mktemp("yolo")
    (root / "images/train").mkdir(parents=True)
    (root / "labels/train").mkdir(parents=True)
    Image.new("RGB", (WIDTH, HEIGHT)).save(root / "images/train/a.jpg")
    return root


def read_quietly(read, *args, **kwargs):
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # dropped and clipped boxes are reported as warnings
        return read(*args, **kwargs)


finite = st.floats(-5, 5, allow_nan=False)
yolo_line = st.tuples(st.integers(0, 2), finite, finite, finite, finite)


@FEW
@given(lines=st.lists(yolo_line, max_size=8), style=st.sampled_from(["{!r}", "{:.6f}", "{:g}"]))
@example(lines=[(0, 0.0, 0.0, 1.0, 5e-67)], style="{!r}")  # positive in float64, zero in float32
def test_yolo_lines_of_finite_numbers_give_boxes_inside_the_image_or_none(yolo_root, lines, style):
    text = "".join(" ".join([str(c), *(style.format(v) for v in coords)]) + "\n" for c, *coords in lines)
    (yolo_root / "labels/train/a.txt").write_text(text)
    (record,) = read_quietly(read_yolo, yolo_root, "train", names=["a", "b", "c"])
    limits = torch.tensor([WIDTH, HEIGHT, WIDTH, HEIGHT], dtype=torch.float32)
    assert (record.boxes >= 0).all() and (record.boxes <= limits).all()
    assert (record.boxes[:, 2:] > record.boxes[:, :2]).all()
    # the oracle: each line, one at a time, clipped; the lines left with area are the boxes kept
    expected = []
    def clip(value: float, limit: int) -> float:
        return min(max(value, 0.0), limit)

    for c, cx, cy, w, h in ((c, *(float(style.format(v)) for v in coords)) for c, *coords in lines):
        x1, x2 = clip((cx - w / 2) * WIDTH, WIDTH), clip((cx + w / 2) * WIDTH, WIDTH)
        y1, y2 = clip((cy - h / 2) * HEIGHT, HEIGHT), clip((cy + h / 2) * HEIGHT, HEIGHT)
        x1, y1, x2, y2 = torch.tensor([x1, y1, x2, y2], dtype=torch.float32).tolist()  # as stored
        if x2 > x1 and y2 > y1:  # a negative width or height stays inverted, and is dropped
            expected.append((c, [x1, y1, x2, y2]))
    assert record.labels.tolist() == [c for c, _ in expected]
    torch.testing.assert_close(record.boxes, torch.tensor([b for _, b in expected], dtype=torch.float32).reshape(-1, 4),
                               rtol=1e-5, atol=1e-4)


text_line = st.text(st.characters(blacklist_categories=("Cs",)), max_size=40)


@FEW
@given(lines=st.lists(st.one_of(text_line, yolo_line.map(lambda t: " ".join(map(str, t)))), max_size=6))
def test_yolo_garbage_is_a_data_error_naming_file_and_line(yolo_root, lines):
    label_path = yolo_root / "labels/train/a.txt"
    label_path.write_text("\n".join(lines), encoding="utf-8")
    try:
        (record,) = read_quietly(read_yolo, yolo_root, "train", names=["a", "b", "c"])
    except DataError as error:
        message = str(error)
        assert "\n" not in message and message.startswith(f"{label_path}:"), message
        return
    assert len(record.boxes) <= len(lines)


@FEW
@given(fields=st.lists(st.one_of(text_line, st.floats(allow_nan=True).map(str)), min_size=6, max_size=6))
@example(fields=["face", "1", "2", "30", "40", "inf"])  # <difficult>inf</difficult>
def test_voc_garbage_fields_are_a_data_error_naming_the_xml(tmp_path, fields):
    name, xmin, ymin, xmax, ymax, difficult = (escape(f) for f in fields)
    root = tmp_path / "voc"
    (root / "JPEGImages").mkdir(parents=True, exist_ok=True)
    (root / "Annotations").mkdir(exist_ok=True)
    (root / "ImageSets/Main").mkdir(parents=True, exist_ok=True)
    if not (root / "JPEGImages/a.jpg").exists():
        Image.new("RGB", (WIDTH, HEIGHT)).save(root / "JPEGImages/a.jpg")
    (root / "ImageSets/Main/train.txt").write_text("a\n")
    xml_path = root / "Annotations/a.xml"
    xml_path.write_text(f"<annotation><object><name>{name}</name><difficult>{difficult}</difficult><bndbox>"
                        f"<xmin>{xmin}</xmin><ymin>{ymin}</ymin><xmax>{xmax}</xmax><ymax>{ymax}</ymax>"
                        "</bndbox></object></annotation>", encoding="utf-8")
    try:
        (record,) = read_quietly(read_voc, root, "train", "face")
    except DataError as error:
        message = str(error)
        assert "\n" not in message and message.startswith(f"{xml_path}:"), message
        return
    assert len(record.boxes) <= 1


@FEW
@given(lines=st.lists(st.one_of(text_line, st.sampled_from(["a.jpg", "1", "0", "0 0 0 0 0 0 0 0 0 0",
                                                            "2 3 10 12 0 0 0 0 0 0"])), max_size=8))
@example(lines=["a.jpg", "\u00b2", "2 3 10 12 0 0 0 0 0 0"])  # a face count of "²": a digit to str.isdigit
def test_wider_garbage_is_a_data_error_naming_file_and_line(tmp_path, lines):
    images = tmp_path / "images"
    if not images.exists():
        images.mkdir()
        Image.new("RGB", (WIDTH, HEIGHT)).save(images / "a.jpg")
    annotation = tmp_path / "wider_face_train_bbx_gt.txt"
    annotation.write_text("\n".join(lines), encoding="utf-8")
    try:
        records = read_quietly(read_wider, annotation, images)
    except DataError as error:
        message = str(error)
        assert "\n" not in message and (message.startswith(f"{annotation}:") or f"{images}" in message), message
        return
    assert all(math.isfinite(v) for r in records for v in r.boxes.flatten().tolist())
