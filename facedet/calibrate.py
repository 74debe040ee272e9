"""Choose a checkpoint's default score threshold on validation data and store it in the checkpoint.

    python -m facedet.calibrate --checkpoint runs/face_default/best.pt \
        --data $FACEDET_DATA/faces-caltech --data $FACEDET_DATA/faces-mask --precision 0.9

A score threshold trades missed faces for false alarms, and a network's scores are not
probabilities of being right: where 0.5 falls depends on the model and the data. Two rules,
both read off the validation sets with the detector run exactly as `facedet.infer` runs it:

    --rule f1         the threshold of the best F1 (IoU >= 0.5 with a labelled face) over all
                      the sets' detections together: as many faces found as false alarms avoided
    --rule precision  on every set, the lowest threshold whose detections are still at least
                      `--precision` right; the highest of those, so each set keeps that precision

The checkpoint gains

    "operating_point": {"min_score", "rule", "per_set": {name: precision, recall, recall by
                        face size, the threshold of precision >= --precision on that set}}

which `facedet.load` and `facedet.infer` use as the default `min_score`.
"""
from __future__ import annotations

import argparse
from dataclasses import replace
from pathlib import Path

import torch

from facedet.checkpoint import load, load_checkpoint
from facedet.files import atomic_save
from facedet.cli import run_cli, select_device
from facedet.config import DataConfig, EvalConfig
from facedet.data.dataset import DetectionDataset, collate_photos
from facedet.data.loaders import load_records
from facedet.errors import ConfigError, DataError
from facedet.evaluation import operating_point, threshold_for_best_f1, threshold_for_precision
from facedet.models.detector import Detector
from facedet.predict import predict

RULES = ("f1", "precision")


def checkpoint_classes(detector: Detector) -> str:
    """data.classes that reads a data set with the checkpoint's own labels: "face" for a face
    detector trained so, else its class names in its order (a label means the same class in both)."""
    if detector.config is not None and detector.config.data.classes == "face":
        return "face"
    return ",".join(detector.class_names)


def validation_detections(detector: Detector, root: str, split: str, classes: str | None = None,
                          workers: int = 2, max_images: int = 0,
                          data: DataConfig | None = None) -> tuple[list[dict], list[dict]]:
    """The detector's detections and the truths of one set (its first `max_images` photos when that
    is > 0): run as infer runs it (its own NMS IoU and top_k), down to evaluation's min_score
    (EvalConfig's), so that every threshold above that can be read off. `classes` None reads the
    set with the checkpoint's classes; `data` gives the other data settings (format, splits,
    data.val_fraction: a set without a val split holds out what training held out)."""
    classes = checkpoint_classes(detector) if classes is None else classes
    try:
        records, names = load_records(replace(data or DataConfig(), root=root, classes=classes), split)
    except DataError as err:
        if classes in ("", "face"):
            raise
        raise DataError(f"{err}; the checkpoint's classes are {', '.join(detector.class_names)}: calibrate on data "
                        "labelled with them, or pass --classes face to read every box as a face") from None
    if max_images > 0:
        records = records[:max_images]
    if len(names) != len(detector.class_names):
        fix = ("pass --classes face to read every box as its one class" if len(detector.class_names) == 1 else
               f"calibrate on data labelled with its classes, or pass --classes {','.join(detector.class_names)} "
               "to read them by name")
        raise ConfigError(f"{root}: the data has classes {names}, the checkpoint {detector.class_names}; {fix}")
    loader = torch.utils.data.DataLoader(DetectionDataset(records), batch_size=8, num_workers=workers,
                                         collate_fn=collate_photos)
    settings = EvalConfig(nms_iou=detector.nms_iou, top_k=detector.top_k)
    return predict(detector, loader, settings, desc=f"detect {Path(root).name}")


def set_labels(folders: list[str]) -> list[str]:
    """A readable name per data set folder, distinct: the fewest trailing path parts that tell
    the folders apart (/d/faces-caltech, /d/faces-mask -> faces-caltech, faces-mask;
    /x/a/val, /x/b/val -> a/val, b/val). The folders must be distinct."""
    parts = [Path(folder).parts for folder in folders]
    labels = []
    for own in parts:
        depth = 1
        while depth < len(own) and any(other != own and other[-depth:] == own[-depth:] for other in parts):
            depth += 1
        labels.append("/".join(own[-depth:]))
    return labels


