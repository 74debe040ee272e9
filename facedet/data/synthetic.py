"""A synthetic face dataset that needs no download: drawn scenes with exact boxes.

Each scene has a background (gradient or blotchy noise, sometimes stripes and rectangles),
non-face distractors (plain skin-coloured blobs, shapes), 0-4 cartoon "faces" (a skin-toned
ellipse with eyes, eyebrows, nose and mouth, maybe hair, slightly rotated) at 12-60% of the
image side, some cut by the border, then a lighting change and sensor noise; a few scenes are
grayscale. Shapes are drawn at twice the size and halved, which smooths their edges.

The box of a face is the bounding box of its rotated skin ellipse, computed analytically, then
clipped to the image. `ensure_synthetic()` writes the ultralytics YOLO layout

    root/images/{train,val}/00000.jpg
    root/labels/{train,val}/00000.txt      one "0 cx cy w h" line per face, fractions, 6 decimals
    root/data.yaml                         names {0: face}

into a cache directory, once: generation runs in a temporary directory that is renamed into
place only when complete, so a half-written set is never read.
"""
from __future__ import annotations

import argparse
import hashlib
import json
import math
import os
import shutil
import tempfile
import time
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from PIL import Image, ImageDraw
from torch import Tensor

from facedet.boxes import clip_boxes
from facedet.errors import DataError

VERSION = 1
MARKER = "facedet-synthetic.json"
SUPERSAMPLE = 2  # shapes are drawn at 2x and halved: cheap antialiasing

# Base skin tones, light to dark (RGB); each face jitters one of them.
SKIN_TONES = np.array(
    [(255, 224, 196), (241, 194, 150), (224, 172, 105), (198, 134, 66), (141, 85, 36), (92, 51, 23)],
    dtype=np.float32,
)
HAIR_COLOURS = np.array(
    [(20, 15, 10), (60, 40, 25), (110, 75, 40), (200, 170, 110), (160, 160, 160), (120, 40, 20)],
    dtype=np.float32,
)
# Probability of 0, 1, 2, 3, 4 faces in a scene; more than 4 share the last weight.
FACE_COUNT_WEIGHTS = (0.15, 0.35, 0.25, 0.15, 0.10)
FACE_SCALE = (0.12, 0.60)  # face box height as a fraction of the shorter image side
GRAYSCALE_P = 0.15
CUT_P = 0.2  # probability that a face is placed across the border


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _colour(rng: np.random.Generator) -> tuple[int, int, int]:
    return tuple(int(v) for v in rng.integers(0, 256, 3))


def _skin(rng: np.random.Generator) -> tuple[int, int, int]:
    tone = SKIN_TONES[rng.integers(len(SKIN_TONES))] + rng.normal(0, 10, 3)
    return tuple(int(v) for v in np.clip(tone, 0, 255))


# --------------------------------------------------------------------------- background


def _background(rng: np.random.Generator, h: int, w: int) -> Image.Image:
    """An RGB background of size (w, h) at 2x: gradient or noise, maybe stripes and rectangles."""
    ys, xs = np.arange(h, dtype=np.float32)[:, None], np.arange(w, dtype=np.float32)[None, :]
    if rng.random() < 0.5:  # linear gradient between two colours, in a random direction
        angle = rng.uniform(0, 2 * np.pi)
        ramp = xs * float(np.cos(angle)) + ys * float(np.sin(angle))
        ramp = (ramp - ramp.min()) / max(float(np.ptp(ramp)), 1e-6)
        c0, c1 = rng.uniform(0, 255, 3), rng.uniform(0, 255, 3)
        arr = (c0 + ramp[..., None] * (c1 - c0)).astype(np.float32)
    else:  # blotchy texture: a coarse random grid blown up smoothly, plus a finer one
        arr = np.zeros((h, w, 3), np.float32)
        for cells, weight in ((int(rng.integers(2, 8)), 0.8), (int(rng.integers(8, 40)), 0.2)):
            grid = rng.integers(0, 256, (cells, cells, 3), dtype=np.uint8)
            arr += weight * np.asarray(Image.fromarray(grid).resize((w, h), Image.BICUBIC), np.float32)
    if rng.random() < 0.3:  # stripes blended over
        angle = rng.uniform(0, np.pi)
        period = rng.uniform(4, max(w, h) / 3)
        wave = np.sin((xs * float(np.cos(angle)) + ys * float(np.sin(angle))) * float(2 * np.pi / period))
        stripe = (wave[..., None] > 0 if rng.random() < 0.5 else (wave[..., None] + 1) / 2).astype(np.float32)
        arr = arr * (1 - 0.5 * stripe) + 0.5 * stripe * rng.uniform(0, 255, 3)
    image = Image.fromarray(np.clip(arr, 0, 255).astype(np.uint8))
    image = image.resize((w * SUPERSAMPLE, h * SUPERSAMPLE), Image.BILINEAR)
    if rng.random() < 0.35:  # clutter of rectangles (walls, windows, shelves)
        draw = ImageDraw.Draw(image)
        for _ in range(int(rng.integers(3, 20))):
            x0, x1 = np.sort(rng.uniform(0, w * SUPERSAMPLE, 2))
            y0, y1 = np.sort(rng.uniform(0, h * SUPERSAMPLE, 2))
            draw.rectangle((x0, y0, x1, y1), fill=_colour(rng))
    return image


