"""Readers: annotation files on disk -> list[Record].

One function per format, all with the same result: a list of `Record`s whose boxes
are float32 "xyxy" pixels of the upright (EXIF-turned) image, labels 0-based.

    read_yolo(root, split, names)             ultralytics: images/<split>, labels/<split>, data.yaml
    read_voc(root, split, class_map)          Pascal VOC: Annotations/*.xml, ImageSets/Main/<split>.txt
    read_voc_beside(folder, class_map)        VOC XML beside the images (LabelImg, Roboflow VOC)
    read_wider(annotation_txt, images_root)   WIDER FACE wider_face_<split>_bbx_gt.txt
    read_fddb(ellipse_list_txt, images_root)  FDDB-fold-XX-ellipseList.txt
    read_coco(json_path, images_roots)        COCO instances JSON (also returns class names)
    read_dataset(root, split, fmt="auto")     finds the layout, returns (records, class_names)

Where each layout keeps its files (tool exports included) is facedet.data.layouts'
business; read_dataset asks it, then calls the reader.

Image sizes come from the file headers (`image_size`), which also catches files that
are not images: by default such a file is a DataError naming it; with
`skip_bad_images=True` it is left out and counted. Boxes pass through
`sanitize_boxes` (clip to the image, drop empty boxes); a reader that had to drop or
skip anything says so in one `DataWarning` line.
"""
from __future__ import annotations

import json
import os
import xml.etree.ElementTree as ET
from collections.abc import Iterable, Sequence
from pathlib import Path

import numpy as np
import torch

from facedet.data.images import IMAGE_SUFFIXES, image_size, is_image
from facedet.data.labels import ReadStats, sanitize_boxes
from facedet.data.layouts import (
    FORMATS,
    coco_sources,
    data_yaml_path,
    detect_format,
    find_split,
    is_voc_devkit,
    list_splits,
    read_data_yaml,
    voc_roots,
    voc_xml_folders,
    yolo_sources,
)
from facedet.data.record import Record
from facedet.data.splits import match_split
from facedet.errors import ConfigError, DataError

PathLike = str | os.PathLike


# --------------------------------------------------------------------------- common


def _measure(image_path: Path, stats: ReadStats, skip_bad_images: bool) -> tuple[int, int] | None:
    """(width, height) of an image, or None (counted in stats) when skipping bad images."""
    try:
        return image_size(image_path)
    except DataError:
        if not skip_bad_images:
            raise
        stats.skipped_images.append(image_path)
        return None


def _make_record(
    image_path: Path,
    size: tuple[int, int],
    boxes_xyxy: np.ndarray,
    labels: np.ndarray,
    difficult: np.ndarray,
    where: str,
    stats: ReadStats,
) -> Record:
    """Sanitize (N, 4) "xyxy" pixel boxes and pack one Record with the surviving ones."""
    width, height = size
    sanitized = sanitize_boxes(boxes_xyxy, width, height, where)
    stats.add(sanitized)
    keep = sanitized.keep
    return Record(
        image_path=image_path,
        width=width,
        height=height,
        boxes=sanitized.boxes[keep],
        labels=torch.as_tensor(labels, dtype=torch.int64).reshape(-1)[keep],
        difficult=torch.as_tensor(difficult, dtype=torch.bool).reshape(-1)[keep],
    )


def _number_table(rows: list[tuple[int, list[str]]], path: Path, expected: str) -> np.ndarray:
    """Whitespace-split lines, all of the same length -> (N, K) float64 in one call.

    `rows` holds (line number, tokens). Only when numpy refuses the whole table do we
    look line by line for the first bad one, to name it in the error.
    """
    if not rows:
        return np.zeros((0, len(expected.split())), dtype=np.float64)
    try:
        return np.array([tokens for _, tokens in rows], dtype=np.float64)
    except ValueError:
        for line_number, tokens in rows:
            try:
                [float(token) for token in tokens]
            except ValueError:
                raise _line_error(path, line_number, expected, tokens) from None
        raise


