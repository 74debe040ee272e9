"""Box-aware image transforms shared by every model.

Every transform is a small callable object

    image, target = transform(image, target)

where `image` is a float32 tensor (3, H, W) with values in [0, 1] and `target` a dict whose
"boxes" are (N, 4) "xyxy" in PIXELS of the current image, with "labels" (N,) and
"difficult" (N,) alongside. A transform that drops boxes drops the matching labels and
difficult flags too (see `_keep`). Other keys pass through untouched.

The pixel stage ends with `ToFractional` (boxes divided by the image width and height), after
which `Normalize` turns the image into what the network expects. The SSD recipe (SPEC §5,
sgrvinod's `utils.transform`) is

    PhotometricDistort → RandomZoomOut → RandomMinIoUCrop → RandomHorizontalFlip
    → Resize → ToFractional → Normalize

Randomness comes from the `torch.Generator` given to a transform, or from torch's global RNG
when none is given (the DataLoader seeds that one differently in every worker, so leave it
None when loading with several workers; pass a seeded generator for reproducible demos/tests).
"""
from __future__ import annotations

from collections.abc import Callable, Sequence

import torch
import torch.nn.functional as F
from torch import Tensor

from facedet.boxes import box_iou, clip_boxes, to_fractional
from facedet.errors import ConfigError

# The input normalisation of every facedet model (ImageNet's channel statistics: the VGG16
# weights SSD300 can start from were trained with them, and the other rungs share one convention).
IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)

Target = dict  # {"boxes": (N, 4) "xyxy", "labels": (N,), "difficult": (N,), ...}
Transform = Callable[[Tensor, Target], tuple[Tensor, Target]]

# Keys holding one entry per box; they are filtered together.
PER_BOX_KEYS = ("boxes", "labels", "difficult")


# --------------------------------------------------------------------------- helpers


def _size_hw(size: int | Sequence[int]) -> tuple[int, int]:
    """300 -> (300, 300); (h, w) -> (h, w)."""
    if isinstance(size, int):
        return size, size
    h, w = size
    return int(h), int(w)


def _keep(target: Target, keep: Tensor) -> Target:
    """A copy of `target` with only the boxes selected by `keep` (bool mask or indices)."""
    out = dict(target)
    for key in PER_BOX_KEYS:
        if key in out:
            out[key] = out[key][keep]
    return out


def _uniform(low: float, high: float, generator: torch.Generator | None) -> float:
    return low + (high - low) * torch.rand((), generator=generator).item()


def _coin(p: float, generator: torch.Generator | None) -> bool:
    """True with probability p."""
    return torch.rand((), generator=generator).item() < p


def _fill_tensor(fill: float | Sequence[float], dtype: torch.dtype) -> Tensor:
    """A scalar or per-channel fill value as a (3, 1, 1) tensor."""
    fill = torch.as_tensor(fill, dtype=dtype)
    return fill.reshape(-1, 1, 1).expand(3, 1, 1)


# --------------------------------------------------------------------------- the one resize


def resize_image(image: Tensor, hw: tuple[int, int]) -> Tensor:
    """An image (H, W), (C, H, W) or a batch (N, C, H, W) -> the same with sides hw = (h, w).

    Bilinear with antialiasing: shrinking a large photo averages pixels instead of skipping
    them, and the weights are non-negative, so values stay in the input's range. facedet resizes
    through this function only, in training (`Resize`, the classifier's face crops, Viola-Jones'
    windows) and at inference (the Detector, the sliding window's pyramid), so a network sees the
    pixels it was trained on. An image already of size hw comes back as it is (the filter would
    return it unchanged).
    """
    if tuple(image.shape[-2:]) == tuple(hw):
        return image
    batch = image.reshape(-1, *image.shape[-3:]) if image.dim() >= 3 else image[None, None]  # (N, C, H, W)
    resized = F.interpolate(batch, size=tuple(hw), mode="bilinear", align_corners=False, antialias=True)
    return resized.reshape(*image.shape[:-2], *resized.shape[-2:])


