"""Selective Search (Uijlings, van de Sande, Gevers, Smeulders, IJCV 2013): a few thousand
class-agnostic boxes per photo, where the sliding window scans hundreds of thousands.

The idea: objects are made of parts that look alike, so start from an over-segmentation
(facedet.segmentation.felzenszwalb) and keep merging the two most similar *neighbouring*
regions until one region covers the image. Every region of every level, the small starting
ones included, is a proposal (its bounding box). Four similarities, all in [0, 1], are summed
(a strategy may switch each off):

    colour   histogram intersection of 25-bin-per-channel colour histograms (L1-normalised)
    texture  the same over 8 oriented Gaussian derivatives (sigma 1) x 10 bins per channel
    size     1 - (|a| + |b|) / |image|: small regions merge first, so every part of the image
             grows at a similar pace (no region swallows the others one by one)
    fill     1 - (|box(a u b)| - |a| - |b|) / |image|: regions that fill each other's holes
             (one inside the other, or fitting side by side) merge first

A merged region's histograms are the size-weighted average of its parts', so nothing is
measured twice. Diversification ("fast" in the paper): run several strategies, two colour
spaces (HSV, Lab) x two k (50, 100) x two similarity sets (C+T+S+F, T+S+F), then merge.
Ranking: in each strategy's hierarchy the last region made (the whole image) has position 1,
the one before it 2, and so on; each position is multiplied by a random number in [0, 1]
(so large regions tend to come first without all small ones coming last), the strategies'
boxes are sorted by that value and duplicates keep their best rank.

    to_colour_space        RGB (H, W, 3) uint8 -> (H, W, 3) float, 0-255 per channel
    colour_histograms      (H, W, 3), labels (H, W) -> (R, 75)
    texture_histograms     (H, W, 3), labels (H, W) -> (R, 240)
    describe_regions       the starting regions' boxes, sizes, histograms and neighbours
    hierarchical_grouping  one strategy's hierarchy -> boxes (M, 4) in order of creation
    selective_search       an RGB photo -> ranked boxes (P, 4) "xyxy" pixels
"""
from __future__ import annotations

import heapq
from dataclasses import dataclass
from typing import NamedTuple

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from facedet.segmentation import felzenszwalb, smooth

SIMILARITIES = ("colour", "texture", "size", "fill")
COLOUR_SPACES = ("rgb", "hsv", "lab")
COLOUR_BINS = 25  # the paper's 25 bins per channel
TEXTURE_ORIENTATIONS = 8  # derivative directions 0, 45, ..., 315 degrees
TEXTURE_BINS = 10  # the paper's 10 bins per orientation and channel


@dataclass(frozen=True)
class SelectiveSearchConfig:
    """One run of Selective Search: every combination of colour space, k and similarity set is a strategy.

    The defaults are the paper's "fast" mode (8 strategies); `single()` is its one-strategy mode.
    sigma: blur before segmenting; min_size: smallest starting region (pixels of the shrunk photo);
    max_side: the photo is shrunk to at most this many pixels per side first (boxes come back in
    the photo's pixels); seed: the ranking's random numbers.
    """

    colour_spaces: tuple[str, ...] = ("hsv", "lab")
    ks: tuple[float, ...] = (50.0, 100.0)
    similarities: tuple[tuple[str, ...], ...] = (("colour", "texture", "size", "fill"), ("texture", "size", "fill"))
    sigma: float = 0.8
    min_size: int = 20
    max_side: int = 256
    seed: int = 0

    def __post_init__(self) -> None:
        for space in self.colour_spaces:
            if space not in COLOUR_SPACES:
                raise ValueError(f"selective search colour space {space!r} is unknown; expected one of {COLOUR_SPACES}")
        for terms in self.similarities:
            if not terms or any(t not in SIMILARITIES for t in terms):
                raise ValueError(f"selective search similarity set {terms!r} must be a non-empty "
                                 f"subset of {SIMILARITIES}")
        if not self.colour_spaces or not self.ks or not self.similarities:
            raise ValueError("selective search needs at least one colour space, one k and one similarity set")
        if self.max_side < 1:
            raise ValueError(f"selective search max_side must be >= 1; got {self.max_side}")

    @staticmethod
    def single() -> SelectiveSearchConfig:
        """The paper's "single strategy": HSV, k = 100, all four similarities."""
        return SelectiveSearchConfig(colour_spaces=("hsv",), ks=(100.0,), similarities=(SIMILARITIES,))


