"""Layouts: where a data set's images and annotations lie, as annotation tools write them.

The readers (facedet.data.readers) parse annotation files; this module finds them. It
answers three questions about a folder: which format it holds (`detect_format`), which
splits it has (`list_splits`), and where one split's files are (`yolo_sources`,
`voc_xml_folders`, `coco_sources`). The layouts it knows:

    yolo   data.yaml (ultralytics; Roboflow's "../train/images" too)   root/data.yaml
           images/<split>/ + labels/<split>/ (or images/ + labels/ unsplit)
           <split>/images/ + <split>/labels/ (Roboflow YOLO without its data.yaml)
    voc    VOC devkit: Annotations/, JPEGImages/, ImageSets/Main/<split>.txt (also VOC2007/ + VOC2012/)
           XML beside the images (LabelImg, Roboflow VOC): x.jpg + x.xml in root or in <split>/
    coco   annotations/instances_<split>.json (COCO, CVAT: instances_default.json) + images/
           <split>/_annotations.coco.json beside the images (Roboflow COCO)
           one .json in root (Label Studio's result.json) or the .json itself
    wider  wider_face_split/ + WIDER_<split>/images
    fddb   FDDB-folds/ + originalPics/

A split is a folder, a file or a data.yaml key; `list_splits` returns the names as they
are on disk ("valid"), and `facedet.data.splits.match_split` maps facedet's "val" to them.
A data set whose files are not divided into splits has none (`[]`): its one pool of
images is read with split=None. CVAT calls its only subset "default": that counts as
no split too.
"""
from __future__ import annotations

import os
import re
from dataclasses import dataclass
from pathlib import Path

import yaml

from facedet.data.images import is_image
from facedet.data.splits import match_split
from facedet.errors import ConfigError, DataError

PathLike = str | os.PathLike
FORMATS = ("auto", "yolo", "voc", "coco", "wider", "fddb")
UNSPLIT = ("default",)  # CVAT's name for "all the images" when no subsets were made
ROBOFLOW_COCO = "_annotations.coco.json"
LOOKED_FOR = (
    "data.yaml, images/ + labels/, <split>/images + <split>/labels, Annotations/, .xml beside the images "
    "(in the folder or in <split>/ folders), annotations/*.json, <split>/_annotations.coco.json, one *.json, "
    "wider_face_split/, FDDB-folds/"
)


def _subfolders(root: Path) -> list[Path]:
    return sorted(p for p in root.iterdir() if p.is_dir()) if root.is_dir() else []


def _has(folder: Path, suffix: str) -> bool:
    """Whether `folder` directly holds a file ending in `suffix` (any case)."""
    return folder.is_dir() and any(p.suffix.lower() == suffix for p in folder.iterdir())


def _has_images(folder: Path) -> bool:
    return folder.is_dir() and any(is_image(p) for p in folder.iterdir())


# --------------------------------------------------------------------------- which format


def detect_format(root: PathLike) -> str:
    """Guess a data set's format from its files: "yolo", "voc", "coco", "wider" or "fddb".

    The layouts are tried in the order of the module docstring, tool exports included;
    a folder that matches none is a DataError listing what was looked for.
    """
    root = Path(root)
    if root.is_file():
        if root.suffix.lower() in (".yaml", ".yml"):
            return "yolo"
        if root.suffix.lower() == ".json":
            return "coco"
    elif root.is_dir():
        folders = _subfolders(root)
        if data_yaml_path(root) is not None or ((root / "images").is_dir() and (root / "labels").is_dir()):
            return "yolo"
        if any((f / "images").is_dir() and (f / "labels").is_dir() for f in folders):
            return "yolo"
        if (root / "Annotations").is_dir() or any((f / "Annotations").is_dir() for f in folders):
            return "voc"
        if any((root / "annotations").glob("*.json")) or any((f / ROBOFLOW_COCO).is_file() for f in folders):
            return "coco"
        if (root / "wider_face_split").is_dir():
            return "wider"
        if (root / "FDDB-folds").is_dir():
            return "fddb"
        if voc_xml_folders(root):
            return "voc"
        if len(list(root.glob("*.json"))) == 1:
            return "coco"
    raise DataError(
        f"{root}: cannot tell the data set format (looked for {LOOKED_FOR}); "
        f"set data.format= one of {', '.join(FORMATS[1:])}"
    )