# --------------------------------------------------------------------------- composition


class Compose:
    """Apply transforms one after the other."""

    def __init__(self, transforms: Sequence[Transform]):
        self.transforms = list(transforms)

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        for t in self.transforms:
            image, target = t(image, target)
        return image, target

    def __repr__(self) -> str:
        inner = ",\n  ".join(repr(t) for t in self.transforms)
        return f"Compose([\n  {inner}\n])"


# --------------------------------------------------------------------------- geometry


class Resize:
    """Resize to `size` (int: square, or (h, w)), ignoring the aspect ratio; boxes scale along.

    The image goes through `resize_image`, as it does at inference (facedet.models.detector).
    """

    def __init__(self, size: int | Sequence[int]):
        self.size = _size_hw(size)

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        h, w = image.shape[-2:]
        new_h, new_w = self.size
        image = resize_image(image, (new_h, new_w))
        scale = torch.tensor([new_w / w, new_h / h, new_w / w, new_h / h], dtype=torch.float32)
        return image, {**target, "boxes": target["boxes"] * scale}

    def __repr__(self) -> str:
        return f"Resize(size={self.size})"


class RandomHorizontalFlip:
    """Mirror left-right with probability p: x1' = W - x2, x2' = W - x1."""

    def __init__(self, p: float = 0.5, generator: torch.Generator | None = None):
        self.p = p
        self.generator = generator

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        if not _coin(self.p, self.generator):
            return image, target
        w = image.shape[-1]
        boxes = target["boxes"]
        flipped = torch.stack([w - boxes[:, 2], boxes[:, 1], w - boxes[:, 0], boxes[:, 3]], dim=1)
        return image.flip(-1), {**target, "boxes": flipped}

    def __repr__(self) -> str:
        return f"RandomHorizontalFlip(p={self.p})"


class RandomZoomOut:
    """With probability p, place the image at a random spot of a canvas 1..max_scale times
    larger, filled with `fill` (the dataset mean, so it becomes 0 after Normalize).

    Objects become smaller relative to the image: it teaches the detector small faces.
    """

    def __init__(
        self,
        p: float = 0.5,
        max_scale: float = 4.0,
        fill: float | Sequence[float] = 0.0,
        generator: torch.Generator | None = None,
    ):
        self.p = p
        self.max_scale = max_scale
        self.fill = fill
        self.generator = generator

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        if not _coin(self.p, self.generator):
            return image, target
        h, w = image.shape[-2:]
        scale = _uniform(1.0, self.max_scale, self.generator)
        out_h, out_w = int(scale * h), int(scale * w)
        left = int(torch.randint(0, out_w - w + 1, (), generator=self.generator))
        top = int(torch.randint(0, out_h - h + 1, (), generator=self.generator))
        canvas = _fill_tensor(self.fill, image.dtype).expand(3, out_h, out_w).clone()
        canvas[:, top : top + h, left : left + w] = image
        shift = torch.tensor([left, top, left, top], dtype=torch.float32)
        return canvas, {**target, "boxes": target["boxes"] + shift}

    def __repr__(self) -> str:
        return f"RandomZoomOut(p={self.p}, max_scale={self.max_scale}, fill={self.fill})"