# ---------------------------------------------------------------- colour spaces


def to_colour_space(rgb: np.ndarray, space: str) -> np.ndarray:
    """RGB (H, W, 3) uint8 -> (H, W, 3) float64 in `space`, each channel scaled to 0-255.

    hsv: hue, saturation, value; lab: CIE L*a*b* (D65 white), L 0-100 and a, b about -128..127
    shifted and scaled to 0-255 so that histogram bins and k mean the same in every space.
    """
    x = rgb.astype(np.float64) / 255.0
    if space == "rgb":
        return x * 255.0
    if space == "hsv":
        top, bottom = x.max(axis=-1), x.min(axis=-1)
        spread = top - bottom
        r, g, b = x[..., 0], x[..., 1], x[..., 2]
        safe = np.where(spread > 0, spread, 1.0)
        hue = np.where(top == r, (g - b) / safe % 6, np.where(top == g, (b - r) / safe + 2, (r - g) / safe + 4))
        hue = np.where(spread > 0, hue / 6.0, 0.0)  # grey pixels: hue 0 by convention
        saturation = np.where(top > 0, spread / np.where(top > 0, top, 1.0), 0.0)
        return np.stack([hue, saturation, top], axis=-1) * 255.0
    if space == "lab":
        linear = np.where(x > 0.04045, ((x + 0.055) / 1.055) ** 2.4, x / 12.92)  # undo sRGB's gamma
        xyz = linear @ np.array([[0.4124, 0.3576, 0.1805], [0.2126, 0.7152, 0.0722], [0.0193, 0.1192, 0.9505]]).T
        xyz = xyz / np.array([0.95047, 1.0, 1.08883])  # D65 white
        f = np.where(xyz > (6 / 29) ** 3, np.cbrt(xyz), xyz / (3 * (6 / 29) ** 2) + 4 / 29)
        lightness = 116 * f[..., 1] - 16
        a = 500 * (f[..., 0] - f[..., 1])
        b = 200 * (f[..., 1] - f[..., 2])
        return np.clip(np.stack([lightness * 2.55, a + 128, b + 128], axis=-1), 0, 255)
    raise ValueError(f"colour space {space!r} is unknown; expected one of {COLOUR_SPACES}")


# ---------------------------------------------------------------- region descriptors


def _histograms(bins: np.ndarray, labels: np.ndarray, num_regions: int, num_bins: int) -> np.ndarray:
    """Per-region counts of integer bins (H, W, D) in [0, num_bins) -> (R, D * num_bins), rows L1-normalised."""
    flat_labels = labels.reshape(-1, 1)
    columns = bins.reshape(len(flat_labels), -1)
    blocks = [np.bincount(flat_labels[:, 0] * num_bins + columns[:, d], minlength=num_regions * num_bins)
              .reshape(num_regions, num_bins) for d in range(columns.shape[1])]
    counts = np.concatenate(blocks, axis=1).astype(np.float64)
    return counts / np.maximum(counts.sum(axis=1, keepdims=True), 1e-12)


def colour_histograms(image: np.ndarray, labels: np.ndarray, num_regions: int) -> np.ndarray:
    """(H, W, 3) 0-255 image and region labels (H, W) -> (R, 3 * 25) colour histograms."""
    bins = np.clip((image * COLOUR_BINS / 256.0).astype(np.int64), 0, COLOUR_BINS - 1)
    return _histograms(bins, labels, num_regions, COLOUR_BINS)