def _draw_distractors(rng: np.random.Generator, image: Image.Image, face_px: tuple[float, float]) -> None:
    """Non-faces: featureless skin-coloured blobs (the hard negatives), shapes and lines."""
    draw = ImageDraw.Draw(image)
    W, H = image.size
    for _ in range(int(rng.integers(0, 6))):
        kind = rng.choice(["blob", "ellipse", "rect", "polygon", "line"])
        size = rng.uniform(*face_px) * SUPERSAMPLE
        cx, cy = rng.uniform(0, W), rng.uniform(0, H)
        if kind == "blob":  # face-sized skin ellipse with no eyes, nose or mouth
            a = size / 2 / rng.uniform(1.1, 1.5)
            draw.ellipse((cx - a, cy - size / 2, cx + a, cy + size / 2), fill=_skin(rng))
        elif kind == "ellipse":
            a, b = size / 2 * rng.uniform(0.4, 1.5, 2)
            draw.ellipse((cx - a, cy - b, cx + a, cy + b), fill=_colour(rng))
        elif kind == "rect":
            a, b = size / 2 * rng.uniform(0.3, 1.5, 2)
            draw.rectangle((cx - a, cy - b, cx + a, cy + b), fill=_colour(rng))
        elif kind == "polygon":
            angles = np.sort(rng.uniform(0, 2 * np.pi, int(rng.integers(3, 7))))
            radii = size / 2 * rng.uniform(0.5, 1.0, len(angles))
            points = list(zip(cx + radii * np.cos(angles), cy + radii * np.sin(angles)))
            draw.polygon(points, fill=_colour(rng))
        else:
            x1, y1 = rng.uniform(0, W), rng.uniform(0, H)
            draw.line((cx, cy, x1, y1), fill=_colour(rng), width=int(rng.integers(1, 4) * SUPERSAMPLE))


# --------------------------------------------------------------------------- faces