class RandomMinIoUCrop:
    """SSD's random crop: objects must stay (partly) visible and the crop must overlap them.

    Repeat until a crop is found:
      1. draw a minimum IoU from `min_ious`; None means "keep the whole image";
      2. draw `max_trials` candidate crops at once: each side 0.3-1 of the image's, aspect
         (h / w) 0.5-2, at a random position;
      3. accept the first candidate whose IoU with at least one box is >= the minimum and
         that contains at least one box centre;
      4. keep the boxes whose centres are inside the crop, clipped to it.
    An image without boxes accepts the first candidate of a valid shape. After `max_rounds`
    fruitless rounds the image is kept whole (the default None option makes that vanishingly rare).
    """

    def __init__(
        self,
        min_ious: Sequence[float | None] = (0.0, 0.1, 0.3, 0.5, 0.7, 0.9, None),
        min_scale: float = 0.3,
        max_scale: float = 1.0,
        min_aspect: float = 0.5,
        max_aspect: float = 2.0,
        max_trials: int = 50,
        max_rounds: int = 100,
        generator: torch.Generator | None = None,
    ):
        self.min_ious = list(min_ious)
        self.max_rounds = max_rounds
        self.min_scale, self.max_scale = min_scale, max_scale
        self.min_aspect, self.max_aspect = min_aspect, max_aspect
        self.max_trials = max_trials
        self.generator = generator

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        h, w = image.shape[-2:]
        boxes = target["boxes"]
        g = self.generator
        for _round in range(self.max_rounds):
            min_iou = self.min_ious[int(torch.randint(len(self.min_ious), (), generator=g))]
            if min_iou is None:
                return image, target

            # max_trials candidate crops, all at once
            span = self.max_scale - self.min_scale
            crop_w = ((self.min_scale + span * torch.rand(self.max_trials, generator=g)) * w).long()
            crop_h = ((self.min_scale + span * torch.rand(self.max_trials, generator=g)) * h).long()
            left = (torch.rand(self.max_trials, generator=g) * (w - crop_w + 1)).long()
            top = (torch.rand(self.max_trials, generator=g) * (h - crop_h + 1)).long()
            crops = torch.stack([left, top, left + crop_w, top + crop_h], dim=1).float()  # (T, 4)

            aspect = crop_h / crop_w.clamp(min=1)
            ok = (crop_w >= 1) & (crop_h >= 1) & (aspect >= self.min_aspect) & (aspect <= self.max_aspect)
            if len(boxes):
                centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # (N, 2)
                inside = (  # (T, N): centre strictly inside the crop
                    (centres[None, :, 0] > crops[:, None, 0])
                    & (centres[None, :, 1] > crops[:, None, 1])
                    & (centres[None, :, 0] < crops[:, None, 2])
                    & (centres[None, :, 1] < crops[:, None, 3])
                )
                ok &= (box_iou(crops, boxes).amax(dim=1) >= min_iou) & inside.any(dim=1)
            if not ok.any():
                continue

            trial = int(ok.nonzero()[0])
            x1, y1, x2, y2 = (int(v) for v in crops[trial])
            image = image[:, y1:y2, x1:x2]
            if not len(boxes):
                return image, target
            target = _keep(target, inside[trial])
            shift = torch.tensor([x1, y1, x1, y1], dtype=torch.float32)
            kept = clip_boxes(target["boxes"] - shift, x2 - x1, y2 - y1)
            return image, {**target, "boxes": kept}
        return image, target  # nothing fits (possible only when min_ious lacks None)

    def __repr__(self) -> str:
        return (
            f"RandomMinIoUCrop(min_ious={self.min_ious}, scale=({self.min_scale}, {self.max_scale}), "
            f"aspect=({self.min_aspect}, {self.max_aspect}), max_trials={self.max_trials})"
        )