def oriented_gradients(image: np.ndarray) -> np.ndarray:
    """(H, W, C) image -> (H, W, C, 8) oriented Gaussian derivatives (sigma 1), half-wave rectified.

    The derivative along direction theta is cos(theta) d/dx + sin(theta) d/dy of the blurred
    image; directions theta and theta + 180 degrees are each other's negatives, so keeping only
    the positive part of each of the 8 makes them carry different information (like SIFT's bins).
    """
    padded = np.pad(smooth(image, sigma=1.0), ((1, 1), (1, 1), (0, 0)), mode="edge")
    dy = (padded[2:, 1:-1] - padded[:-2, 1:-1]) / 2  # central differences; 0 across a 1-pixel side
    dx = (padded[1:-1, 2:] - padded[1:-1, :-2]) / 2
    angles = np.arange(TEXTURE_ORIENTATIONS) * (2 * np.pi / TEXTURE_ORIENTATIONS)
    responses = dx[..., None] * np.cos(angles) + dy[..., None] * np.sin(angles)
    return np.maximum(responses, 0.0)


def texture_histograms(image: np.ndarray, labels: np.ndarray, num_regions: int) -> np.ndarray:
    """(H, W, 3) image and labels (H, W) -> (R, 3 * 8 * 10) texture histograms.

    Each channel's responses are binned between 0 and that channel's largest response in the photo.
    """
    responses = oriented_gradients(image)  # (H, W, C, 8)
    top = responses.max(axis=(0, 1, 3), keepdims=True)  # (1, 1, C, 1)
    scaled = responses / np.where(top > 0, top, 1.0)
    bins = np.clip((scaled * TEXTURE_BINS).astype(np.int64), 0, TEXTURE_BINS - 1)
    return _histograms(bins, labels, num_regions, TEXTURE_BINS)


