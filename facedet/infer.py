"""Detect faces (or any trained classes) in images.

    python -m facedet.infer photo.jpg
    python -m facedet.infer photos/ --checkpoint runs/yolo_face/best.pt --json out.json --save-dir annotated/

Writes annotated copies of the images and a JSON mapping each image path to its boxes
`[x1, y1, x2, y2, score, label]` in pixels of the original image.
"""
from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import torch
from PIL import Image, ImageDraw

from facedet.checkpoint import atomic_write, load_for_detection
from facedet.cli import run_cli, select_device
from facedet.data.dataset import image_to_tensor
from facedet.data.images import load_image
from facedet.data.loaders import inference_transforms
from facedet.errors import CheckpointError, DataError
from facedet.models.detector import Detector

IMAGE_SUFFIXES = {".jpg", ".jpeg", ".png", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# The face detector shipped with the package, used when no --checkpoint is given.
DEFAULT_CHECKPOINT = Path(__file__).resolve().parent / "weights" / "face_default.pt"
DEFAULT_MIN_SCORE = 0.5  # what a user sees: confident detections only


def collect_images(paths: list[str]) -> list[Path]:
    """Files as given; directories searched recursively for image files (sorted)."""
    images = []
    for name in paths:
        path = Path(name)
        if path.is_dir():
            images += sorted(p for p in path.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
        elif path.exists():
            images.append(path)
        else:
            raise DataError(f"{path}: no such file or directory")
    return images


@torch.no_grad()
def detect(detector: Detector, image: Image.Image, image_size: int, device: torch.device,
           min_score: float, nms_iou: float, top_k: int = 200) -> dict[str, torch.Tensor]:
    """Detections for one RGB image: "boxes" (K, 4) "xyxy" in pixels, "scores", "labels"."""
    tensor = image_to_tensor(image)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "difficult": torch.zeros(0, dtype=torch.bool)}
    inputs, _ = inference_transforms(detector, image_size)(tensor, empty)
    outputs = detector.model(inputs[None].to(device))
    det = detector.postprocess(outputs, min_score=min_score, nms_iou=nms_iou, top_k=top_k)[0]
    w, h = image.size
    scale = torch.tensor([w, h, w, h], dtype=torch.float32)
    return {"boxes": det["boxes"].float().cpu() * scale, "scores": det["scores"].float().cpu(),
            "labels": det["labels"].cpu()}


def draw(image: Image.Image, det: dict[str, torch.Tensor], class_names: list[str]) -> Image.Image:
    """A copy of `image` with boxes and "name score" captions."""
    out = image.copy()
    pen = ImageDraw.Draw(out)
    width = max(2, round(min(image.size) / 200))
    for box, score, label in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist()):
        name = class_names[label] if 0 <= label < len(class_names) else str(label)
        pen.rectangle(box, outline=(0, 255, 0), width=width)
        caption = f"{name} {score:.2f}"
        x, y = box[0], max(0, box[1] - 12)
        pen.rectangle(pen.textbbox((x, y), caption), fill=(0, 255, 0))
        pen.text((x, y), caption, fill=(0, 0, 0))
    return out


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m facedet.infer",
        description="Detect objects in images with a trained facedet checkpoint.",
        epilog="Example: python -m facedet.infer demo.jpg --checkpoint runs/quickstart/best.pt --save-dir detections",
    )
    parser.add_argument("paths", nargs="+", metavar="PATH", help="image files and/or directories")
    parser.add_argument("--checkpoint", help=f"a facedet checkpoint (default: the shipped face detector, {DEFAULT_CHECKPOINT.name})")
    parser.add_argument("--json", metavar="OUT", help="write {image path: [[x1, y1, x2, y2, score, label], ...]}")
    parser.add_argument("--save-dir", metavar="DIR", default="detections", help="annotated images go here (default: detections/)")
    parser.add_argument("--no-save", action="store_true", help="do not write annotated images")
    parser.add_argument("--min-score", type=float, default=DEFAULT_MIN_SCORE,
                        help=f"keep detections scoring at least this (default {DEFAULT_MIN_SCORE})")
    parser.add_argument("--nms", type=float, default=0.45, help="IoU above which NMS suppresses a box (default 0.45)")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N (default auto)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    checkpoint = Path(args.checkpoint) if args.checkpoint else DEFAULT_CHECKPOINT
    if not args.checkpoint and not checkpoint.exists():
        raise CheckpointError(
            f"no --checkpoint given and no shipped detector at {checkpoint}; "
            "train one (python -m facedet.train --config quickstart.yaml) and pass --checkpoint runs/quickstart/best.pt"
        )
    device = select_device(args.device)
    detector, cfg, class_names = load_for_detection(checkpoint, device)
    images = collect_images(args.paths)
    save_dir = None if args.no_save else Path(args.save_dir)  # made by the first annotated image written
    results, failed, written = {}, 0, set()
    for path in images:
        try:
            image = load_image(path)
        except DataError as err:
            print(f"skipped: {err}", file=sys.stderr)
            failed += 1
            continue
        det = detect(detector, image, cfg.model.image_size, device, args.min_score, args.nms)
        results[str(path)] = [[*(round(v, 1) for v in box), round(score, 4), label] for box, score, label
                              in zip(det["boxes"].tolist(), det["scores"].tolist(), det["labels"].tolist())]
        print(f"{path}: {len(results[str(path)])} detections")
        if save_dir:
            name = f"{path.stem}_det.jpg"
            if name in written:  # same file name in two folders: keep both
                name = f"{path.stem}_{len(written)}_det.jpg"
            written.add(name)
            annotated = draw(image, det, class_names)
            atomic_write(save_dir / name, lambda file: annotated.save(file, format="JPEG", quality=92))
    if args.json:
        text = json.dumps(results, indent=1)
        atomic_write(args.json, lambda file: file.write(text.encode()))  # never half a JSON
        print(f"wrote {args.json}")
    if save_dir and results:
        print(f"annotated images in {save_dir}/")
    return 1 if failed else 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