def calibrate(detector: Detector, roots: list[str], split: str = "val", classes: str | None = None,
              precision: float = 0.9, workers: int = 2, rule: str = "f1", max_images: int = 0,
              data: DataConfig | None = None) -> dict:
    """The operating point (see the module docstring) as the dict stored in checkpoints; `classes`
    and `data` as in `validation_detections` (None: the checkpoint's classes, DataConfig's defaults)."""
    if rule not in RULES:
        raise ConfigError(f"--rule {rule!r}: expected one of {', '.join(RULES)}")
    folders = list(dict.fromkeys(str(Path(root).resolve()) for root in roots))  # a folder given twice is one set
    found = {label: validation_detections(detector, root, split, classes, workers, max_images, data)
             for label, root in zip(set_labels(folders), folders)}
    num_classes = len(detector.class_names)
    per_set_threshold = {name: threshold_for_precision(dets, truths, num_classes, precision)
                         for name, (dets, truths) in found.items()}
    if rule == "precision":
        min_score = max(per_set_threshold.values())
        how = f"lowest score with precision >= {precision:g} at IoU 0.5 on each of {' and '.join(found)} {split}"
    else:
        all_dets = [d for dets, _ in found.values() for d in dets]
        all_truths = [t for _, truths in found.values() for t in truths]
        min_score = threshold_for_best_f1(all_dets, all_truths, num_classes)
        how = f"best F1 at IoU 0.5 on {' and '.join(found)} {split} together"
    per_set = {}
    for name, (dets, truths) in found.items():
        point = operating_point(dets, truths, num_classes, min_score)
        per_set[name] = {**point.as_dict(), f"threshold_for_precision_{precision:g}": per_set_threshold[name],
                         "images": len(dets)}
    return {"min_score": float(min_score), "rule": how, "precision_target": precision,
            "max_size": detector.max_size, "per_set": per_set}


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m facedet.calibrate",
        description="Choose a checkpoint's default min score on validation data (the best F1 over the --data "
        "sets, or the lowest threshold that keeps --precision on every set) and store it in the checkpoint; "
        "facedet.infer and facedet.load then use it.",
        epilog="Example: python -m facedet.calibrate --checkpoint runs/face_default/best.pt "
        "--data $FACEDET_DATA/faces-caltech --data $FACEDET_DATA/faces-mask",
    )
    parser.add_argument("--checkpoint", required=True, help="the facedet checkpoint to calibrate")
    parser.add_argument("--data", action="append", required=True, metavar="FOLDER",
                        help="a validation data set folder; repeat for several (each must keep the precision)")
    parser.add_argument("--split", default="val", help="split to calibrate on (default val)")
    parser.add_argument("--classes", help="data.classes for reading the sets (default: the checkpoint's own: "
                        "face for a face detector, else its class names)")
    parser.add_argument("--rule", choices=RULES, default="f1",
                        help="f1: the best F1 over the sets together (default); precision: the lowest threshold "
                        "that keeps --precision on every set")
    parser.add_argument("--precision", type=float, default=0.9,
                        help="precision to keep with --rule precision, and reported per set with either (default 0.9)")
    parser.add_argument("--max-images", type=int, default=0,
                        help="use the first N photos of each set (0 = all): the sliding window scans ~2 s per photo")
    parser.add_argument("--out", help="write the calibrated checkpoint here (default: replace --checkpoint)")
    parser.add_argument("--workers", type=int, default=2, help="data-loading workers (default 2)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    if not 0.0 < args.precision <= 1.0:
        raise ConfigError(f"--precision {args.precision}: expected a value in (0, 1]")
    detector = load(args.checkpoint, select_device(args.device))
    # the checkpoint's data settings (format, split names, data.val_fraction) read the sets as training read its own
    point = calibrate(detector, args.data, args.split, args.classes, args.precision, args.workers, args.rule,
                      args.max_images, data=detector.config.data)
    state = load_checkpoint(args.checkpoint)
    state["operating_point"] = point
    out = Path(args.out or args.checkpoint)
    atomic_save(state, out)
    print(f"min score {point['min_score']:.4f}: {point['rule']}")
    for name, row in point["per_set"].items():
        sizes = ", ".join(f"{k} {f}/{n}" for k, (f, n) in row["recall_by_size"].items() if n)
        own = row[f"threshold_for_precision_{args.precision:g}"]
        print(f"  {name}: precision {row['precision']:.3f}, recall {row['recall']:.3f}; found by size: {sizes}; "
              f"precision >= {args.precision:g} from score {own:.3f}")
    print(f"wrote {out}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