class RandomSquareCrop:
    """A random square crop whose side is `min_scale`..`max_scale` of the image's short side.

    The face detectors' crop (RetinaFace, S3FD): resized to the network's square input, a
    crop of 0.3 of the short side enlarges faces 3x, a crop of the whole short side keeps
    them small, so every face size meets every prior size; being square, nothing is
    stretched. Up to `max_trials` positions are drawn until one keeps a box; after that the
    image is kept whole. An image without boxes takes the first crop.

    Which boxes a crop keeps:
      min_visible None: those whose centres fall inside the crop, clipped to it (RetinaFace's
                        rule). A face larger than the crop then becomes a "face" filling the
                        crop: the network learns that an eye and a nose are a face, and boxes
                        the parts of one large face at test time.
      min_visible v:    those with at least v of their area inside the crop, kept WHOLE (not
                        clipped: the box may reach past the crop's edges, and the network learns
                        the whole face from the part it sees, as it must for a face larger than
                        its view or cut by a tile). A face less visible than that is dropped, so
                        its visible part is background: parts of faces become negatives.
    close_up: the share of crops drawn around one face instead, sized so that the face fills
              CLOSE_UP_FILL of the crop's side (it may overflow the crop: with min_visible it stays
              whole), its centre in the crop's middle half. Photos rarely hold faces that fill the
              frame; these crops teach the largest priors, and that the parts of such a face are not faces.
    """

    CLOSE_UP_FILL = (0.5, 1.4)
    # only faces at least this big are framed close: a smaller one, enlarged to fill the 320 px
    # input, is a blur that no sharp close-up photo looks like
    CLOSE_UP_MIN_SIDE = 60

    def __init__(self, min_scale: float = 0.3, max_scale: float = 1.0, max_trials: int = 50,
                 min_visible: float | None = None, close_up: float = 0.0, generator: torch.Generator | None = None):
        if min_visible is not None and not 0 < min_visible <= 1:
            raise ConfigError(f"RandomSquareCrop: min_visible={min_visible} must be in (0, 1]")
        if not 0 <= close_up <= 1:
            raise ConfigError(f"RandomSquareCrop: close_up={close_up} must be a share in [0, 1]")
        self.min_scale, self.max_scale = min_scale, max_scale
        self.max_trials = max_trials
        self.min_visible = min_visible
        self.close_up = close_up
        self.generator = generator

    def close_up_crop(self, boxes: Tensor, width: int, height: int) -> Tensor:
        """(1, 4) one square crop "xyxy" around a random one of `boxes` (N, 4), see `close_up`;
        (0, 4) when no face is CLOSE_UP_MIN_SIDE px or more."""
        g = self.generator
        big = boxes[(boxes[:, 2:] - boxes[:, :2]).amax(dim=1) >= self.CLOSE_UP_MIN_SIDE]
        if not len(big):
            return torch.zeros(0, 4)
        face = big[int(torch.randint(len(big), (), generator=g))]
        low, high = self.CLOSE_UP_FILL
        side = min(float((face[2:] - face[:2]).max()) / _uniform(low, high, g), width, height)
        side = max(int(side), 1)
        cx, cy = float(face[0] + face[2]) / 2, float(face[1] + face[3]) / 2
        left = min(max(int(cx - side * _uniform(0.25, 0.75, g)), 0), width - side)
        top = min(max(int(cy - side * _uniform(0.25, 0.75, g)), 0), height - side)
        return torch.tensor([[left, top, left + side, top + side]], dtype=torch.float32)

    def kept(self, crops: Tensor, boxes: Tensor) -> Tensor:
        """(T, N) bool: which of the boxes (N, 4) each crop (T, 4) keeps; "xyxy" pixels."""
        if self.min_visible is None:
            centres = (boxes[:, :2] + boxes[:, 2:]) / 2  # (N, 2)
            return ((centres[None, :, 0] > crops[:, None, 0]) & (centres[None, :, 1] > crops[:, None, 1])
                    & (centres[None, :, 0] < crops[:, None, 2]) & (centres[None, :, 1] < crops[:, None, 3]))
        inside_wh = (torch.minimum(crops[:, None, 2:], boxes[None, :, 2:])
                     - torch.maximum(crops[:, None, :2], boxes[None, :, :2])).clamp(min=0)  # (T, N, 2)
        area = ((boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])).clamp(min=1e-6)  # (N,)
        return inside_wh.prod(dim=-1) >= self.min_visible * area

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        h, w = image.shape[-2:]
        g = self.generator
        boxes = target["boxes"]
        span = self.max_scale - self.min_scale
        side = ((self.min_scale + span * torch.rand(self.max_trials, generator=g)) * min(h, w)).long().clamp(min=1)
        left = (torch.rand(self.max_trials, generator=g) * (w - side + 1)).long()
        top = (torch.rand(self.max_trials, generator=g) * (h - side + 1)).long()
        crops = torch.stack([left, top, left + side, top + side], dim=1).float()  # (T, 4)
        if len(boxes) and self.close_up and _coin(self.close_up, g):
            crops = torch.cat([self.close_up_crop(boxes, w, h), crops])  # tried first
        if len(boxes):
            kept = self.kept(crops, boxes)  # (T, N)
            ok = kept.any(dim=1)  # (T,)
            if not ok.any():
                return image, target
            trial = int(ok.nonzero()[0])
        else:
            trial = 0
        x1, y1, x2, y2 = (int(v) for v in crops[trial])
        image = image[:, y1:y2, x1:x2]
        if not len(boxes):
            return image, target
        target = _keep(target, kept[trial])
        moved = target["boxes"] - torch.tensor([x1, y1, x1, y1], dtype=torch.float32)
        if self.min_visible is None:
            moved = clip_boxes(moved, x2 - x1, y2 - y1)
        return image, {**target, "boxes": moved}

    def __repr__(self) -> str:
        visible = "" if self.min_visible is None else f", min_visible={self.min_visible}"
        close_up = f", close_up={self.close_up}" if self.close_up else ""
        return (f"RandomSquareCrop(scale=({self.min_scale}, {self.max_scale}), max_trials={self.max_trials}"
                f"{visible}{close_up})")


