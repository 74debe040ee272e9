"""Detect faces (or any trained classes) in images.

    python -m facedet.infer photo.jpg
    python -m facedet.infer photos/ --size native --scales 0.5,1,2 --json out.json
    python -m facedet.infer photos/ --checkpoint runs/yolo_face/best.pt --json out.json --save-dir annotated/

Writes annotated copies of the images and a JSON mapping each image path to its boxes
`[x1, y1, x2, y2, score, label, name]` in pixels of the original image.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from PIL import Image, ImageDraw
from tqdm import tqdm

from facedet.checkpoint import SHIPPED_CHECKPOINT, load
from facedet.files import atomic_write
from facedet.cli import parse_scales, parse_size, run_cli, select_device
from facedet.data.images import IMAGE_SUFFIXES, collect_images, load_image
from facedet.errors import DataError
from facedet.models.detector import DEFAULT_TILE, Detections, Detector


def write_json(text: str, dest: str) -> None:
    """`text` to standard output ("-"), through a symlink or into a special file (/dev/stdout,
    a pipe) as it is, or to a regular file atomically (a kill never leaves half a JSON)."""
    if dest == "-":
        sys.stdout.write(text + "\n")
        sys.stdout.flush()
        return
    path = Path(dest)
    if path.is_symlink() or (path.exists() and not path.is_file()):
        try:
            with open(path, "w", encoding="utf-8") as file:  # follows the link; never replaces it
                file.write(text + "\n")
        except OSError as err:
            raise DataError(f"{path}: cannot write the JSON ({err.strerror or err})") from None
        return
    atomic_write(path, lambda file: file.write(text.encode()))


def draw(image: Image.Image, det: Detections) -> Image.Image:
    """A copy of `image` with boxes and "name score" captions."""
    out = image.copy()
    pen = ImageDraw.Draw(out)
    width = max(2, round(min(image.size) / 200))
    for box, score, name in zip(det.boxes.tolist(), det.scores.tolist(), det.names):
        pen.rectangle(box, outline=(0, 255, 0), width=width)
        caption = f"{name} {score:.2f}"
        x, y = box[0], max(0, box[1] - 12)
        pen.rectangle(pen.textbbox((x, y), caption), fill=(0, 255, 0))
        pen.text((x, y), caption, fill=(0, 0, 0))
    return out


def describe(detector: Detector, min_score: float | None, nms_iou: float | None = None,
             size: int | None = None) -> str:
    """One line: which checkpoint, which model, which threshold and where it comes from."""
    if min_score is not None:
        why = "from --min-score"
    elif detector.calibration:
        why = f"calibrated: {detector.calibration.get('rule', 'on validation data')}"
    else:
        why = "the rung's own; this checkpoint stores no calibrated threshold"
    score = detector.min_score if min_score is None else min_score
    how = {"fixed": f"input {detector.image_size}x{detector.image_size}",
           "whole": "scans the whole photo itself, window by window",
           "scalable": (f"photos resized to {size} px" if size  # parse_size: native is 0
                        else "photos at their own size" if size == 0 or not detector.max_size
                        else f"photos at their own size up to {detector.max_size} px")}[detector.input_policy]
    return (f"checkpoint {detector.source} ({detector.config.model.name}, {how}); min score {score:g} ({why}); "
            f"NMS IoU {detector.nms_iou if nms_iou is None else nms_iou:g}")


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m facedet.infer",
        description="Detect faces (or the classes a checkpoint was trained on) in images. Writes annotated "
        "copies of the images and, with --json, each image's boxes [x1, y1, x2, y2, score, label, name] in pixels.",
        epilog="Examples: python -m facedet.infer photo.jpg  |  python -m facedet.infer photos/ --size native "
        "--scales 0.5,1,2 --json boxes.json  |  python -m facedet.infer runs/demo.jpg --checkpoint runs/quickstart/best.pt",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or directories")
    parser.add_argument("--checkpoint", help="a facedet checkpoint file, or a shipped detector's name (default: "
                        f"the shipped face detector, {SHIPPED_CHECKPOINT.stem}; python -c 'import facedet; "
                        "print(facedet.list_detectors())' lists them)")
    parser.add_argument("--json", metavar="OUT", help="write {image path: [[x1, y1, x2, y2, score, label, name], ...]}; "
                        "'-' writes it to standard output (every other message then goes to standard error)")
    parser.add_argument("--save-dir", metavar="DIR", default="runs/detections",
                        help="annotated images go here (default: runs/detections/, beside the training runs)")
    parser.add_argument("--no-save", action="store_true", help="do not write annotated images")
    # every flag below defaults to None: the checkpoint's or its rung's own setting (facedet.load's)
    parser.add_argument("--min-score", type=float,
                        help="keep detections scoring at least this (default: the checkpoint's calibrated "
                        "operating point, or its rung's own when it stores none)")
    parser.add_argument("--size", type=parse_size,
                        help="fully convolutional detectors: resize the photo's longer side to this many pixels "
                        "(up or down), or 'native' to keep its resolution (default: native, shrunk to the "
                        "detector's max size when longer: 640 px for the shipped one). Fixed-input rungs "
                        "(grid, YOLO-face, SSD300) always use their own input size")
    parser.add_argument("--scales", type=parse_scales,
                        help="image pyramid: factors of --size, detections merged by NMS, e.g. 0.5,1,2 "
                        "(0.5 finds faces too large for one pass, 2 faces too small; default: the detector's)")
    parser.add_argument("--tile", type=int,
                        help=f"inputs longer than this are cut into overlapping tiles (default {DEFAULT_TILE}; 0 = never)")
    parser.add_argument("--nms", type=float,
                        help="IoU above which NMS suppresses a box (default: the rung's own, as facedet.load runs it)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    log = sys.stderr if args.json == "-" else sys.stdout  # keep standard output for the JSON
    device = select_device(args.device)
    detector = load(args.checkpoint, device)
    print(describe(detector, args.min_score, args.nms, args.size), file=log)
    save_dir = None if args.no_save else Path(args.save_dir)  # made by the first annotated image written
    images = collect_images(args.paths, skip=save_dir)
    if not images:
        raise DataError(f"no images found in {', '.join(args.paths)} (image files end in "
                        f"{', '.join(sorted(IMAGE_SUFFIXES))})")
    results, failed, written = {}, 0, set()
    for path in tqdm(images, desc="detect", leave=False, mininterval=1.0, disable=True if len(images) < 10 else None):
        try:
            image = load_image(path)
        except DataError as err:
            print(f"skipped: {err}", file=sys.stderr)
            failed += 1
            continue
        det = detector(image, min_score=args.min_score, size=args.size, scales=args.scales, tile=args.tile,
                       nms_iou=args.nms)
        results[str(path)] = det.to_list()
        print(f"{path}: {len(det)} detections", file=log)
        if save_dir:
            name = f"{path.stem}_det.jpg"
            if name in written:  # same file name in two folders: keep both
                name = f"{path.stem}_{len(written)}_det.jpg"
            written.add(name)
            annotated = draw(image, det)
            atomic_write(save_dir / name, lambda file: annotated.save(file, format="JPEG", quality=92))
    if args.json:
        write_json(json.dumps(results, indent=1), args.json)
        if args.json != "-":
            print(f"wrote {args.json}", file=log)
    if save_dir and results:
        print(f"annotated images in {save_dir}/", file=log)
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