def _line_error(path: Path, line_number: int, expected: str, tokens: list[str]) -> DataError:
    count = len(expected.split())
    got = " ".join(tokens)
    return DataError(f"{path}:{line_number}: expected '{expected}' with {count} numbers, got '{got}'")


def _numbered_lines(path: Path) -> list[tuple[int, list[str]]]:
    """(1-based line number, whitespace tokens) of every non-blank line of a text file."""
    try:
        text = path.read_text(encoding="utf-8-sig")  # -sig: tolerate a byte-order mark
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read label file ({error})") from None
    return [(number, line.split()) for number, line in enumerate(text.splitlines(), 1) if line.strip()]


# --------------------------------------------------------------------------- YOLO


def read_yolo(
    root: PathLike,
    split: str | None,
    names: Sequence[str] | None = None,
    skip_bad_images: bool = False,
) -> list[Record]:
    """Read an ultralytics-layout YOLO data set.

    root: a folder (with or without data.yaml) or the data.yaml itself. With a yaml,
          its `<split>:` key gives the image folders; without, `root/images/<split>`
          or Roboflow's `root/<split>/images` (see `layouts.yolo_sources`; "val" also
          finds "valid"). split=None: the one `root/images` of a set without splits.
    Each image `.../images/<split>/x.jpg` has labels in `.../labels/<split>/x.txt`:
    one line `class cx cy w h` per box, fractions of the upright (EXIF-turned) image.
    A missing or empty label file is an image without objects (a background image);
    when no image of the split has a label file, the warning says where they were
    looked for (usually a misplaced labels/ folder).
    names: class names; when given (or found in data.yaml) class ids must be below
           len(names). The Records carry only label ids.
    """
    root = Path(root)
    sources, data = yolo_sources(root, split)
    if data is not None:
        names = names if names is not None else data.names
        stats = ReadStats(name=data.root.resolve().name)
    else:
        stats = ReadStats(name=root.resolve().name)

    num_classes = len(names) if names is not None else None
    records, labelled = [], False
    for image_path in _list_images(sources):
        size = _measure(image_path, stats, skip_bad_images)
        if size is None:
            continue
        label_path = yolo_label_path(image_path)
        labelled = labelled or label_path.is_file()
        labels, boxes_cxcywh = _read_yolo_labels(label_path, num_classes)  # (N,), (N, 4) fractions
        width, height = size
        centres, sides = boxes_cxcywh[:, :2], boxes_cxcywh[:, 2:]
        scale = np.array([width, height, width, height], dtype=np.float64)
        boxes_xyxy = np.concatenate([centres - sides / 2, centres + sides / 2], axis=1) * scale  # (N, 4)
        difficult = np.zeros(len(labels), dtype=bool)
        records.append(_make_record(image_path, size, boxes_xyxy, labels, difficult, str(label_path), stats))
    if records and not labelled:  # background images lack label files, but not all of them
        stats.no_label_files = yolo_label_path(records[0].image_path).parent
    stats.warn()
    return records


def yolo_label_path(image_path: Path) -> Path:
    """The ultralytics rule: the last `images` folder becomes `labels`, suffix `.txt`."""
    parts = list(image_path.parts)
    if "images" in parts:
        last = len(parts) - 1 - parts[::-1].index("images")
        parts[last] = "labels"
    return Path(*parts).with_suffix(".txt")


def _list_images(sources: list[Path]) -> list[Path]:
    """Image files in the given folders (sorted) or listed in .txt files (in file order)."""
    images = []
    for source in sources:
        if source.is_dir():
            images += sorted(p for p in source.iterdir() if is_image(p))
        elif source.suffix == ".txt" and source.is_file():
            lines = source.read_text(encoding="utf-8").split()
            images += [source.parent / line for line in lines]
        else:
            raise DataError(f"{source}: no such image folder")
    return images


# Without class names any integer id >= 0 is accepted, up to this one: far more classes
# than any data set has, and every id below it converts exactly to the int64 labels
# (1e300 would wrap around to a negative label).
MAX_CLASS_ID = 2**31 - 1