class DropSmallBoxes:
    """Drop boxes whose shorter side is under `min_side` pixels of the current image.

    After a crop is resized to the network input, a face of 2-4 px is no longer a face the
    network can learn: left in, it is force-matched to a prior many times its size.
    """

    def __init__(self, min_side: float):
        self.min_side = min_side

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        boxes = target["boxes"]
        sides = torch.min(boxes[:, 2] - boxes[:, 0], boxes[:, 3] - boxes[:, 1])
        return image, _keep(target, sides >= self.min_side)

    def __repr__(self) -> str:
        return f"DropSmallBoxes(min_side={self.min_side})"


# --------------------------------------------------------------------------- colour

# ITU-R 601 luma weights, as in PIL's convert("L") and torchvision
_LUMA = (0.299, 0.587, 0.114)


def grayscale(image: Tensor) -> Tensor:
    """(3, H, W) RGB in [0, 1] -> (1, H, W) luma."""
    weights = torch.tensor(_LUMA, dtype=image.dtype).reshape(3, 1, 1)
    return (image * weights).sum(dim=0, keepdim=True)


def adjust_brightness(image: Tensor, factor: float) -> Tensor:
    """Scale every value; factor 1 is the identity."""
    return (image * factor).clamp(0, 1)


def adjust_contrast(image: Tensor, factor: float) -> Tensor:
    """Blend with the mean grey level of the image; factor 0 gives a flat grey image."""
    mean = grayscale(image).mean()
    return (factor * image + (1 - factor) * mean).clamp(0, 1)


def adjust_saturation(image: Tensor, factor: float) -> Tensor:
    """Blend with the image's own grayscale version; factor 0 gives a grey image."""
    return (factor * image + (1 - factor) * grayscale(image)).clamp(0, 1)


def rgb_to_hsv(image: Tensor) -> Tensor:
    """(3, H, W) RGB in [0, 1] -> (3, H, W) HSV, all three in [0, 1] (hue as a fraction of the circle)."""
    r, g, b = image.unbind(0)
    maxc, argmax = image.max(dim=0)
    minc = image.min(dim=0).values
    delta = maxc - minc
    safe = torch.where(delta > 0, delta, torch.ones_like(delta))
    # hue sector by which channel is the largest: red 0, green 2, blue 4 (in sixths of the circle)
    hue = torch.stack([(g - b) / safe, (b - r) / safe + 2, (r - g) / safe + 4])  # (3, H, W)
    hue = hue.gather(0, argmax[None])[0]
    hue = torch.where(delta > 0, (hue / 6) % 1.0, torch.zeros_like(hue))
    sat = torch.where(maxc > 0, delta / torch.where(maxc > 0, maxc, torch.ones_like(maxc)), torch.zeros_like(maxc))
    return torch.stack([hue, sat, maxc])