def region_boxes(labels: np.ndarray, num_regions: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels (H, W) -> (boxes (R, 4) "xyxy" pixel extents, x2 = last column + 1; sizes (R,) in pixels)."""
    h, w = labels.shape
    ys, xs = np.indices((h, w))
    flat = labels.ravel()
    boxes = np.zeros((num_regions, 4), dtype=np.int64)
    boxes[:, 0], boxes[:, 1] = w, h
    np.minimum.at(boxes[:, 0], flat, xs.ravel())
    np.minimum.at(boxes[:, 1], flat, ys.ravel())
    np.maximum.at(boxes[:, 2], flat, xs.ravel() + 1)
    np.maximum.at(boxes[:, 3], flat, ys.ravel() + 1)
    return boxes, np.bincount(flat, minlength=num_regions)


def neighbour_pairs(labels: np.ndarray) -> np.ndarray:
    """Labels (H, W) -> (P, 2) pairs i < j of regions that touch (8-connectivity, as the segmentation's graph)."""
    h, w = labels.shape
    pairs = []
    for dy, dx in ((0, 1), (1, 0), (1, 1), (1, -1)):
        x_lo, x_hi = max(0, -dx), w - max(0, dx)
        a = labels[0:h - dy, x_lo:x_hi].ravel()
        b = labels[dy:h, x_lo + dx:x_hi + dx].ravel()
        differ = a != b
        pairs.append(np.stack([np.minimum(a, b)[differ], np.maximum(a, b)[differ]], axis=1))
    return np.unique(np.concatenate(pairs), axis=0)


# ---------------------------------------------------------------- grouping


class RegionTable:
    """The regions of one hierarchy: the R starting ones, then one row per merge (2R - 1 rows in the end).

    Rows are allocated up front, so a merge writes one row instead of copying the table.
    """

    def __init__(self, boxes: np.ndarray, sizes: np.ndarray, colour: np.ndarray, texture: np.ndarray,
                 pairs: np.ndarray) -> None:
        num = len(sizes)
        rows = 2 * num - 1

        def table(start: np.ndarray) -> np.ndarray:
            out = np.zeros((rows, *start.shape[1:]), dtype=start.dtype)
            out[:num] = start
            return out

        self.count = num
        self.boxes, self.sizes = table(boxes), table(sizes.astype(np.float64))
        self.colour, self.texture = table(colour), table(texture)
        self.image_area = float(sizes.sum())
        self.neighbours: list[set[int]] = [set() for _ in range(num)]
        for i, j in pairs.tolist():
            self.neighbours[i].add(j)
            self.neighbours[j].add(i)

    def similarity(self, a: np.ndarray, b: np.ndarray, terms: tuple[str, ...]) -> np.ndarray:
        """Similarity (P,) of the region pairs (a[p], b[p]): the sum of the chosen terms, each in [0, 1]."""
        total = np.zeros(len(a))
        if "colour" in terms:
            total += np.minimum(self.colour[a], self.colour[b]).sum(axis=1)
        if "texture" in terms:
            total += np.minimum(self.texture[a], self.texture[b]).sum(axis=1)
        both = self.sizes[a] + self.sizes[b]
        if "size" in terms:
            total += 1.0 - both / self.image_area
        if "fill" in terms:
            lo = np.minimum(self.boxes[a, :2], self.boxes[b, :2])
            hi = np.maximum(self.boxes[a, 2:], self.boxes[b, 2:])
            box_area = np.prod(hi - lo, axis=1)
            total += 1.0 - (box_area - both) / self.image_area
        return total

    def merge(self, i: int, j: int) -> int:
        """Write the union of regions i and j as the next row; returns its index."""
        t = self.count
        self.count += 1
        size = self.sizes[i] + self.sizes[j]
        self.sizes[t] = size
        self.boxes[t, :2] = np.minimum(self.boxes[i, :2], self.boxes[j, :2])
        self.boxes[t, 2:] = np.maximum(self.boxes[i, 2:], self.boxes[j, 2:])
        # size-weighted average: the histogram the union would have if measured afresh
        self.colour[t] = (self.sizes[i] * self.colour[i] + self.sizes[j] * self.colour[j]) / size
        self.texture[t] = (self.sizes[i] * self.texture[i] + self.sizes[j] * self.texture[j]) / size
        touching = (self.neighbours[i] | self.neighbours[j]) - {i, j}
        for m in touching:
            self.neighbours[m] -= {i, j}
            self.neighbours[m].add(t)
        self.neighbours.append(touching)
        self.neighbours[i], self.neighbours[j] = set(), set()
        return t


class StartingRegions(NamedTuple):
    """The segmentation's regions, described once and shared by every similarity set (R regions)."""

    boxes: np.ndarray    # (R, 4) int "xyxy" pixel extents
    sizes: np.ndarray    # (R,) pixels
    colour: np.ndarray   # (R, 75) colour histograms
    texture: np.ndarray  # (R, 240) texture histograms
    pairs: np.ndarray    # (P, 2) neighbouring regions i < j


def describe_regions(image: np.ndarray, labels: np.ndarray) -> StartingRegions:
    """An image (H, W, 3; 0-255) and its segmentation (H, W) in 0..R-1 -> the regions' descriptors."""
    num = int(labels.max()) + 1
    boxes, sizes = region_boxes(labels, num)
    return StartingRegions(boxes, sizes, colour_histograms(image, labels, num), texture_histograms(image, labels, num),
                           neighbour_pairs(labels))


def hierarchical_grouping(start: StartingRegions,
                          terms: tuple[str, ...] = SIMILARITIES) -> tuple[np.ndarray, list[tuple[int, int]]]:
    """One strategy's hierarchy over the starting regions (R of them), merging by the similarity terms.

    Returns (boxes (M, 4) int "xyxy" pixel extents of every region in order of creation: the R
    starting regions, then one per merge; merges [(i, j), ...] the rows merged to make rows R, R+1, ...).
    The most similar neighbouring pair merges first; ties go to the lowest (i, j).
    """
    regions = RegionTable(start.boxes, start.sizes, start.colour, start.texture, start.pairs)
    pairs = start.pairs
    num = len(start.sizes)
    scores = regions.similarity(pairs[:, 0], pairs[:, 1], terms)
    heap = [(-s, i, j) for s, (i, j) in zip(scores.tolist(), pairs.tolist())]  # heapq pops the most similar
    heapq.heapify(heap)
    alive = [True] * num
    merges = []
    while heap:
        _, i, j = heapq.heappop(heap)
        if not (alive[i] and alive[j]):
            continue  # a pair whose region was already merged away (lazy deletion)
        t = regions.merge(i, j)
        alive[i] = alive[j] = False
        alive.append(True)
        merges.append((i, j))
        others = np.array(sorted(regions.neighbours[t]), dtype=np.int64)
        if len(others):
            for s, m in zip(regions.similarity(np.full(len(others), t), others, terms).tolist(), others.tolist()):
                heapq.heappush(heap, (-s, m, t))  # m < t: new rows have the largest index
    return regions.boxes[:regions.count], merges


# ---------------------------------------------------------------- ranking and the whole pipeline


def hierarchy_ranks(num_regions: int, rng: np.random.Generator) -> np.ndarray:
    """The paper's ranking values for a hierarchy of `num_regions` rows in order of creation (M,):
    position (last made = 1, the one before = 2, ...) times a random number in [0, 1); lower ranks first."""
    position = np.arange(num_regions, 0, -1, dtype=np.float64)
    return position * rng.random(num_regions)


def _shrink(rgb: np.ndarray, max_side: int) -> tuple[np.ndarray, float]:
    """Resize (H, W, 3) uint8 so that its longer side is at most max_side -> (image, scale factor applied)."""
    h, w = rgb.shape[:2]
    scale = min(1.0, max_side / max(h, w))
    if scale == 1.0:
        return rgb, 1.0
    size = (max(1, round(w * scale)), max(1, round(h * scale)))
    return np.asarray(Image.fromarray(rgb).resize(size, Image.BILINEAR)), scale


def selective_search(rgb: np.ndarray, config: SelectiveSearchConfig = SelectiveSearchConfig()) -> Tensor:
    """Selective Search on one RGB photo (H, W, 3) uint8 -> ranked, unique boxes (P, 4) float32 "xyxy" pixels.

    Every region of every strategy's hierarchy is proposed, best-ranked first (see the module
    docstring). The photo is shrunk to config.max_side first and the boxes scaled back.
    """
    rgb = np.asarray(rgb)
    if rgb.ndim == 2:
        rgb = np.repeat(rgb[..., None], 3, axis=-1)  # grey photo: three equal channels
    if rgb.ndim != 3 or rgb.shape[2] != 3 or rgb.shape[0] < 1 or rgb.shape[1] < 1:
        raise ValueError(f"selective_search expects an RGB image (H, W, 3) with H, W >= 1; got shape {rgb.shape}")
    if rgb.dtype != np.uint8:
        raise ValueError(f"selective_search expects uint8 pixels (0-255); got {rgb.dtype}")
    small, scale = _shrink(rgb, config.max_side)
    rng = np.random.default_rng(config.seed)
    all_boxes, all_ranks = [], []
    for space in config.colour_spaces:
        image = to_colour_space(small, space)
        for k in config.ks:
            labels = felzenszwalb(image, k=k, sigma=config.sigma, min_size=config.min_size)
            start = describe_regions(image, labels)
            for terms in config.similarities:
                boxes, _ = hierarchical_grouping(start, terms)
                all_boxes.append(boxes)
                all_ranks.append(hierarchy_ranks(len(boxes), rng))
    boxes = np.concatenate(all_boxes)
    order = np.argsort(np.concatenate(all_ranks), kind="stable")
    boxes = boxes[order]
    _, first = np.unique(boxes, axis=0, return_index=True)  # duplicates keep their best rank
    boxes = boxes[np.sort(first)]
    h, w = rgb.shape[:2]
    out = torch.from_numpy(boxes.astype(np.float32)) / scale
    return out.clamp(min=0).minimum(torch.tensor([w, h, w, h], dtype=torch.float32))