# --------------------------------------------------------------------------- which splits


def list_splits(root: PathLike, fmt: str = "auto") -> list[str]:
    """The splits a data set has, named as on disk (e.g. ["test", "train", "valid"]).

    [] means its images are one pool, not divided into splits (read it with split=None).
    """
    if fmt not in FORMATS:
        raise ConfigError(f"unknown data set format '{fmt}' (choose from {', '.join(FORMATS)})")
    root = Path(root)
    fmt = detect_format(root) if fmt == "auto" else fmt
    if fmt == "yolo":
        names = _yolo_splits(root)
    elif fmt == "voc":
        names = _voc_splits(root)
    elif fmt == "coco":
        names = _coco_splits(root)
    elif fmt == "wider":  # wider_face_<split>_bbx_gt.txt
        names = _matches(root / "wider_face_split", r"wider_face_(\w+)_bbx_gt\.txt")
    else:  # fddb: the folds FDDB-fold-<NN>-ellipseList.txt ("1".."10"), or all of them
        folds = [str(int(fold)) for fold in _matches(root / "FDDB-folds", r"FDDB-fold-(\d+)-ellipseList\.txt")]
        names = ["all", *folds] if folds else []
    return sorted(name for name in names if name.lower() not in UNSPLIT)


def _matches(folder: Path, pattern: str) -> list[str]:
    """The first group of `pattern` in the names of the files in `folder` that match it."""
    found = (re.fullmatch(pattern, p.name) for p in folder.iterdir()) if folder.is_dir() else ()
    return [match.group(1) for match in found if match]


def find_split(root: Path, split: str | None, available: list[str], what: str) -> str | None:
    """The on-disk name of `split` among `available`; None for the whole unsplit pool.

    A split asked of a pool that has none, or missing among the splits, is a DataError
    naming `what` was searched and the splits there are.
    """
    if split is None:
        return None
    found = match_split(split, available)
    if found is None:
        there = f"its splits are {', '.join(available)}" if available else "its images are not divided into splits"
        raise DataError(f"{root}: no '{split}' split in {what} ({there})")
    return found


# --------------------------------------------------------------------------- YOLO


@dataclass
class DataYaml:
    """The parts of an ultralytics data.yaml that facedet uses."""

    root: Path  # the `path:` key, resolved against the yaml's folder
    splits: dict[str, list[Path]]  # "train"/"val"/"test" (as the keys are written) -> image folders or .txt lists
    names: list[str] | None  # class names in label order, None if the yaml has none


DATA_YAML_SPLIT_KEYS = ("train", "val", "valid", "test")


def data_yaml_path(root: Path) -> Path | None:
    """The data.yaml of a folder (or the yaml given itself), None when there is none."""
    if root.suffix.lower() in (".yaml", ".yml") and root.is_file():
        return root
    return next((p for p in (root / "data.yaml", root / "data.yml") if p.is_file()), None)