# For each of the six hue sectors, which of (v, q, p, t) goes to R, G and B.
_HSV_SECTORS = torch.tensor([[0, 3, 2], [1, 0, 2], [2, 0, 3], [2, 1, 0], [3, 2, 0], [0, 2, 1]])


def hsv_to_rgb(image: Tensor) -> Tensor:
    """(3, H, W) HSV in [0, 1] -> (3, H, W) RGB in [0, 1]; inverse of `rgb_to_hsv`."""
    h, s, v = image.unbind(0)
    sector = torch.floor(h * 6)
    frac = h * 6 - sector
    p = v * (1 - s)
    q = v * (1 - s * frac)
    t = v * (1 - s * (1 - frac))
    candidates = torch.stack([v, q, p, t])  # (4, H, W)
    index = _HSV_SECTORS[sector.long() % 6].permute(2, 0, 1)  # (3, H, W)
    return candidates.gather(0, index)


def adjust_hue(image: Tensor, delta: float) -> Tensor:
    """Rotate the hue by `delta` (fraction of the colour circle, -0.5..0.5)."""
    hsv = rgb_to_hsv(image)
    hsv[0] = (hsv[0] + delta) % 1.0
    return hsv_to_rgb(hsv).clamp(0, 1)


class RandomGrayscale:
    """With probability p, replace the image by its luma in all three channels.

    Old scans and surveillance frames are grayscale; a detector that only ever saw colour
    leans on skin tone, which such photos do not have.
    """

    def __init__(self, p: float = 0.1, generator: torch.Generator | None = None):
        self.p = p
        self.generator = generator

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        if not _coin(self.p, self.generator):
            return image, target
        return grayscale(image).expand(3, -1, -1).contiguous(), target

    def __repr__(self) -> str:
        return f"RandomGrayscale(p={self.p})"


class PhotometricDistort:
    """SSD's colour jitter: brightness, contrast, saturation and hue, each applied with
    probability p, in a random order. Ranges are sgrvinod's: factors 0.5-1.5, hue ±18/255
    of the circle (about ±25 degrees). Boxes are untouched.
    """

    def __init__(
        self,
        brightness: tuple[float, float] = (0.5, 1.5),
        contrast: tuple[float, float] = (0.5, 1.5),
        saturation: tuple[float, float] = (0.5, 1.5),
        hue: float = 18 / 255,
        p: float = 0.5,
        generator: torch.Generator | None = None,
    ):
        self.brightness, self.contrast, self.saturation, self.hue = brightness, contrast, saturation, hue
        self.p = p
        self.generator = generator

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        g = self.generator
        distortions = [
            lambda im: adjust_brightness(im, _uniform(*self.brightness, g)),
            lambda im: adjust_contrast(im, _uniform(*self.contrast, g)),
            lambda im: adjust_saturation(im, _uniform(*self.saturation, g)),
            lambda im: adjust_hue(im, _uniform(-self.hue, self.hue, g)),
        ]
        for i in torch.randperm(len(distortions), generator=g).tolist():
            if _coin(self.p, g):
                image = distortions[i](image)
        return image, target

    def __repr__(self) -> str:
        return (
            f"PhotometricDistort(brightness={self.brightness}, contrast={self.contrast}, "
            f"saturation={self.saturation}, hue={self.hue:.4f}, p={self.p})"
        )


# --------------------------------------------------------------------------- end of the pixel stage