def _face_patch(rng: np.random.Generator, a: float, b: float, angle: float) -> Image.Image:
    """An RGBA patch with a face centred in it: skin ellipse of semi-axes a (x) and b (y),
    in patch pixels, rotated by `angle` degrees counter-clockwise. The patch side is even, so
    its centre is a pixel corner."""
    side = 2 * math.ceil(1.3 * max(a, b)) + 4  # room for hair, at any rotation
    c = side / 2
    skin = _skin(rng)
    patch = Image.new("RGBA", (side, side), skin + (0,))
    draw = ImageDraw.Draw(patch)
    hair = tuple(int(v) for v in np.clip(HAIR_COLOURS[rng.integers(len(HAIR_COLOURS))] + rng.normal(0, 8, 3), 0, 255))
    hair_style = rng.choice(["none", "short", "long"], p=[0.3, 0.4, 0.3])
    hair_box = (c - 1.12 * a, c - 1.14 * b, c + 1.12 * a, c + 0.9 * b)
    if hair_style == "short":
        draw.chord(hair_box, 180, 360, fill=hair + (255,))
    elif hair_style == "long":
        draw.ellipse((c - 1.18 * a, c - 1.14 * b, c + 1.18 * a, c + 1.1 * b), fill=hair + (255,))

    draw.ellipse((c - a, c - b, c + a, c + b), fill=skin + (255,))
    darker = tuple(int(v * 0.75) for v in skin) + (255,)
    line = max(1, round(0.045 * b))

    # eyes: white, then iris looking slightly aside
    eye_y = c - rng.uniform(0.1, 0.2) * b
    eye_dx = rng.uniform(0.32, 0.45) * a
    eye_rx, eye_ry = rng.uniform(0.16, 0.22) * a, rng.uniform(0.07, 0.1) * b
    iris_r = min(0.8 * eye_rx, 0.9 * eye_ry)
    gaze = rng.uniform(-0.3, 0.3) * eye_rx
    iris = tuple(int(v) for v in rng.choice([(40, 25, 15), (70, 50, 30), (50, 90, 140), (60, 100, 60)]))
    for sign in (-1, 1):
        ex = c + sign * eye_dx
        draw.ellipse((ex - eye_rx, eye_y - eye_ry, ex + eye_rx, eye_y + eye_ry), fill=(240, 240, 235, 255))
        ix = ex + gaze
        draw.ellipse((ix - iris_r, eye_y - iris_r, ix + iris_r, eye_y + iris_r), fill=iris + (255,))
        pupil = 0.45 * iris_r
        draw.ellipse((ix - pupil, eye_y - pupil, ix + pupil, eye_y + pupil), fill=(10, 10, 10, 255))
        # eyebrow: a slightly tilted bar above the eye
        brow_y = eye_y - rng.uniform(1.8, 2.6) * eye_ry - line
        tilt = rng.uniform(-0.06, 0.06) * b
        draw.line(
            (ex - sign * 1.1 * eye_rx, brow_y + tilt, ex + sign * 1.1 * eye_rx, brow_y - tilt),
            fill=tuple(int(v * 0.8) for v in hair) + (255,), width=max(1, round(1.4 * line)),
        )

    # nose: a darker triangle with two nostrils
    nose_w, nose_bottom = rng.uniform(0.1, 0.16) * a, c + rng.uniform(0.15, 0.25) * b
    draw.polygon([(c, eye_y + eye_ry), (c - nose_w, nose_bottom), (c + nose_w, nose_bottom)], fill=darker)
    nostril = max(1.0, 0.035 * b)
    for sign in (-1, 1):
        nx = c + sign * 0.5 * nose_w
        draw.ellipse((nx - nostril, nose_bottom - nostril, nx + nostril, nose_bottom + nostril), fill=(40, 20, 15, 255))

    # mouth: a smile arc, closed lips or an open mouth
    mouth_y = c + rng.uniform(0.42, 0.55) * b
    mouth_w, mouth_h = rng.uniform(0.25, 0.42) * a, rng.uniform(0.06, 0.14) * b
    lips = tuple(int(v) for v in np.clip(np.array(skin) * (0.75, 0.4, 0.4) + (40, 0, 0), 0, 255)) + (255,)
    style = rng.choice(["smile", "lips", "open"])
    if style == "smile":
        draw.arc((c - mouth_w, mouth_y - 2 * mouth_h, c + mouth_w, mouth_y + mouth_h), 20, 160, fill=lips, width=line + 1)
    elif style == "lips":
        draw.ellipse((c - mouth_w, mouth_y - mouth_h / 2, c + mouth_w, mouth_y + mouth_h / 2), fill=lips)
    else:
        draw.ellipse((c - mouth_w, mouth_y - mouth_h, c + mouth_w, mouth_y + mouth_h), fill=lips)
        draw.ellipse(
            (c - 0.7 * mouth_w, mouth_y - 0.5 * mouth_h, c + 0.7 * mouth_w, mouth_y + 0.5 * mouth_h), fill=(60, 10, 10, 255)
        )
    return patch.rotate(angle, resample=Image.BILINEAR, center=(c, c))