def read_data_yaml(path: PathLike) -> DataYaml:
    """Parse an ultralytics data.yaml.

    `names` may be a list (["face"]) or a dict {0: "face"} whose ids must be 0..n-1.
    `train`/`val`/`test` are folders (or lists of them, or .txt lists of images):
    absolute, or relative to `path`, which itself is relative to the yaml's folder.
    Where such a folder does not exist, these are tried too, first found wins:
      - the same relative folder under the yaml's own folder (a `path:` written on
        another machine, e.g. /content/datasets/faces);
      - without a leading "../" (Roboflow writes `train: ../train/images` next to train/;
        ultralytics tries the same);
      - an absolute folder that does not exist: its last parts under the yaml's folder
        (/content/faces/train/images -> <yaml folder>/train/images).
    When none exists, the first candidate is kept, and reading it names it.
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
    bases = [root] if root == path.parent else [root, path.parent]
    splits = {}
    for split in DATA_YAML_SPLIT_KEYS:
        value = content.get(split)
        if value:
            folders = value if isinstance(value, list) else [value]
            if not all(_is_name(folder) for folder in folders):
                raise DataError(
                    f"{path}: '{split}' must be a folder, an image list .txt or a list of them, got {value!r}"
                )
            splits[split] = [_resolve(str(folder), bases) for folder in folders]
    return DataYaml(root=root, splits=splits, names=_yaml_names(content, path))


def _resolve(entry: str, bases: list[Path]) -> Path:
    """A data.yaml folder entry -> the first existing candidate (see read_data_yaml)."""
    given = Path(entry)
    if given.is_absolute():
        tails = [Path(*given.parts[-k:]) for k in range(len(given.parts) - 1, 0, -1)]  # longest first
        candidates = [given] + [bases[-1] / tail for tail in tails]
    else:
        candidates = [base / given for base in bases]
        if entry.startswith("../"):
            candidates += [base / entry[3:] for base in bases]
    return next((c for c in candidates if c.exists()), candidates[0])


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
        # keys are ints in YAML ({0: face}); JSON-minded writers quote them ({"0": face})
        keyed = {int(k) if isinstance(k, str) and k.isdecimal() else k: v for k, v in names.items()}
        ids = sorted(keyed, key=str) if not all(isinstance(k, int) for k in keyed) else sorted(keyed)
        if ids != list(range(len(ids))):
            raise DataError(f"{path}: names ids must be 0..{len(ids) - 1} without gaps, got {ids}")
        names = [keyed[i] for i in ids]
    if not isinstance(names, list):
        raise DataError(f"{path}: names must be a list or an {{id: name}} mapping, got {names!r}")
    if count is not None and count != len(names):
        raise DataError(f"{path}: nc is {count} but names lists {len(names)} classes")
    return [str(name) for name in names]


def _yolo_splits(root: Path) -> list[str]:
    yaml_path = data_yaml_path(root)
    if yaml_path is not None:
        return list(read_data_yaml(yaml_path).splits)
    if (root / "images").is_dir():
        return [f.name for f in _subfolders(root / "images") if _has_images(f)]
    return [f.name for f in _subfolders(root) if (f / "images").is_dir()]  # Roboflow: train/images


def yolo_sources(root: PathLike, split: str | None) -> tuple[list[Path], DataYaml | None]:
    """The image folders (or .txt image lists) of one YOLO split, and the data.yaml if any.

    split=None: the one images/ folder of a set without splits (Label Studio's export).
    """
    root = Path(root)
    yaml_path = data_yaml_path(root)
    if yaml_path is not None:
        data = read_data_yaml(yaml_path)
        key = match_split(split, list(data.splits)) if split is not None else None
        if key is None:
            raise DataError(f"{yaml_path}: no '{split}:' key (splits: {', '.join(data.splits) or 'none'})")
        return data.splits[key], data
    available = _yolo_splits(root)
    in_images = (root / "images").is_dir()
    if split is None:
        if available or not in_images:
            raise DataError(f"{root}: split=None reads one images/ folder, but this YOLO set has splits "
                            f"{', '.join(available) or 'none'}")
        return [root / "images"], None
    found = match_split(split, available) or split  # a missing one reads as "no such image folder"
    return [root / "images" / found if in_images else root / found / "images"], None


# --------------------------------------------------------------------------- Pascal VOC


def voc_roots(devkit: PathLike) -> list[Path]:
    """The VOC year folders to read together, e.g. VOCdevkit -> [VOC2007, VOC2012].

    A folder that has Annotations/ itself is returned alone. Pass the result as
    `read_voc(voc_roots("VOCdevkit"), "trainval", VOC_CLASSES)` for "VOC07+12".
    """
    devkit = Path(devkit)
    if (devkit / "Annotations").is_dir():
        return [devkit]
    roots = [p for p in _subfolders(devkit) if (p / "Annotations").is_dir()]
    if not roots:
        raise DataError(f"{devkit}: no Annotations/ folder in it or in its subfolders")
    return roots


def is_voc_devkit(root: Path) -> bool:
    return (root / "Annotations").is_dir() or any((p / "Annotations").is_dir() for p in _subfolders(root))


def voc_xml_folders(root: PathLike) -> dict[str, Path]:
    """Folders holding images with their .xml beside them (LabelImg, Roboflow VOC).

    {split name: folder} for each subfolder that has both, else {"": root} when root
    itself has both (one unsplit pool), else {}.
    """
    root = Path(root)
    split_folders = {f.name: f for f in _subfolders(root) if _has(f, ".xml") and _has_images(f)}
    if split_folders:
        return split_folders
    return {"": root} if _has(root, ".xml") and _has_images(root) else {}


def _voc_splits(root: Path) -> list[str]:
    if is_voc_devkit(root):
        per_root = []
        for voc_root in voc_roots(root):
            files = (voc_root / "ImageSets" / "Main").glob("*.txt")
            per_root.append({p.stem for p in files if "_" not in p.stem})  # "aeroplane_train" lists one class
        return sorted(set.intersection(*per_root))
    return [name for name in voc_xml_folders(root) if name]


# --------------------------------------------------------------------------- COCO


def _coco_jsons(root: Path) -> dict[str, Path]:
    """{split name: json} of annotations/instances_<split>.json, else of <split>/_annotations.coco.json."""
    jsons = {p.stem.removeprefix("instances_"): p for p in sorted((root / "annotations").glob("*.json"))}
    return jsons or {f.name: f / ROBOFLOW_COCO for f in _subfolders(root) if (f / ROBOFLOW_COCO).is_file()}


def _coco_splits(root: Path) -> list[str]:
    return [] if root.is_file() else list(_coco_jsons(root))


def coco_sources(root: PathLike, split: str | None) -> tuple[Path, list[Path]]:
    """(instances json, folders its file_names may be relative to, most likely first).

    The reader takes, image by image, the first folder where the file exists (CVAT and
    Label Studio write file_names such as "images/x.jpg" or "sub/folder/x.jpg").
    split=None: the one json of a set without splits (instances_default.json, result.json).
    """
    root = Path(root)
    if root.is_file():
        return root, [root.parent, root.parent / "images"]
    jsons = _coco_jsons(root)
    if not jsons:
        files = list(root.glob("*.json"))
        if len(files) != 1:
            raise DataError(f"{root}: no annotations/*.json, <split>/{ROBOFLOW_COCO} or single *.json (COCO layouts)")
        find_split(root, split, [], files[0].name)
        return files[0], [root, root / "images"]

    available = sorted(name for name in jsons if name.lower() not in UNSPLIT)
    if split is None:
        if available:
            raise DataError(f"{root}: split=None reads one pool, but this COCO set has splits {', '.join(available)}")
        name = next(iter(jsons))
    else:
        name = match_split(split, available) or match_split(split, list(jsons))  # "default" asked by name
        if name is None:
            raise DataError(f"{root / 'annotations' / f'instances_{split}.json'}: no such COCO annotation file "
                            f"(splits: {', '.join(available) or 'none'})")
    json_path, images = jsons[name], root / "images"
    if json_path.name == ROBOFLOW_COCO:
        candidates = [json_path.parent, root]
    else:
        candidates = [root / name, images / name, images, root]
    return json_path, [c for c in candidates if c.is_dir()] or candidates[:1]