def _read_yolo_labels(label_path: Path, num_classes: int | None) -> tuple[np.ndarray, np.ndarray]:
    """One YOLO label file -> (labels (N,) int64, boxes (N, 4) "cxcywh" fractions)."""
    if not label_path.is_file():
        return np.zeros(0, dtype=np.int64), np.zeros((0, 4))
    expected = "class cx cy w h"
    rows = _numbered_lines(label_path)
    for line_number, tokens in rows:
        if len(tokens) != 5:
            raise _line_error(label_path, line_number, expected, tokens)
    table = _number_table(rows, label_path, expected)  # (N, 5)

    classes = table[:, 0]
    bad_class = (classes != np.round(classes)) | (classes < 0)
    bad_class |= classes >= (num_classes if num_classes is not None else MAX_CLASS_ID + 1)
    bad = bad_class | ~np.isfinite(table).all(axis=1)
    if bad.any():
        line_number, tokens = rows[int(np.argmax(bad))]
        if bad_class.any() and bad_class[int(np.argmax(bad))]:
            known = f"0..{num_classes - 1}" if num_classes is not None else f"0..{MAX_CLASS_ID}"
            raise DataError(f"{label_path}:{line_number}: class id '{tokens[0]}' is not in {known}")
        raise DataError(f"{label_path}:{line_number}: non-finite number in '{' '.join(tokens)}'")
    return classes.astype(np.int64), table[:, 1:]


# --------------------------------------------------------------------------- Pascal VOC


def voc_class_names(roots: PathLike | Sequence[PathLike]) -> list[str]:
    """Every object name used in the Annotations/*.xml of the roots, sorted.

    Reads all annotations (not one split) so that train and val agree on the ids.
    """
    return _object_names(xml for root in _as_roots(roots) for xml in (root / "Annotations").glob("*.xml"))


def _object_names(xml_paths: Iterable[Path]) -> list[str]:
    """The sorted set of <object><name>s in these VOC files: the same ids every run, every split."""
    names = set()
    for xml_path in sorted(xml_paths):
        names.update(obj.findtext("name", "").strip() for obj in _parse_xml(xml_path).iter("object"))
    names.discard("")  # an object without a name is an error of its file, not a class
    return sorted(names)


def read_voc(
    root: PathLike | Sequence[PathLike],
    split: str | None,
    class_map: Sequence[str] | str,
    skip_bad_images: bool = False,
) -> list[Record]:
    """Read a Pascal VOC data set: one or several roots (VOC07+12), concatenated.

    Each root has Annotations/<id>.xml, JPEGImages/<id>.jpg, ImageSets/Main/<split>.txt
    (split=None reads every xml). class_map: a list of class names (label = index
    in the list) or "face", which maps every class to 0 (e.g. faces-mask's three
    mask classes are all faces). `<difficult>` is kept. Coordinates are used as
    written; VOC's 1-based pixel numbering shifts them by under a pixel.
    """
    roots = _as_roots(root)
    if isinstance(class_map, str) and class_map != "face":
        raise ConfigError(f"class_map must be a list of class names or 'face', got '{class_map}'")
    label_of = None if class_map == "face" else {name: i for i, name in enumerate(class_map)}
    stats = ReadStats(name="+".join(r.resolve().name for r in roots))
    records = []
    for voc_root in roots:
        for image_id in _voc_split_ids(voc_root, split):
            xml_path = voc_root / "Annotations" / f"{image_id}.xml"
            annotation = _parse_xml(xml_path)
            image_path = _voc_image_path(voc_root, image_id, annotation)
            size = _measure(image_path, stats, skip_bad_images)
            if size is None:
                continue
            boxes, labels, difficult = _voc_objects(annotation, xml_path, label_of)
            records.append(_make_record(image_path, size, boxes, labels, difficult, str(xml_path), stats))
    stats.warn()
    return records


def _as_roots(root: PathLike | Sequence[PathLike]) -> list[Path]:
    return [Path(root)] if isinstance(root, (str, os.PathLike)) else [Path(r) for r in root]