def _rotated_half_extent(a: float, b: float, angle: float) -> tuple[float, float]:
    """Half width and half height of the bounding box of an ellipse with semi-axes a (x), b (y)
    rotated by `angle` degrees."""
    t = math.radians(angle)
    return math.hypot(a * math.cos(t), b * math.sin(t)), math.hypot(a * math.sin(t), b * math.cos(t))


def _place(rng: np.random.Generator, size: float, extent: float) -> float:
    """A centre coordinate for a box of `size` inside [0, extent]."""
    return rng.uniform(size / 2, max(size / 2, extent - size / 2))


def _place_cut(rng: np.random.Generator, size: float, extent: float) -> float:
    """A centre coordinate that lets 10-45% of a box of `size` hang over one end of [0, extent]."""
    over = rng.uniform(0.10, 0.45) * size
    return size / 2 - over if rng.random() < 0.5 else extent - size / 2 + over


def render_scene(
    rng: np.random.Generator,
    size: int | Sequence[int] = 256,
    min_faces: int = 0,
    max_faces: int = 4,
) -> tuple[Image.Image, Tensor]:
    """Draw one scene.

    rng:   numpy Generator; the same state gives the same image
    size:  int or (h, w) of the image
    min_faces, max_faces: how many faces to try to place; a face that finds no free spot
            is left out, so crowded scenes may hold fewer (but at least one if min_faces >= 1)
    returns (image, boxes): a PIL image of mode "RGB" ("L" for grayscale scenes) and
            (N, 4) float32 "xyxy" face boxes in pixels, clipped to the image
    """
    h, w = _size_hw(size)
    side = min(h, w)
    face_px = (FACE_SCALE[0] * side, FACE_SCALE[1] * side)
    canvas = _background(rng, h, w)
    _draw_distractors(rng, canvas, face_px)

    counts = np.arange(min_faces, max_faces + 1)
    weights = np.array([FACE_COUNT_WEIGHTS[min(k, len(FACE_COUNT_WEIGHTS) - 1)] for k in counts])
    n_faces = int(rng.choice(counts, p=weights / weights.sum()))

    boxes, footprints = [], []  # exact face boxes; boxes grown by a hair margin, kept apart
    for _ in range(n_faces):
        # log-uniform height: small faces as common as large ones
        box_h = math.exp(rng.uniform(math.log(face_px[0]), math.log(face_px[1])))
        b = box_h / 2
        a = b / rng.uniform(1.15, 1.45)  # faces are taller than wide
        angle = rng.uniform(-20, 20) if rng.random() < 0.7 else 0.0
        half_w, half_h = _rotated_half_extent(a, b, angle)
        for _attempt in range(20):
            cut_x, cut_y = (rng.random() < CUT_P, rng.random() < CUT_P / 2)
            cx = _place_cut(rng, 2 * half_w, w) if cut_x else _place(rng, 2 * half_w, w)
            cy = _place_cut(rng, 2 * half_h, h) if cut_y else _place(rng, 2 * half_h, h)
            # snap the centre to the 2x pixel grid, where the patch is pasted
            cx, cy = round(cx * SUPERSAMPLE) / SUPERSAMPLE, round(cy * SUPERSAMPLE) / SUPERSAMPLE
            margin = 1.25  # hair reaches beyond the skin ellipse
            foot = np.array([cx - margin * half_w, cy - margin * half_h, cx + margin * half_w, cy + margin * half_h])
            if all(foot[2] <= f[0] or f[2] <= foot[0] or foot[3] <= f[1] or f[3] <= foot[1] for f in footprints):
                break
        else:
            continue  # no free spot for a face this size
        patch = _face_patch(rng, a * SUPERSAMPLE, b * SUPERSAMPLE, angle)
        corner = (round(cx * SUPERSAMPLE) - patch.width // 2, round(cy * SUPERSAMPLE) - patch.height // 2)
        canvas.paste(patch, corner, patch)
        footprints.append(foot)
        boxes.append([cx - half_w, cy - half_h, cx + half_w, cy + half_h])

    image = canvas.reduce(SUPERSAMPLE)

    # lighting: gamma, a global gain with a linear illumination ramp and a colour cast, sensor noise
    gamma = rng.uniform(0.7, 1.4)
    image = image.point([round(255 * (v / 255) ** gamma) for v in range(256)] * 3)
    ys, xs = np.arange(h, dtype=np.float32)[:, None, None] / h - 0.5, np.arange(w, dtype=np.float32)[None, :, None] / w - 0.5
    angle = rng.uniform(0, 2 * np.pi)
    ramp = xs * float(np.cos(angle)) + ys * float(np.sin(angle))  # (h, w, 1), in [-0.71, 0.71]
    gain = rng.uniform(0.6, 1.3) * (1 + rng.uniform(0, 0.8) * ramp) * (1 + rng.normal(0, 0.05, 3)).astype(np.float32)
    noise = rng.standard_normal((h, w, 1), dtype=np.float32) * rng.uniform(0, 6)  # grey noise, 0-255 units
    arr = np.asarray(image, np.float32) * gain + noise
    image = Image.fromarray(np.clip(arr + 0.5, 0, 255).astype(np.uint8))
    if rng.random() < GRAYSCALE_P:
        image = image.convert("L")

    return image, clip_boxes(torch.tensor(boxes, dtype=torch.float32).reshape(-1, 4), w, h)


def make_demo_image(path: str | Path, seed: int = 0, size: int | Sequence[int] = 256) -> Tensor:
    """Write a fresh scene with at least one face to `path` (JPEG); returns its (N, 4) "xyxy"
    pixel boxes. Its random stream differs from the training and validation sets'."""
    rng = np.random.default_rng([seed, 2])  # stream 2: neither train (0) nor val (1)
    image, boxes = render_scene(rng, size, min_faces=1)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    image.save(path, quality=92)
    return boxes


def ensure_synthetic_nonfaces(n: int = 40, size: int | Sequence[int] = 256, seed: int = 0) -> Path:
    """A cached folder of `n` face-free scenes (the same backgrounds and distractors as the
    face set, no faces): the "nonfaces" that Viola-Jones mines its negatives from when it is
    trained on the synthetic set. Stream 4: none of the face set's, demo's or figures' images.
    Written into a temporary folder renamed into place, like `ensure_synthetic`."""
    h, w = _size_hw(size)
    digest = hashlib.sha1(json.dumps([VERSION, n, h, w, seed]).encode()).hexdigest()[:10]
    root = cache_dir() / f"synthetic-nonfaces-v{VERSION}-{digest}"
    if root.is_dir():
        return root
    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    tmp.chmod(0o755)
    try:
        for i in range(n):
            image, _ = render_scene(np.random.default_rng([seed, 4, i]), (h, w), min_faces=0, max_faces=0)
            image.save(tmp / f"{i:05d}.jpg", quality=92)
        os.rename(tmp, root)
    except OSError:
        shutil.rmtree(tmp, ignore_errors=True)
        if not root.is_dir():  # not another process finishing first
            raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


# --------------------------------------------------------------------------- the cached dataset


def yolo_label_lines(boxes: Tensor, width: int, height: int) -> list[str]:
    """(N, 4) "xyxy" pixel boxes -> YOLO lines "0 cx cy w h" in fractions with 6 decimals.

    Coordinates are rounded INWARD to whole millionths, with an even width, so that the written
    centre ± half size lies exactly inside [0, 1] and inside the true box.
    """
    scale = torch.tensor([width, height, width, height], dtype=torch.float64)
    micro = boxes.double() / scale * 1_000_000
    lo = torch.ceil(micro[:, :2] - 1e-6).long()
    hi = torch.floor(micro[:, 2:] + 1e-6).long()
    hi = hi - (hi - lo) % 2  # even size: the centre is a whole millionth too
    centre, extent = (lo + hi) // 2, hi - lo
    return [
        f"0 {cx / 1e6:.6f} {cy / 1e6:.6f} {bw / 1e6:.6f} {bh / 1e6:.6f}"
        for (cx, cy), (bw, bh) in zip(centre.tolist(), extent.tolist())
        if bw > 0 and bh > 0
    ]


def cache_dir() -> Path:
    """Where facedet caches generated data: $FACEDET_CACHE, else ~/.cache/facedet."""
    return Path(os.environ.get("FACEDET_CACHE") or Path.home() / ".cache" / "facedet").expanduser()


def _write_split(root: Path, split: str, stream: int, n: int, size: tuple[int, int], seed: int) -> None:
    (root / "images" / split).mkdir(parents=True)
    (root / "labels" / split).mkdir(parents=True)
    h, w = size
    for i in range(n):
        rng = np.random.default_rng([seed, stream, i])  # one stream per image: order-independent
        image, boxes = render_scene(rng, size)
        image.save(root / "images" / split / f"{i:05d}.jpg", quality=92)
        lines = yolo_label_lines(boxes, w, h)
        (root / "labels" / split / f"{i:05d}.txt").write_text("".join(line + "\n" for line in lines))


def ensure_synthetic(
    root: str | Path | None = None,
    n_train: int = 600,
    n_val: int = 150,
    size: int | Sequence[int] = 256,
    seed: int = 0,
) -> Path:
    """Generate the synthetic face set once and return its directory (YOLO layout, see module doc).

    root: the dataset directory; None means cache_dir() / "synthetic-v1-<hash of the parameters>".
    size: int or (h, w) of every image.
    A directory that exists is reused when its marker file records the same parameters;
    a different or incomplete one is refused (DataError) rather than overwritten.
    """
    h, w = _size_hw(size)
    params = {"version": VERSION, "n_train": int(n_train), "n_val": int(n_val), "size": [h, w], "seed": int(seed)}
    if root is None:
        digest = hashlib.sha1(json.dumps(params, sort_keys=True).encode()).hexdigest()[:10]
        root = cache_dir() / f"synthetic-v{VERSION}-{digest}"
    root = Path(root)

    def check(existing: Path) -> Path:
        marker = existing / MARKER
        if not marker.is_file():
            raise DataError(f"{existing}: exists but holds no complete synthetic set ({MARKER} missing); delete it or pick another root")
        found = json.loads(marker.read_text())
        if found != params:
            raise DataError(f"{marker}: made with {found}, not the requested {params}; delete it or pick another root")
        return existing

    if root.exists():
        return check(root)

    root.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{root.name}.tmp-", dir=root.parent))
    tmp.chmod(0o755)  # mkdtemp makes it private; the finished set is an ordinary folder
    try:
        _write_split(tmp, "train", 0, n_train, (h, w), seed)
        _write_split(tmp, "val", 1, n_val, (h, w), seed)
        (tmp / "data.yaml").write_text(
            f"# synthetic faces from facedet.data.synthetic, parameters in {MARKER}\n"
            "train: images/train\nval: images/val\nnc: 1\nnames:\n  0: face\n"
        )
        (tmp / MARKER).write_text(json.dumps(params, sort_keys=True) + "\n")  # written last
        os.rename(tmp, root)  # atomic: the set appears complete or not at all
    except OSError:
        if root.exists():  # another process finished first: use its copy
            shutil.rmtree(tmp, ignore_errors=True)
            return check(root)
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        raise
    return root


def main(argv: Sequence[str] | None = None) -> None:
    """Generate (or find) the embedded set and print its path, or write one demo image."""
    parser = argparse.ArgumentParser(
        prog="python -m facedet.data.synthetic",
        description="The embedded synthetic face dataset (YOLO layout, cached under "
        "$FACEDET_CACHE or ~/.cache/facedet), or a single fresh demo scene.",
        epilog="Example: python -m facedet.data.synthetic --demo runs/demo.jpg --seed 7",
    )
    parser.add_argument("--train", type=int, default=600, help="training images (default 600)")
    parser.add_argument("--val", type=int, default=150, help="validation images (default 150)")
    parser.add_argument("--demo", metavar="PATH", help="write one new scene with faces to PATH instead")
    parser.add_argument("--seed", type=int, default=0, help="seed of the demo scene (default 0)")
    args = parser.parse_args(argv)
    if args.demo:
        boxes = make_demo_image(args.demo, seed=args.seed)
        print(f"wrote {args.demo} with {len(boxes)} faces")
        return
    start = time.perf_counter()
    root = ensure_synthetic(n_train=args.train, n_val=args.val)
    print(f"{root}  ({time.perf_counter() - start:.1f} s)")


if __name__ == "__main__":
    main()
