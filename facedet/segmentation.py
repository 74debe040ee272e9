"""Felzenszwalb-Huttenlocher graph segmentation (2004): the first step of Selective Search.

The image is a graph: one node per pixel, an edge to each of its 8 neighbours weighted by
how different their colours are (after a light Gaussian blur, sigma 0.8 as in the paper, so
that JPEG noise does not cut regions apart). Edges are visited from the most similar pair
up, and two regions A and B meet through an edge of weight w only if

    w <= min(Int(A) + k / |A|,  Int(B) + k / |B|)

where Int(C) is the largest edge inside C's spanning tree (how varied C already is) and
|C| its size in pixels. So `k` sets the scale: k / |C| lets small regions merge easily and
large ones only across weak boundaries (larger k, larger regions). A last pass merges any
region smaller than `min_size` pixels into its neighbour across the weakest edge.

    smooth             (H, W, 3) -> (H, W, 3), separable Gaussian, mirrored borders
    grid_edges         (H, W, 3) -> edges (E, 2) pixel indices and weights (E,)
    felzenszwalb       (H, W, 3) -> labels (H, W) in 0..R-1

Colours are on the 0-255 scale of each channel (k = 100 means the same as skimage's
`felzenszwalb(scale=100)`). The merging loop is sequential by nature (each union changes
the thresholds of the next edges), so it runs in plain Python over the sorted edges:
about 1 s for a 250 x 250 photo.
"""
from __future__ import annotations

import numpy as np

# 8-connectivity: each pixel links right, down, down-right and down-left; the other four
# neighbours link back to it from theirs, so every edge is listed once.
_OFFSETS = ((0, 1), (1, 0), (1, 1), (1, -1))


def _gaussian_kernel(sigma: float) -> np.ndarray:
    radius = int(np.ceil(4 * sigma))  # 4 sigma: the weights beyond are below 0.04 % of the peak
    x = np.arange(-radius, radius + 1, dtype=np.float64)
    kernel = np.exp(-0.5 * (x / sigma) ** 2)
    return kernel / kernel.sum()


def smooth(image: np.ndarray, sigma: float) -> np.ndarray:
    """Gaussian blur of a (H, W, C) float image along both axes; borders mirrored (d c b a | a b c d)."""
    if sigma <= 0:
        return image.astype(np.float64)
    kernel = _gaussian_kernel(sigma)
    radius = len(kernel) // 2
    out = image.astype(np.float64)
    for axis in (0, 1):
        pad = [(0, 0)] * out.ndim
        pad[axis] = (radius, radius)
        padded = np.pad(out, pad, mode="symmetric")
        length = out.shape[axis]
        out = sum(weight * np.take(padded, np.arange(i, i + length), axis=axis) for i, weight in enumerate(kernel))
    return out


def grid_edges(image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """8-connected grid graph of a (H, W, C) image -> (edges (E, 2) flat pixel indices, weights (E,)).

    weight = Euclidean distance between the two pixels' colour vectors.
    """
    h, w = image.shape[:2]
    index = np.arange(h * w).reshape(h, w)
    edges, weights = [], []
    for dy, dx in _OFFSETS:
        # the pixels (y, x) whose neighbour (y + dy, x + dx) is inside the image, and those neighbours
        x_lo, x_hi = max(0, -dx), w - max(0, dx)
        a = index[0:h - dy, x_lo:x_hi]
        b = index[dy:h, x_lo + dx:x_hi + dx]
        diff = image[0:h - dy, x_lo:x_hi] - image[dy:h, x_lo + dx:x_hi + dx]
        edges.append(np.stack([a.ravel(), b.ravel()], axis=1))
        weights.append(np.sqrt((diff ** 2).sum(axis=-1)).ravel())
    return np.concatenate(edges), np.concatenate(weights)


def _roots(parent: np.ndarray) -> np.ndarray:
    """Each node's root in a union-find forest given as a parent array (N,), by pointer jumping."""
    while True:
        grand = parent[parent]
        if np.array_equal(grand, parent):
            return parent
        parent = grand


def felzenszwalb(image: np.ndarray, k: float = 100.0, sigma: float = 0.8, min_size: int = 20) -> np.ndarray:
    """Segment a (H, W, C) image (0-255 per channel) -> labels (H, W) int64 in 0..R-1, numbered by first pixel.

    k: scale (larger -> larger regions); sigma: blur before measuring colour differences;
    min_size: regions smaller than this many pixels are merged into a neighbour.
    """
    if image.ndim != 3 or min(image.shape) < 1:
        raise ValueError(f"felzenszwalb expects an (H, W, C) image with H, W, C >= 1; got shape {image.shape}")
    if k < 0 or min_size < 0:
        raise ValueError(f"felzenszwalb expects k >= 0 and min_size >= 0; got k={k}, min_size={min_size}")
    h, w = image.shape[:2]
    edges, weights = grid_edges(smooth(image, sigma))
    order = np.argsort(weights, kind="stable")  # stable: equal weights keep the listing order
    firsts, seconds, weights = edges[order, 0].tolist(), edges[order, 1].tolist(), weights[order].tolist()

    parent = list(range(h * w))
    size = [1] * (h * w)
    internal = [0.0] * (h * w)  # Int(C): the largest edge merged into C so far (edges come sorted)

    def find(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]  # path halving: every other node skips a level
            i = parent[i]
        return i

    def union(a: int, b: int, weight: float) -> None:
        if size[a] < size[b]:  # hang the smaller tree under the larger: trees stay shallow
            a, b = b, a
        parent[b] = a
        size[a] += size[b]
        internal[a] = weight

    for p, q, weight in zip(firsts, seconds, weights):
        # find(), written out: this loop runs once per edge (4 per pixel), and calls cost more than the work
        while parent[p] != p:
            parent[p] = parent[parent[p]]
            p = parent[p]
        while parent[q] != q:
            parent[q] = parent[parent[q]]
            q = parent[q]
        if p != q and weight <= internal[p] + k / size[p] and weight <= internal[q] + k / size[q]:
            union(p, q, weight)
    # the small-region pass, in the same edge order (the weakest boundary first); only edges
    # between two regions can merge anything, so the others are dropped first, all at once
    roots = _roots(np.array(parent))
    sorted_edges = edges[order]
    between = np.flatnonzero(roots[sorted_edges[:, 0]] != roots[sorted_edges[:, 1]])
    for e in between.tolist():
        a, b = find(firsts[e]), find(seconds[e])
        if a != b and (size[a] < min_size or size[b] < min_size):
            union(a, b, weights[e])

    roots = _roots(np.array(parent))
    _, labels = np.unique(roots, return_inverse=True)
    # renumber by first appearance in reading order, so labels do not depend on root choices
    first = np.full(labels.max() + 1, h * w)
    np.minimum.at(first, labels, np.arange(h * w))
    rank = np.argsort(np.argsort(first))
    return rank[labels].reshape(h, w).astype(np.int64)
