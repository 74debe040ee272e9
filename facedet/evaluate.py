"""Score a checkpoint with the shared evaluator: per-class AP table and a PR-curve PNG.

    python -m facedet.evaluate --checkpoint runs/yolo_face/best.pt
    python -m facedet.evaluate --checkpoint best.pt --data $FACEDET_DATA/faces-mask data.classes=face
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

from facedet.checkpoint import load
from facedet.files import atomic_write
from facedet.cli import parse_scales, parse_size, run_cli, select_device
from facedet.data.dataset import DetectionDataset, collate_photos
from facedet.data.loaders import build_loader, load_records
from facedet.errors import ConfigError
from facedet.evaluation import evaluate_detections, format_table
from facedet.plots import plot_pr_curves
from facedet.predict import predict


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m facedet.evaluate",
        description="Evaluate a detector checkpoint: VOC AP per class (all-point and VOC07 11-point), "
        "COCO AP@[.5:.95], recall at 50 false positives; saves a precision-recall PNG.",
        epilog="Without --data the checkpoint's own validation data is used. Overrides such as "
        "data.classes=face eval.min_score=0.01 eval.nms_iou=0.45 eval.max_images=100 apply on top.",
    )
    parser.add_argument("--checkpoint", required=True, help="a facedet checkpoint (.pt)")
    parser.add_argument("--data", help="dataset folder to evaluate on (default: the one it was trained on)")
    parser.add_argument("--split", help="split to evaluate (default: data.val_split)")
    parser.add_argument("--out", help="where to write pr_curve.png and metrics.json (default: beside the checkpoint)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--iou", help="VOC IoU thresholds, comma-separated, e.g. 0.5,0.3 (default: "
                        "eval.iou_thresholds, i.e. 0.5; the first one also sets recall@50FP)")
    parser.add_argument("--size", type=parse_size,
                        help="fully convolutional detectors: longer side in pixels, or 'native' "
                        "(default: the detector's own, as facedet.infer uses)")
    parser.add_argument("--scales", type=parse_scales,
                        help="fully convolutional detectors: image pyramid, e.g. 0.5,1 (default: the detector's own)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="settings on top of the checkpoint's config, e.g. data.classes=face eval.max_images=100")
    return parser.parse_args(argv)


def pr_title(model: str, root: str, split: str) -> str:
    """The PR curve's title: the model, the data and the split it was scored on."""
    return f"{model} on {root or 'synthetic'}, {split} split"


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    overrides = ([f"data.root={args.data}"] if args.data else []) + args.overrides
    if args.iou:
        overrides.append(f"eval.iou_thresholds=[{args.iou}]")
    device = select_device(args.device)
    detector = load(args.checkpoint, device, overrides)
    cfg, class_names = detector.config, detector.class_names
    split = args.split or cfg.data.val_split
    records, names = load_records(cfg.data, split)
    if len(names) != len(class_names):
        raise ConfigError(
            f"the data has {len(names)} classes ({', '.join(names)}) but the checkpoint predicts "
            f"{len(class_names)} ({', '.join(class_names)}); add data.classes=face for face data"
        )
    dataset = DetectionDataset(records, skip_bad_images=cfg.data.skip_bad_images)
    loader = build_loader(dataset, cfg, train=False, device=device, collate_fn=collate_photos)
    detections, truths = predict(detector, loader, cfg.eval, desc="evaluate", size=args.size, scales=args.scales)
    result = evaluate_detections(detections, truths, class_names, iou_thresholds=cfg.eval.iou_thresholds,
                                 use_07_metric=cfg.eval.use_07_metric, voc_rule=cfg.eval.voc_rule)
    print(format_table(result))
    out = Path(args.out) if args.out else Path(args.checkpoint).parent
    out.mkdir(parents=True, exist_ok=True)
    plot_pr_curves(result.pr_curves(), out / "pr_curve.png", title=pr_title(cfg.model.name, cfg.data.root, split))
    text = json.dumps(result.as_dict(), indent=1)
    atomic_write(out / "metrics.json", lambda file: file.write(text.encode()))
    print(f"wrote {out / 'pr_curve.png'} and {out / 'metrics.json'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
