"""Readers: annotation files on disk -> list[Record].

One function per format, all with the same result: a list of `Record`s whose boxes
are float32 "xyxy" pixels of the upright (EXIF-turned) image, labels 0-based.

    read_yolo(root, split, names)             ultralytics: images/<split>, labels/<split>, data.yaml
    read_voc(root, split, class_map)          Pascal VOC: Annotations/*.xml, ImageSets/Main/<split>.txt
    read_wider(annotation_txt, images_root)   WIDER FACE wider_face_<split>_bbx_gt.txt
    read_fddb(ellipse_list_txt, images_root)  FDDB-fold-XX-ellipseList.txt
    read_coco(json_path, images_root)         COCO instances JSON (also returns class names)
    read_dataset(root, split, fmt="auto")     detects the format, returns (records, class_names)

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
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch
import yaml

from facedet.data.images import image_size
from facedet.data.labels import ReadStats, sanitize_boxes
from facedet.data.record import Record
from facedet.errors import ConfigError, DataError

PathLike = str | os.PathLike
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".webp", ".tif", ".tiff")
FORMATS = ("auto", "yolo", "voc", "coco", "wider", "fddb")


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


@dataclass
class DataYaml:
    """The parts of an ultralytics data.yaml that facedet uses."""

    root: Path  # the `path:` key, resolved against the yaml's folder
    splits: dict[str, list[Path]]  # "train"/"val"/"test" -> image folders or image-list .txt files
    names: list[str] | None  # class names in label order, None if the yaml has none


def read_data_yaml(path: PathLike) -> DataYaml:
    """Parse an ultralytics data.yaml.

    `names` may be a list (["face"]) or a dict {0: "face"} whose ids must be 0..n-1.
    `train`/`val`/`test` are folders (or lists of them, or .txt lists of images)
    relative to `path`, which itself is relative to the yaml's folder.
    """
    path = Path(path)
    try:
        content = yaml.safe_load(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError) as error:
        raise DataError(f"{path}: cannot read data yaml ({str(error).splitlines()[0]})") from None
    if not isinstance(content, dict):
        raise DataError(f"{path}: expected a mapping with keys path/train/val/names, got {type(content).__name__}")

    root_value = content.get("path") or "."
    if not _is_name(root_value):
        raise DataError(f"{path}: 'path' must be a folder, got {root_value!r}")
    root = Path(str(root_value))
    root = root if root.is_absolute() else path.parent / root
    splits = {}
    for split in ("train", "val", "test"):
        value = content.get(split)
        if value:
            folders = value if isinstance(value, list) else [value]
            if not all(_is_name(folder) for folder in folders):
                raise DataError(f"{path}: '{split}' must be a folder, an image list .txt or a list of them, got {value!r}")
            splits[split] = [root / str(folder) for folder in folders]
    return DataYaml(root=root, splits=splits, names=_yaml_names(content, path))


def _is_name(value: object) -> bool:
    """A folder or file name as YAML reads it: text, or a number such as 2007."""
    return isinstance(value, (str, int, float)) and not isinstance(value, bool)


def _yaml_names(content: dict, path: Path) -> list[str] | None:
    count = content.get("nc")
    if count is not None and (isinstance(count, bool) or not isinstance(count, int) or count < 0):
        raise DataError(f"{path}: 'nc' must be an integer, got {count!r}")
    names = content.get("names")
    if names is None:
        return [str(i) for i in range(count)] if count is not None else None
    if isinstance(names, dict):
        ids = sorted(names)
        if ids != list(range(len(ids))):
            raise DataError(f"{path}: names ids must be 0..{len(ids) - 1} without gaps, got {ids}")
        names = [names[i] for i in ids]
    if not isinstance(names, list):
        raise DataError(f"{path}: names must be a list or an {{id: name}} mapping, got {names!r}")
    if count is not None and count != len(names):
        raise DataError(f"{path}: nc is {count} but names lists {len(names)} classes")
    return [str(name) for name in names]


def read_yolo(
    root: PathLike,
    split: str,
    names: Sequence[str] | None = None,
    skip_bad_images: bool = False,
) -> list[Record]:
    """Read an ultralytics-layout YOLO data set.

    root: a folder (with or without data.yaml) or the data.yaml itself. With a yaml,
          its `<split>:` key gives the image folders; without, `root/images/<split>`.
    Each image `.../images/<split>/x.jpg` has labels in `.../labels/<split>/x.txt`:
    one line `class cx cy w h` per box, fractions of the upright (EXIF-turned) image.
    A missing or empty label file is an image without objects (a background image);
    when no image of the split has a label file, the warning says where they were
    looked for (usually a misplaced labels/ folder).
    names: class names; when given (or found in data.yaml) class ids must be below
           len(names). The Records carry only label ids.
    """
    root = Path(root)
    yaml_path = root if root.suffix in (".yaml", ".yml") else root / "data.yaml"
    if yaml_path.is_file():
        data = read_data_yaml(yaml_path)
        if split not in data.splits:
            raise DataError(f"{yaml_path}: no '{split}:' key (splits: {', '.join(data.splits) or 'none'})")
        sources = data.splits[split]
        names = names if names is not None else data.names
        stats = ReadStats(name=data.root.resolve().name)
    else:
        sources = [root / "images" / split]
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
            images += sorted(p for p in source.iterdir() if p.suffix.lower() in IMAGE_SUFFIXES)
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


def voc_roots(devkit: PathLike) -> list[Path]:
    """The VOC year folders to read together, e.g. VOCdevkit -> [VOC2007, VOC2012].

    A folder that has Annotations/ itself is returned alone. Pass the result as
    `read_voc(voc_roots("VOCdevkit"), "trainval", VOC_CLASSES)` for "VOC07+12".
    """
    devkit = Path(devkit)
    if (devkit / "Annotations").is_dir():
        return [devkit]
    roots = sorted(p for p in devkit.iterdir() if (p / "Annotations").is_dir()) if devkit.is_dir() else []
    if not roots:
        raise DataError(f"{devkit}: no Annotations/ folder in it or in its subfolders")
    return roots


def voc_class_names(roots: PathLike | Sequence[PathLike]) -> list[str]:
    """Every object name used in the Annotations/*.xml of the roots, sorted.

    Reads all annotations (not one split) so that train and val agree on the ids.
    """
    names = set()
    for root in _as_roots(roots):
        for xml_path in sorted((root / "Annotations").glob("*.xml")):
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
    """JPEGImages/<id>.jpg, else the <filename> the xml names (e.g. a .png)."""
    default = voc_root / "JPEGImages" / f"{image_id}.jpg"
    filename = (annotation.findtext("filename") or "").strip()
    if not default.exists() and filename and (voc_root / "JPEGImages" / filename).exists():
        return voc_root / "JPEGImages" / filename
    return default


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
    json_path: PathLike, images_root: PathLike, skip_bad_images: bool = False
) -> tuple[list[Record], list[str]]:
    """Read a COCO instances JSON -> (records, class names).

    bbox [x, y, w, h] (top-left corner, pixels) becomes "xyxy"; iscrowd=1 regions become
    `difficult`. COCO category ids have gaps (1..90 for 80 classes); labels are their
    ranks in sorted id order, so names[label] is the category name. Images without
    annotations are kept with zero boxes.
    """
    json_path, images_root = Path(json_path), Path(images_root)
    try:
        content = json.loads(json_path.read_text(encoding="utf-8"))
        categories = sorted(content["categories"], key=lambda c: c["id"])
        images = [(image["id"], image["file_name"]) for image in content["images"]]
        annotations = content.get("annotations", [])
        names = [str(c["name"]) for c in categories]
        category_ids = np.array([c["id"] for c in categories], dtype=np.int64)  # sorted (C,)
        image_ids = np.array([a["image_id"] for a in annotations], dtype=np.int64)  # (A,)
        bboxes = np.array([a["bbox"] for a in annotations], dtype=np.float64).reshape(-1, 4)  # (A, 4) xywh
        ann_categories = np.array([a["category_id"] for a in annotations], dtype=np.int64)  # (A,)
        crowd = np.array([a.get("iscrowd", 0) for a in annotations], dtype=bool)  # (A,)
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
        image_path = images_root / file_name
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


# --------------------------------------------------------------------------- any format


def detect_format(root: PathLike) -> str:
    """Guess a data set's format from its files: "yolo", "voc", "coco", "wider" or "fddb".

    data.yaml or images/ + labels/ -> yolo; Annotations/ (or VOC20xx/Annotations/) -> voc;
    a .json file or annotations/*.json -> coco; wider_face_split/ -> wider; FDDB-folds/ -> fddb.
    """
    root = Path(root)
    if root.is_file():
        if root.suffix in (".yaml", ".yml"):
            return "yolo"
        if root.suffix == ".json":
            return "coco"
    elif root.is_dir():
        if (root / "data.yaml").is_file() or ((root / "images").is_dir() and (root / "labels").is_dir()):
            return "yolo"
        if (root / "Annotations").is_dir() or any((p / "Annotations").is_dir() for p in root.iterdir()):
            return "voc"
        if any((root / "annotations").glob("*.json")):
            return "coco"
        if (root / "wider_face_split").is_dir():
            return "wider"
        if (root / "FDDB-folds").is_dir():
            return "fddb"
    raise DataError(
        f"{root}: cannot tell the data set format (looked for data.yaml, images/ + labels/, Annotations/, "
        f"annotations/*.json, wider_face_split/, FDDB-folds/); pass fmt= one of {', '.join(FORMATS[1:])}"
    )


def read_dataset(
    root: PathLike,
    split: str,
    fmt: str = "auto",
    classes: Sequence[str] | str | None = None,
    skip_bad_images: bool = False,
) -> tuple[list[Record], list[str]]:
    """Read any supported data set -> (records, class_names), names[label] naming each label.

    fmt: "auto" (see `detect_format`), "yolo", "voc", "coco", "wider" or "fddb".
    classes: None (names from the data: data.yaml, the VOC xmls sorted, the COCO
        categories; WIDER/FDDB are ["face"]), a list of names (label = index; VOC and
        YOLO check every object against it), or "face": every object becomes label 0.
    Where the files are expected, per format and split:
        yolo   root/data.yaml `<split>:` key, or root/images/<split> + root/labels/<split>
        voc    root/ImageSets/Main/<split>.txt (root may be a VOCdevkit: VOC2007 + VOC2012)
        coco   root/annotations/instances_<split>.json with images in root/<split> or
               root/images/<split>; or root is the .json, images next to it
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
        records = read_yolo(root, split, names=given, skip_bad_images=skip_bad_images)
        names = given or _yolo_names(root, records)
    elif fmt == "voc":
        roots = voc_roots(root)
        names = ["face"] if face_only else given or voc_class_names(roots)
        records = read_voc(roots, split, "face" if face_only else names, skip_bad_images=skip_bad_images)
    elif fmt == "coco":
        json_path, images_root = _coco_paths(root, split)
        records, names = read_coco(json_path, images_root, skip_bad_images=skip_bad_images)
        if given is not None and given != names:
            raise DataError(f"{json_path}: classes {given} differ from the JSON categories {names}")
    elif fmt == "wider":
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


def _yolo_names(root: Path, records: list[Record]) -> list[str]:
    """Names from data.yaml, else "0", "1", ... up to the largest label used."""
    yaml_path = root if root.suffix in (".yaml", ".yml") else root / "data.yaml"
    if yaml_path.is_file() and (names := read_data_yaml(yaml_path).names) is not None:
        return names
    largest = max((int(r.labels.max()) for r in records if len(r.labels)), default=-1)
    return [str(i) for i in range(largest + 1)]


def _coco_paths(root: Path, split: str) -> tuple[Path, Path]:
    """(instances json, images folder) of a COCO-layout folder or a json file."""
    if root.is_file():
        return root, root.parent
    json_path = root / "annotations" / f"instances_{split}.json"
    if not json_path.is_file():
        raise DataError(f"{json_path}: no such COCO annotation file")
    for images_root in (root / split, root / "images" / split):
        if images_root.is_dir():
            return json_path, images_root
    raise DataError(f"{root}: no image folder {split}/ or images/{split}/ for {json_path.name}")
