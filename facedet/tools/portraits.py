"""Close-up portraits: does a detector give exactly one box for one large face?

    python -m facedet.tools.portraits --data $FACEDET_DATA/faces-caltech
    python -m facedet.tools.portraits --data $FACEDET_DATA/faces-caltech --checkpoint runs/x/best.pt --size native
    python -m facedet.tools.portraits --photos            # the photos shipped in facedet/photos, no data needed

The most common face photo is a close-up: one face filling a third or more of the frame. A
detector trained on crowds and web photos can break there, boxing parts of the one face. This
tool builds close-ups from annotated photos: for each face that can be framed alone, a square
crop around it in which the face's longer side is `fill` of the crop's side (0.3, 0.55 and 0.8 by
default: the face fills 30-80 % of the frame), shifted to stay inside the photo, never holding
any part of another annotated face; the crop is resized to each of `sizes` (320, 640 and 1024 px)
and run through the detector as `facedet.infer` runs it (its operating point, its default input
size unless --size is given). A portrait is *clean* when the detector returns exactly one box and
that box overlaps the face by IoU >= 0.5.

Prints, per size and per fill: portraits, the clean share, boxes per portrait, and the share
where the face was found at all.
"""
from __future__ import annotations

import argparse
from dataclasses import dataclass

import torch
from torch import Tensor
from tqdm import tqdm

from facedet.boxes import box_iou
from facedet.cli import parse_size, run_cli
from facedet.config import DataConfig
from facedet.data.dataset import image_to_tensor
from facedet.data.images import load_image
from facedet.data.loaders import load_records
from facedet.data.transforms import resize_image
from facedet.errors import ConfigError

FILLS = (0.3, 0.55, 0.8)
SIZES = (320, 640, 1024)
CLEAN_IOU = 0.5


def portrait_crop(face: Tensor, others: Tensor, width: int, height: int, fill: float) -> Tensor | None:
    """The square crop (4,) "xyxy" pixels framing `face` (4,) so that its longer side is `fill` of
    the crop's side, centred on the face and shifted to stay inside the width x height photo;
    None when the photo is too small for it or the crop touches any of `others` (M, 4).

    Toy check: a 100 px face at (100, 100)-(200, 200) of a 1000 x 1000 photo, fill 0.5 ->
    the 200 px crop (50, 50)-(250, 250).
    """
    side = float(torch.max(face[2:] - face[:2])) / fill
    if side > min(width, height):
        return None
    cx, cy = float(face[0] + face[2]) / 2, float(face[1] + face[3]) / 2
    x1 = min(max(cx - side / 2, 0.0), width - side)
    y1 = min(max(cy - side / 2, 0.0), height - side)
    crop = torch.tensor([x1, y1, x1 + side, y1 + side])
    if len(others):
        overlap_w = (torch.minimum(others[:, 2], crop[2]) - torch.maximum(others[:, 0], crop[0])).clamp(min=0)
        overlap_h = (torch.minimum(others[:, 3], crop[3]) - torch.maximum(others[:, 1], crop[1])).clamp(min=0)
        if bool(((overlap_w * overlap_h) > 0).any()):
            return None
    return crop


@dataclass
class Portrait:
    """One close-up: the image (3, S, S) in [0, 1], its face (4,) in its pixels, and how it was made."""

    image: Tensor
    face: Tensor
    fill: float
    size: int
    source: str


def make_portraits(photos, fills=FILLS, sizes=SIZES):
    """Portraits from `photos`, an iterable of (name, image (3, H, W) in [0, 1], face boxes (N, 4) pixels).

    Every face that can be framed alone at a fill gives one portrait per size (a generator: the
    images are large)."""
    for name, image, boxes in photos:
        height, width = image.shape[-2:]
        for i in range(len(boxes)):
            others = torch.cat([boxes[:i], boxes[i + 1:]])
            for fill in fills:
                crop = portrait_crop(boxes[i], others, width, height, fill)
                if crop is None:
                    continue
                x1, y1, x2, y2 = (int(round(float(v))) for v in crop)
                x2, y2 = min(x2, width), min(y2, height)
                patch = image[:, y1:y2, x1:x2]
                for size in sizes:
                    sx, sy = size / patch.shape[-1], size / patch.shape[-2]
                    face = (boxes[i] - torch.tensor([x1, y1, x1, y1])) * torch.tensor([sx, sy, sx, sy])
                    yield Portrait(resize_image(patch, (size, size)), face, fill, size, f"{name}#{i}")