def _voc_split_ids(voc_root: Path, split: str | None) -> list[str]:
    if split is None:
        return sorted(p.stem for p in (voc_root / "Annotations").glob("*.xml"))
    split_file = voc_root / "ImageSets" / "Main" / f"{split}.txt"
    if not split_file.is_file():
        available = sorted(p.stem for p in split_file.parent.glob("*.txt"))
        raise DataError(f"{split_file}: no such split file (available: {', '.join(available) or 'none'})")
    # Per-class split files ("aeroplane_train.txt") add a -1/0/1 column: keep the id only.
    return [line.split()[0] for line in split_file.read_text(encoding="utf-8").splitlines() if line.strip()]


def _parse_xml(xml_path: Path) -> ET.Element:
    try:
        return ET.parse(xml_path).getroot()
    except (OSError, ET.ParseError) as error:
        raise DataError(f"{xml_path}: not a readable VOC annotation ({error})") from None


def _voc_image_path(voc_root: Path, image_id: str, annotation: ET.Element) -> Path:
    """JPEGImages/<id>.jpg, else the <filename> the xml names (e.g. a .png), else <id>
    with any image suffix in any case (<id>.JPG). Missing: the .jpg path, named when read."""
    folder = voc_root / "JPEGImages"
    default = folder / f"{image_id}.jpg"
    if default.exists():
        return default
    filename = (annotation.findtext("filename") or "").strip()
    if filename and (folder / filename).exists():
        return folder / filename
    return next((folder / f"{image_id}{suffix}" for suffix in _suffix_spellings()
                 if (folder / f"{image_id}{suffix}").exists()), default)


def _suffix_spellings() -> list[str]:
    """.jpg, .JPG, .jpeg, .JPEG, .png, .PNG, ...: the names an image suffix is written with."""
    return [s for suffix in IMAGE_SUFFIXES for s in (suffix, suffix.upper())]


def read_voc_beside(
    folder: PathLike,
    class_map: Sequence[str] | str,
    skip_bad_images: bool = False,
) -> list[Record]:
    """Read VOC XML files lying beside their images: `x.jpg` + `x.xml` in one folder.

    This is what LabelImg saves, and Roboflow's "Pascal VOC" export per split folder.
    Each image (any suffix case: .JPG, .PNG) takes the .xml of the same stem; an image
    without one is read as an image without objects (LabelImg saves no file for those).
    An .xml without an image of its stem uses its <filename>; with neither it is
    counted in the warning and left out. class_map: as in `read_voc`.
    """
    folder = Path(folder)
    if isinstance(class_map, str) and class_map != "face":
        raise ConfigError(f"class_map must be a list of class names or 'face', got '{class_map}'")
    label_of = None if class_map == "face" else {name: i for i, name in enumerate(class_map)}
    stats = ReadStats(name=folder.resolve().name)
    files = sorted(folder.iterdir())
    xml_of = {p.stem: p for p in files if p.suffix.lower() == ".xml"}
    images = [p for p in files if is_image(p)]
    pairs = [(image, xml_of.get(image.stem)) for image in images]
    for xml_path in sorted(set(xml_of.values()) - {xml for _, xml in pairs}):
        filename = (_parse_xml(xml_path).findtext("filename") or "").strip()
        if filename and (folder / filename).is_file() and (folder / filename) not in images:
            pairs.append((folder / filename, xml_path))
        else:
            stats.orphan_annotations.append(xml_path)

    records = []
    for image_path, xml_path in pairs:
        size = _measure(image_path, stats, skip_bad_images)
        if size is None:
            continue
        if xml_path is None:
            boxes, labels, difficult = np.zeros((0, 4)), np.zeros(0, dtype=np.int64), np.zeros(0, dtype=bool)
        else:
            boxes, labels, difficult = _voc_objects(_parse_xml(xml_path), xml_path, label_of)
        records.append(_make_record(image_path, size, boxes, labels, difficult, str(xml_path or image_path), stats))
    stats.warn()
    return records


