"""Integral images and Haar-like rectangle features: the measuring half of Viola-Jones.

A Haar-like feature is a few adjacent rectangles inside the 24 x 24 detection window,
white ones weighted +1 and black ones -1 (seed 001, ADABOOST); its value is the weighted
sum of the pixels under them. Five types, drawn as (columns x rows of equal cells):

    two_horizontal    [+ -]          two_vertical    [+]        four   [+ -]
    three_horizontal  [+ - +]                        [-]               [- +]
    three_vertical    [+] [-] [+] stacked

With an integral image every rectangle sum costs four look-ups, whatever its size
(seed 001, INTEGRAL IMAGES):

    ii[y, x] = sum of image[:y, :x]            (a zero row and column in front)
    sum of image[y0:y1, x0:x1] = ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]

Features are compared across windows of different brightness and contrast by variance
normalisation, as in the paper: each window is taken as (window - mean) / std, which the
integral images of the image and of its square give in constant time too. A feature's value
on a window is then

    value = sum_r  w_r * area_r * (sum_r / scaled_area_r - mean) / std

(area_r: the rectangle's area in the 24 x 24 window; scaled_area_r: its area in a window
scanned at another scale; equal at scale 1, where this is sum_r w_r (sum_r - mean area_r) / std).
Dividing each rectangle's sum by its own scaled area keeps a feature comparable when the
scan rounds its rectangles to whole pixels at scale 1.25, 1.5625, ...

Reading order:

    integral_image          the seed's recurrence, written as two cumulative sums
    rectangle_sums          four look-ups per rectangle, vectorised over boxes
    HaarFeatures            every feature of the five types on a 24 x 24 window
    window_mean_std         the variance normalisation of many windows at once
    feature_values          (N, 24, 24) crops -> (N, F) values, one matrix product
"""
from __future__ import annotations

from dataclasses import dataclass

import torch
from torch import Tensor

from facedet.errors import ConfigError

WINDOW = 24  # the paper's detection window side, pixels
# type name -> the cell weights of its pattern, rows x columns (white +1, black -1)
FEATURE_TYPES: dict[str, tuple[tuple[int, ...], ...]] = {
    "two_horizontal": ((1, -1),),
    "two_vertical": ((1,), (-1,)),
    "three_horizontal": ((1, -1, 1),),
    "three_vertical": ((1,), (-1,), (1,)),
    "four": ((1, -1), (-1, 1)),
}
MAX_RECTS = 4  # the four-rectangle type; others leave the unused rectangles with weight 0
# a window whose standard deviation is below this (0-255 grey levels) counts as this: a flat
# patch has no face, and dividing by ~0 would blow its feature values up to anything
MIN_STD = 1.0


def integral_image(image: Tensor) -> Tensor:
    """Integral image with a leading zero row and column: (..., H, W) -> (..., H + 1, W + 1).

    ii[y, x] = sum of image[:y, :x]. The seed's recurrence
    ii(i, j) = ii(i, j-1) + ii(i-1, j) - ii(i-1, j-1) + I(i, j) is the same thing as a
    cumulative sum along the columns followed by one along the rows; the tests check both.

    Dtype: the seed warns that the numbers grow huge on large images. A 4000 x 3000 photo of
    white pixels sums to 3.06e9, past int32's 2.1e9 (and uint8 overflows at the second pixel),
    so integers are summed in int64 (exact up to 9.2e18: the squared image of 36 gigapixels)
    and floats in float64 (integers exact up to 2**53 = 9e15).
    """
    dtype = torch.float64 if image.is_floating_point() else torch.int64
    ii = image.to(dtype).cumsum(-1).cumsum(-2)
    return torch.nn.functional.pad(ii, (1, 0, 1, 0))


def rectangle_sums(ii: Tensor, boxes: Tensor) -> Tensor:
    """Pixel sums of rectangles from an integral image.

    ii: (H + 1, W + 1) from `integral_image`; boxes: (..., 4) integer "xyxy" pixels
    (x0, y0, x1, y1), the rectangle image[y0:y1, x0:x1]. Returns (...) in ii's dtype.
    """
    x0, y0, x1, y1 = boxes.long().unbind(-1)
    return ii[y1, x1] - ii[y0, x1] - ii[y1, x0] + ii[y0, x0]