def is_clean(boxes: Tensor, face: Tensor) -> tuple[bool, bool]:
    """(exactly one box and it is on the face, the face found by some box), IoU >= CLEAN_IOU."""
    found = bool(len(boxes)) and bool((box_iou(boxes, face[None]) >= CLEAN_IOU).any())
    return found and len(boxes) == 1, found


@dataclass
class Tally:
    portraits: int = 0
    clean: int = 0
    found: int = 0
    boxes: int = 0

    def add(self, boxes: Tensor, face: Tensor) -> None:
        clean, found = is_clean(boxes, face)
        self.portraits += 1
        self.clean += clean
        self.found += found
        self.boxes += len(boxes)

    def row(self, label: str) -> str:
        n = max(self.portraits, 1)
        return (f"| {label} | {self.portraits} | {self.clean / n:.3f} | {self.boxes / n:.2f} | "
                f"{self.found / n:.3f} |")


def measure(detector, portraits, size: int | None = None, progress: bool = True) -> dict[tuple, Tally]:
    """Tallies keyed by ("size", S), ("fill", f) and ("all",)."""
    tallies: dict[tuple, Tally] = {}
    for p in tqdm(portraits, desc="portraits", unit="photo", disable=not progress, leave=False):
        boxes = detector.detect_tensors([p.image], size=size)[0]["boxes"]
        for key in (("size", p.size), ("fill", p.fill), ("all",)):
            tallies.setdefault(key, Tally()).add(boxes, p.face)
    return tallies


def format_table(tallies: dict[tuple, Tally], title: str) -> str:
    lines = [title, "", "| portraits | n | clean (one box, on the face) | boxes / portrait | face found |",
             "|---|---:|---:|---:|---:|"]
    for key in sorted(k for k in tallies if k[0] == "size"):
        lines.append(tallies[key].row(f"{key[1]} px"))
    for key in sorted(k for k in tallies if k[0] == "fill"):
        lines.append(tallies[key].row(f"face {key[1]:.0%} of the side"))
    lines.append(tallies[("all",)].row("**all**"))
    return "\n".join(lines)


def _dataset_photos(data: str, split: str, max_photos: int | None):
    records, _ = load_records(DataConfig(root=data, classes="face"), split)
    if not records:
        raise ConfigError(f"{data}: split '{split}' has no images")
    for record in records[:max_photos]:
        yield record.image_path.name, image_to_tensor(load_image(record.image_path)), record.boxes


def _shipped_photos():
    from facedet.photos import PHOTOS, photo_path

    for name, photo in PHOTOS.items():
        yield name, image_to_tensor(load_image(photo_path(name))), torch.tensor(photo.faces, dtype=torch.float32)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facedet.tools.portraits", description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    source = parser.add_mutually_exclusive_group(required=True)
    source.add_argument("--data", help="an annotated face folder (any layout facedet reads)")
    source.add_argument("--photos", action="store_true", help="the photos shipped in facedet/photos")
    parser.add_argument("--split", default="val", help="split of --data (default val)")
    parser.add_argument("--checkpoint", default=None, help="checkpoint path or shipped name (default: the default detector)")
    parser.add_argument("--size", type=parse_size, default=None,
                        help="run every portrait at this size ('native' = its own); default: as facedet.infer")
    parser.add_argument("--sizes", default=",".join(map(str, SIZES)), help="portrait sides in px (default 320,640,1024)")
    parser.add_argument("--fills", default=",".join(map(str, FILLS)), help="face side / portrait side (default 0.3,0.55,0.8)")
    parser.add_argument("--max-images", type=int, default=200, help="photos of --data to use (default 200)")
    args = parser.parse_args(argv)
    try:
        sizes = tuple(int(v) for v in args.sizes.split(","))
        fills = tuple(float(v) for v in args.fills.split(","))
    except ValueError:
        raise ConfigError(f"--sizes {args.sizes!r} / --fills {args.fills!r}: expected comma-separated numbers") from None
    if not all(0 < f <= 1 for f in fills):
        raise ConfigError(f"--fills {args.fills!r}: each must be in (0, 1]")

    import facedet

    detector = facedet.load(args.checkpoint)
    photos = _shipped_photos() if args.photos else _dataset_photos(args.data, args.split, args.max_images)
    tallies = measure(detector, make_portraits(photos, fills, sizes), size=args.size)
    if not tallies:
        raise ConfigError("no face could be framed alone at these fills")
    where = "facedet/photos" if args.photos else f"{args.data} ({args.split}, first {args.max_images} photos)"
    run = "as facedet.infer runs it" if args.size is None else f"--size {args.size or 'native'}"
    print(format_table(tallies, f"Close-up portraits from {where}; {detector.source}, {run}, "
                                f"min score {detector.min_score:.3f}"))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