def _voc_objects(
    annotation: ET.Element, xml_path: Path, label_of: dict[str, int] | None
) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
    """<object> elements -> boxes (N, 4) "xyxy" pixels, labels (N,), difficult (N,)."""
    boxes, labels, difficult = [], [], []
    for index, obj in enumerate(annotation.iter("object")):
        name = obj.findtext("name", "").strip()
        if not name:
            raise DataError(f"{xml_path}: object {index} has no <name>")
        if label_of is not None and name not in label_of:
            raise DataError(f"{xml_path}: unknown class {name!r} (known: {', '.join(label_of)})")
        try:
            box = obj.find("bndbox")
            boxes.append([float(box.findtext(key)) for key in ("xmin", "ymin", "xmax", "ymax")])
            difficult.append(bool(int(float(obj.findtext("difficult") or 0))))
        except (AttributeError, TypeError, ValueError, OverflowError):  # Overflow: <difficult>inf</difficult>
            raise DataError(
                f"{xml_path}: object {index} ({name!r}) needs numeric <bndbox> xmin/ymin/xmax/ymax "
                f"and an integer <difficult>"
            ) from None
        labels.append(0 if label_of is None else label_of[name])
    return np.array(boxes, dtype=np.float64).reshape(-1, 4), np.array(labels), np.array(difficult, dtype=bool)


# --------------------------------------------------------------------------- WIDER FACE and FDDB


def read_wider(annotation_txt: PathLike, images_root: PathLike, skip_bad_images: bool = False) -> list[Record]:
    """Read WIDER FACE's wider_face_<split>_bbx_gt.txt (all faces are label 0).

    Per image: the image path (relative to images_root), the face count, then one line
    per face `x y w h blur expression illumination invalid occlusion pose` (pixels,
    top-left corner). A count of 0 is followed by one line of zeros. Faces flagged
    invalid=1 become `difficult` (ignored by the evaluator, not counted as misses).
    """
    annotation_txt, images_root = Path(annotation_txt), Path(images_root)
    expected = "x y w h blur expression illumination invalid occlusion pose"
    stats = ReadStats(name=annotation_txt.name)
    records = []
    for image_name, rows in _face_list_blocks(annotation_txt, expected):
        table = _number_table(rows, annotation_txt, expected)  # (N, 10)
        boxes_xyxy = np.concatenate([table[:, :2], table[:, :2] + table[:, 2:4]], axis=1)  # (N, 4)
        image_path = images_root / image_name
        size = _measure(image_path, stats, skip_bad_images)
        if size is not None:
            labels, difficult = np.zeros(len(table), dtype=np.int64), table[:, 7] == 1
            records.append(_make_record(image_path, size, boxes_xyxy, labels, difficult, str(annotation_txt), stats))
    stats.warn()
    return records


def read_fddb(ellipse_list_txt: PathLike, images_root: PathLike, skip_bad_images: bool = False) -> list[Record]:
    """Read an FDDB-fold-XX-ellipseList.txt (all faces are label 0).

    Per image: the path without extension (`2002/08/11/big/img_591`, image is
    `<images_root>/<path>.jpg`), the face count, then `major_r minor_r angle cx cy 1`
    per face: an ellipse with half-axes a = major_r, b = minor_r, the a-axis turned
    by `angle` radians from the x axis. Its axis-aligned bounding box has half-extents

        half_w = sqrt((a cos t)^2 + (b sin t)^2),   half_h = sqrt((a sin t)^2 + (b cos t)^2)

    (the extremes over s of a cos s cos t - b sin s sin t and a cos s sin t + b sin s cos t).
    """
    ellipse_list_txt, images_root = Path(ellipse_list_txt), Path(images_root)
    expected = "major_r minor_r angle cx cy 1"
    stats = ReadStats(name=ellipse_list_txt.name)
    records = []
    for image_name, rows in _face_list_blocks(ellipse_list_txt, expected):
        table = _number_table(rows, ellipse_list_txt, expected)  # (N, 6)
        a, b, t, cx, cy = table[:, :5].T  # each (N,)
        half_w = np.sqrt((a * np.cos(t)) ** 2 + (b * np.sin(t)) ** 2)
        half_h = np.sqrt((a * np.sin(t)) ** 2 + (b * np.cos(t)) ** 2)
        boxes_xyxy = np.stack([cx - half_w, cy - half_h, cx + half_w, cy + half_h], axis=1)  # (N, 4)
        image_path = images_root / f"{image_name}.jpg"
        size = _measure(image_path, stats, skip_bad_images)
        if size is not None:
            labels, difficult = np.zeros(len(table), dtype=np.int64), np.zeros(len(table), dtype=bool)
            records.append(_make_record(image_path, size, boxes_xyxy, labels, difficult, str(ellipse_list_txt), stats))
    stats.warn()
    return records