@dataclass
class HaarFeatures:
    """Every Haar-like feature of the five types on a window x window grid.

    rects:   (F, 4, 4) int64 "xyxy" rectangles in window pixels; unused ones are all zero
    weights: (F, 4) float32, +1 white, -1 black, 0 unused
    kinds:   (F,) int64, index into FEATURE_TYPES

    `stride` subsamples the set to keep training on a CPU in minutes: features start at
    every stride-th pixel and their cells are 1, 1 + stride, 1 + 2 stride ... pixels.
    On 24 x 24: stride 1 gives the full 162,336 features; stride 2 gives 12,372.
    """

    rects: Tensor
    weights: Tensor
    kinds: Tensor
    window: int = WINDOW

    @classmethod
    def enumerate(cls, window: int = WINDOW, stride: int = 1) -> "HaarFeatures":
        if stride < 1 or window < 3:
            raise ConfigError(f"Haar features need stride >= 1 and a window of >= 3 px, got stride {stride}, "
                              f"window {window}")
        rects, weights, kinds = [], [], []
        for kind, pattern in enumerate(FEATURE_TYPES.values()):
            rows, cols = len(pattern), len(pattern[0])
            cells = torch.tensor([(c, r, c + 1, r + 1) for r in range(rows) for c in range(cols)])  # (k, 4) in cells
            cell_weights = torch.tensor([w for row in pattern for w in row], dtype=torch.float32)
            for cw in range(1, window // cols + 1, stride):
                for ch in range(1, window // rows + 1, stride):
                    ys = torch.arange(0, window - rows * ch + 1, stride)
                    xs = torch.arange(0, window - cols * cw + 1, stride)
                    yy, xx = torch.meshgrid(ys, xs, indexing="ij")
                    origin = torch.stack([xx, yy, xx, yy], -1).reshape(-1, 1, 4)  # (n, 1, 4)
                    scale = torch.tensor([cw, ch, cw, ch])
                    boxes = origin + cells * scale                                 # (n, k, 4)
                    padded = torch.zeros(len(boxes), MAX_RECTS, 4, dtype=torch.int64)
                    padded[:, : len(cells)] = boxes
                    w = torch.zeros(len(boxes), MAX_RECTS)
                    w[:, : len(cells)] = cell_weights
                    rects.append(padded)
                    weights.append(w)
                    kinds.append(torch.full((len(boxes),), kind))
        return cls(torch.cat(rects), torch.cat(weights), torch.cat(kinds), window)

    def __len__(self) -> int:
        return len(self.kinds)

    def subset(self, index: Tensor) -> "HaarFeatures":
        return HaarFeatures(self.rects[index], self.weights[index], self.kinds[index], self.window)

    def areas(self) -> Tensor:
        """(F, 4) float32 pixel areas of the rectangles (0 for unused ones)."""
        wh = self.rects[..., 2:] - self.rects[..., :2]
        return (wh[..., 0] * wh[..., 1]).float()

    def weighted_area(self) -> Tensor:
        """(F,) sum_r w_r area_r: how much the window mean enters each raw feature value."""
        return (self.weights * self.areas()).sum(-1)

    def corner_matrix(self) -> Tensor:
        """(F, (window + 1)^2) float32 M such that M @ ii.flatten() = sum_r w_r sum_r for every feature.

        Each rectangle adds +w at (y1, x1) and (y0, x0) and -w at (y0, x1) and (y1, x0);
        a shared corner of two adjacent rectangles accumulates both.
        """
        side = self.window + 1
        x0, y0, x1, y1 = self.rects.unbind(-1)                                  # (F, 4) each
        index = torch.stack([y1 * side + x1, y0 * side + x1, y1 * side + x0, y0 * side + x0], -1)  # (F, 4, 4)
        signs = torch.tensor([1.0, -1.0, -1.0, 1.0])
        values = self.weights[..., None] * signs                                # (F, 4, 4)
        matrix = torch.zeros(len(self), side * side)
        matrix.scatter_add_(1, index.reshape(len(self), -1), values.reshape(len(self), -1))
        return matrix


def window_mean_std(ii: Tensor, ii_squared: Tensor, boxes: Tensor) -> tuple[Tensor, Tensor]:
    """Mean and standard deviation of the pixels in each window, from the integral images of
    the image and of its square: var = E[x^2] - E[x]^2.

    boxes: (..., 4) integer "xyxy" windows. Returns two (...) float64 tensors; the standard
    deviation is floored at MIN_STD.
    """
    area = ((boxes[..., 2] - boxes[..., 0]) * (boxes[..., 3] - boxes[..., 1])).double()
    mean = rectangle_sums(ii, boxes).double() / area
    variance = rectangle_sums(ii_squared, boxes).double() / area - mean * mean
    return mean, variance.clamp(min=0).sqrt().clamp(min=MIN_STD)


def feature_values(windows: Tensor, features: HaarFeatures, chunk: int = 2048) -> Tensor:
    """Variance-normalised values of every feature on every window.

    windows: (N, window, window) grey levels 0-255 (any dtype); returns (N, F) float32.
    Raw sums come from one matrix product of the flattened integral images with the corner
    matrix, in float32: a 24 x 24 window's integral image is at most 576 * 255 = 146,880
    and a feature's raw sum at most a few times that, integers far below float32's exact
    limit of 2**24 = 16.8M, so the product is exact for integer grey levels.
    """
    n, side = windows.shape[0], features.window
    if windows.shape[1:] != (side, side):
        raise ConfigError(f"feature_values needs windows of {side} x {side}, got {tuple(windows.shape[1:])}")
    matrix = features.corner_matrix().T.contiguous()                            # ((side+1)^2, F)
    weighted_area = features.weighted_area()                                    # (F,)
    whole = torch.tensor([0, 0, side, side])
    out = torch.empty(n, len(features), dtype=torch.float32)
    for start in range(0, n, chunk):  # bounds the float64 temporaries
        ii = integral_image(windows[start:start + chunk].double())              # (n, side+1, side+1)
        ii_sq = integral_image(windows[start:start + chunk].double() ** 2)
        mean, std = window_mean_std(ii.permute(1, 2, 0), ii_sq.permute(1, 2, 0), whole)  # (n,), (n,)
        raw = ii.reshape(len(ii), -1).float() @ matrix                          # (n, F)
        raw -= mean.float()[:, None] * weighted_area
        out[start:start + chunk] = raw.div_(std.float()[:, None])
    return out