class ToFractional:
    """Boxes from pixels to fractions of the current image: divide by (w, h, w, h), clip to [0, 1]
    (`clip=False` keeps whole the faces that RandomSquareCrop's min_visible kept whole)."""

    def __init__(self, clip: bool = True):
        self.clip = clip

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        h, w = image.shape[-2:]
        boxes = to_fractional(target["boxes"], w, h)
        return image, {**target, "boxes": boxes.clamp(0, 1) if self.clip else boxes}

    def __repr__(self) -> str:
        return "ToFractional()" if self.clip else "ToFractional(clip=False)"


class Normalize:
    """(image - mean) / std per channel; mean and std are those of the model's pretraining."""

    def __init__(self, mean: Sequence[float], std: Sequence[float]):
        self.mean = tuple(mean)
        self.std = tuple(std)

    def __call__(self, image: Tensor, target: Target) -> tuple[Tensor, Target]:
        mean = torch.tensor(self.mean, dtype=image.dtype).reshape(-1, 1, 1)
        std = torch.tensor(self.std, dtype=image.dtype).reshape(-1, 1, 1)
        return (image - mean) / std, target

    def __repr__(self) -> str:
        return f"Normalize(mean={self.mean}, std={self.std})"


# --------------------------------------------------------------------------- recipes

AUGMENTATIONS = ("none", "flip", "ssd", "face")
# Faces smaller than this at the network input are dropped by the "face" recipe: 5 px is half
# the smallest face prior (10 px), whose IoU with any prior is then below 0.25.
MIN_FACE_SIDE = 5.0


def train_transforms(
    size: int | Sequence[int],
    mean: Sequence[float],
    std: Sequence[float],
    augment: str = "ssd",
    generator: torch.Generator | None = None,
    face_min_visible: float = 0.0,
    face_close_up: float = 0.0,
) -> Compose:
    """The training pipeline: pixel-space augmentation, resize to `size`, fractional boxes, normalise.

    augment: "none" (resize only), "flip" (+ horizontal flip), "ssd" (SPEC §5:
    photometric → zoom-out filled with `mean` → min-IoU crop → flip), or "face" (the face
    detectors' recipe: photometric → grayscale 1 in 10 → zoom-out → square crop of 0.3-1 of
    the short side → flip → resize → drop faces under 5 px). "face" needs a square `size`;
    `face_min_visible` > 0 makes its crop keep faces whole when at least that share of them is
    inside (see RandomSquareCrop), 0 keeps the faces whose centre is inside, clipped;
    `face_close_up` is the share of its crops framed around one face (RandomSquareCrop's close_up).
    """
    if augment not in AUGMENTATIONS:
        raise ConfigError(f"augment={augment!r} is not known; expected one of {', '.join(AUGMENTATIONS)}")
    steps: list[Transform] = []
    if augment == "ssd":
        steps += [
            PhotometricDistort(generator=generator),
            RandomZoomOut(p=0.5, max_scale=4.0, fill=mean, generator=generator),
            RandomMinIoUCrop(generator=generator),
        ]
    if augment == "face":
        steps += [
            PhotometricDistort(generator=generator),
            RandomGrayscale(0.1, generator=generator),
            # up to 6x: a web photo's 60 px face, zoomed out then cropped, becomes 10-20 px
            RandomZoomOut(p=0.6, max_scale=6.0, fill=mean, generator=generator),
            RandomSquareCrop(0.3, 1.0, min_visible=face_min_visible or None, close_up=face_close_up,
                             generator=generator),
        ]
    if augment in ("flip", "ssd", "face"):
        steps.append(RandomHorizontalFlip(0.5, generator=generator))
    steps.append(Resize(size))
    if augment == "face":
        steps.append(DropSmallBoxes(MIN_FACE_SIDE))
    whole_faces = augment == "face" and face_min_visible > 0
    steps += [ToFractional(clip=not whole_faces), Normalize(mean, std)]
    return Compose(steps)


def eval_transforms(size: int | Sequence[int], mean: Sequence[float], std: Sequence[float]) -> Compose:
    """The evaluation/inference pipeline: resize to `size`, fractional boxes, normalise."""
    return Compose([Resize(size), ToFractional(), Normalize(mean, std)])