def _face_list_blocks(path: Path, expected: str) -> list[tuple[str, list[tuple[int, list[str]]]]]:
    """Split a WIDER/FDDB list into (image name, [(line number, tokens)] of its faces).

    Both formats are: image line, count line, count face lines. WIDER writes a single
    all-zero face line after a count of 0; that placeholder is consumed, not returned.
    """
    lines = _numbered_lines(path)
    width = len(expected.split())
    blocks, i = [], 0
    while i < len(lines):
        _, name_tokens = lines[i]
        if i + 1 >= len(lines):
            raise DataError(f"{path}:{lines[i][0]}: image '{' '.join(name_tokens)}' has no face count line")
        count_line, count_tokens = lines[i + 1]
        # isdecimal, not isdigit: int() refuses digits such as "²" that isdigit accepts
        if len(count_tokens) != 1 or not count_tokens[0].isdecimal():
            raise DataError(f"{path}:{count_line}: expected the number of faces, got '{' '.join(count_tokens)}'")
        count = int(count_tokens[0])
        rows = lines[i + 2 : i + 2 + count]
        if len(rows) < count:
            raise DataError(f"{path}:{count_line}: announces {count} faces but the file ends after {len(rows)}")
        for line_number, tokens in rows:
            if len(tokens) != width:
                raise _line_error(path, line_number, expected, tokens)
        i += 2 + count
        if count == 0 and i < len(lines) and len(lines[i][1]) == width and _all_zero(lines[i][1]):
            i += 1
        blocks.append((" ".join(name_tokens), rows))
    return blocks


def _all_zero(tokens: list[str]) -> bool:
    try:
        return all(float(token) == 0 for token in tokens)
    except ValueError:
        return False


# --------------------------------------------------------------------------- COCO


def read_coco(
    json_path: PathLike, images_roots: PathLike | Sequence[PathLike], skip_bad_images: bool = False
) -> tuple[list[Record], list[str]]:
    """Read a COCO instances JSON -> (records, class names).

    bbox [x, y, w, h] (top-left corner, pixels) becomes "xyxy"; iscrowd=1 regions become
    `difficult`. COCO category ids have gaps (1..90 for 80 classes); labels are their
    ranks in sorted id order, so names[label] is the category name. Images without
    annotations are kept with zero boxes.

    images_roots: the folder each `file_name` is relative to, or several to try in turn
    (CVAT writes "images/x.jpg" or "sub/x.jpg", Label Studio "images/x.jpg"): each image
    is the first that exists of root/file_name, then root/<file_name's last part>.
    Roboflow adds one category that is no class: the project's name, supercategory
    "none", the supercategory of every other category, used by no annotation. It is
    left out.
    """
    json_path = Path(json_path)
    roots = [Path(images_roots)] if isinstance(images_roots, (str, os.PathLike)) else [Path(r) for r in images_roots]
    try:
        content = json.loads(json_path.read_text(encoding="utf-8"))
        categories = sorted(content["categories"], key=lambda c: c["id"])
        images = [(image["id"], image["file_name"]) for image in content["images"]]
        annotations = content.get("annotations", [])
        image_ids = np.array([a["image_id"] for a in annotations], dtype=np.int64)  # (A,)
        bboxes = np.array([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4)  # (A, 4) xywh
        ann_categories = np.array([a["category_id"] for a in annotations], dtype=np.int64)  # (A,)
        crowd = np.array([a.get("iscrowd", 0) for a in annotations], dtype=bool)  # (A,)
        categories = _without_project_category(categories, set(ann_categories.tolist()))
        names = [str(c["name"]) for c in categories]
        category_ids = np.array([c["id"] for c in categories], dtype=np.int64)  # sorted (C,)
    except (OSError, ValueError, KeyError, TypeError) as error:
        reason = f"missing key {error}" if isinstance(error, KeyError) else str(error).splitlines()[0]
        raise DataError(f"{json_path}: not a readable COCO instances file ({reason})") from None

    unknown = ~np.isin(ann_categories, category_ids)
    if unknown.any():
        raise DataError(f"{json_path}: annotation category_id {ann_categories[unknown][0]} is not in categories")
    labels = np.searchsorted(category_ids, ann_categories)  # (A,) rank of each category id
    boxes_xyxy = np.concatenate([bboxes[:, :2], bboxes[:, :2] + bboxes[:, 2:]], axis=1)  # (A, 4)

    # Group annotations by image with one sort: image k's rows are order[start[k]:end[k]].
    order = np.argsort(image_ids, kind="stable")
    sorted_ids = image_ids[order]
    stats = ReadStats(name=json_path.name)
    records = []
    for image_id, file_name in images:
        image_path = _coco_image_path(str(file_name), roots)
        size = _measure(image_path, stats, skip_bad_images)
        if size is None:
            continue
        start, end = np.searchsorted(sorted_ids, [image_id, image_id + 1])
        rows = order[start:end]
        records.append(
            _make_record(image_path, size, boxes_xyxy[rows], labels[rows], crowd[rows], str(json_path), stats)
        )
    stats.warn()
    return records, names


def _without_project_category(categories: list[dict], used: set[int]) -> list[dict]:
    """Leave out Roboflow's project category (see read_coco); any other list is returned as is."""
    if len(categories) < 2:
        return categories
    first, rest = categories[0], categories[1:]
    is_project = (
        first.get("supercategory") == "none"
        and all(c.get("supercategory") == first["name"] for c in rest)
        and first["id"] not in used
    )
    return rest if is_project else categories


def _coco_image_path(file_name: str, roots: list[Path]) -> Path:
    """The first existing root/file_name, then root/<last part>; else roots[0]/file_name (named when read)."""
    name = file_name.replace("\\", "/")  # written on Windows
    for candidate in [root / name for root in roots] + [root / Path(name).name for root in roots]:
        if candidate.is_file():
            return candidate
    return roots[0] / name if roots else Path(name)


# --------------------------------------------------------------------------- any format


def read_dataset(
    root: PathLike,
    split: str | None,
    fmt: str = "auto",
    classes: Sequence[str] | str | None = None,
    skip_bad_images: bool = False,
) -> tuple[list[Record], list[str]]:
    """Read any supported data set -> (records, class_names), names[label] naming each label.

    fmt: "auto" (see `detect_format`), "yolo", "voc", "coco", "wider" or "fddb".
    split: "train", "val", ... found under its usual spellings ("val" finds "valid/");
        None reads a data set that is not divided into splits (`list_splits` is []).
    classes: None (names from the data, the same every run: data.yaml's names, else
        classes.txt / obj.names in file order, else "0".."K"; every VOC <name> of every
        split, sorted; the COCO categories in id order; WIDER/FDDB are ["face"]), a list
        of names (label = index; VOC and YOLO check every object against it), or "face":
        every object becomes label 0.
    Where the files are expected, per format (see facedet.data.layouts for every layout):
        yolo   root/data.yaml `<split>:` key, or root/images/<split> + root/labels/<split>,
               or root/<split>/images + root/<split>/labels (Roboflow)
        voc    root/ImageSets/Main/<split>.txt (root may be a VOCdevkit: VOC2007 + VOC2012),
               or .xml beside the images in root/<split>/ or root/ (LabelImg, Roboflow)
        coco   root/annotations/instances_<split>.json with images in root/<split>,
               root/images/<split> or root/images; root/<split>/_annotations.coco.json
               (Roboflow); or one .json in root, or root is the .json
        wider  root/wider_face_split/wider_face_<split>_bbx_gt.txt, root/WIDER_<split>/images
        fddb   root/FDDB-folds/FDDB-fold-<NN>-ellipseList.txt (split "all" or a fold number),
               images in root/originalPics
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown data set format '{fmt}' (choose from {', '.join(FORMATS)})")
    root = Path(root)
    fmt = detect_format(root) if fmt == "auto" else fmt
    face_only = classes == "face"
    given = None if classes is None or face_only else [str(c) for c in classes]

    if fmt == "yolo":
        listed = given or yolo_names_file(root)
        records = read_yolo(root, split, names=listed, skip_bad_images=skip_bad_images)
        names = listed or _yolo_names(root, records)
    elif fmt == "voc" and (root.is_dir() and is_voc_devkit(root)):
        roots = voc_roots(root)
        names = ["face"] if face_only else given or voc_class_names(roots)
        on_disk = None if split is None else match_split(split, list_splits(root, "voc")) or split
        records = read_voc(roots, on_disk, "face" if face_only else names, skip_bad_images=skip_bad_images)
    elif fmt == "voc":
        folders = voc_xml_folders(root)
        if not folders:
            raise DataError(f"{root}: no Annotations/ folder in it or in its subfolders, and no .xml files beside "
                            "images in it or in its subfolders (LabelImg, Roboflow VOC)")
        on_disk = find_split(root, split, [name for name in folders if name], "folders of images with .xml")
        every_xml = (p for folder in folders.values() for p in folder.iterdir() if p.suffix.lower() == ".xml")
        names = ["face"] if face_only else given or _object_names(every_xml)
        records = read_voc_beside(folders[on_disk or ""], "face" if face_only else names, skip_bad_images)
    elif fmt == "coco":
        json_path, images_roots = coco_sources(root, split)
        records, names = read_coco(json_path, images_roots, skip_bad_images=skip_bad_images)
        if given is not None and given != names:
            raise DataError(f"{json_path}: classes {given} differ from the JSON categories {names}")
    elif fmt == "wider":
        split = match_split(split, list_splits(root, "wider")) or split
        annotation_txt = root / "wider_face_split" / f"wider_face_{split}_bbx_gt.txt"
        records = read_wider(annotation_txt, root / f"WIDER_{split}" / "images", skip_bad_images)
        names = ["face"]
    else:  # fddb
        folds = range(1, 11) if split == "all" else [int(split)]
        records = []
        for fold in folds:
            ellipses = root / "FDDB-folds" / f"FDDB-fold-{fold:02d}-ellipseList.txt"
            records += read_fddb(ellipses, root / "originalPics", skip_bad_images)
        names = ["face"]

    if face_only:
        for record in records:
            record.labels = torch.zeros_like(record.labels)
        names = ["face"]
    return records, names


def yolo_names_file(root: Path) -> list[str] | None:
    """Class names from data.yaml, else from classes.txt or obj.names (one per line, in
    order: what Label Studio and CVAT export beside YOLO labels), else None."""
    yaml_path = data_yaml_path(root)
    if yaml_path is not None:
        return read_data_yaml(yaml_path).names
    for names_file in (root / "classes.txt", root / "obj.names"):
        if root.is_dir() and names_file.is_file():
            lines = [line.strip() for line in _read_names_text(names_file).splitlines()]
            return [line for line in lines if line]
    return None


def _read_names_text(path: Path) -> str:
    try:
        return path.read_text(encoding="utf-8-sig")
    except (OSError, UnicodeDecodeError) as error:
        raise DataError(f"{path}: cannot read class names ({error})") from None


def _yolo_names(root: Path, records: list[Record]) -> list[str]:
    """No names anywhere: "0", "1", ... up to the largest label used."""
    largest = max((int(r.labels.max()) for r in records if len(r.labels)), default=-1)
    return [str(i) for i in range(largest + 1)]
