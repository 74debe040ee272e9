"""Rung 0: Viola-Jones, the classic detector (seed 001, VIOLA JONES), trained by facedet itself.

Not trained by gradient descent (the seed insists on this): it is boosting over a huge pool
of Haar-like features (facedet/models/haar_features.py), arranged as a cascade.

    weak classifier   one feature and a threshold (a decision stump): "face" when
                      polarity * value > polarity * threshold
    AdaBoost          round after round, pick the stump with the lowest WEIGHTED error, give it
                      a vote alpha = log((1 - e) / e), and raise the weight of the examples it got
                      wrong so that the next stump concentrates on them (seed 001, BOOSTING)
    stage             a strong classifier: sum of alpha * h >= stage threshold; stumps are added
                      until, with the threshold lowered to keep `detection_rate` of the faces,
                      at most `false_positive_rate` of the non-faces pass
    cascade           stages in a row; a window is dropped at the first stage that says no, so
                      the cheap first stages (2-3 stumps) throw away most of the background and
                      only face-like windows pay for the later ones (seed 001, CASCADE)
    scan              every window of every size: the FEATURES are scaled by 1.25 per level, not
                      the image, since a scaled rectangle costs the same four look-ups
    NMS               overlapping detections of one face -> one box (seed 001, TESTING)

Reading order:

    Stump, StumpSearch      the best decision stump of every feature, for any example weights
    train_stage             AdaBoost until a stage meets its target rates
    ViolaJonesCascade       the trained cascade as an nn.Module (buffers, no parameters): scan
    window_support          a window's score: how many overlapping windows agree with it
    viola_jones_postprocess detections -> the windows' merge (boxes.merge_windows) -> top_k
    build_viola_jones       the Detector
The training loop (bootstrapped negatives, checkpoints) is facedet/boosting.py.
"""
from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass
from typing import NamedTuple

import torch
from torch import Tensor, nn

from facedet.boxes import MAX_CONTAINED, box_iou, merge_windows
from facedet.config import ViolaJonesConfig
from facedet.errors import FacedetError
from facedet.models.detector import MIN_SCORE, NMS_IOU, TOP_K, Detector
from facedet.models.haar_features import MAX_RECTS, WINDOW, HaarFeatures, integral_image, window_mean_std

# ITU-R BT.601 luma: the grey level the cascade sees (it was designed for grey images)
LUMA = (0.299, 0.587, 0.114)
# A scan gathers (windows x stumps x 16 corners) integral-image values at once: at most this many
MAX_GATHER = 1 << 22
# The scan evaluates a stage on every window of a scale with strided slices of the integral
# image (~1 ns per look-up) while more than 1 window in this many survives; after that it
# gathers only the survivors' look-ups (~15 ns each, but far fewer of them)
DENSE_FRACTION = 6
# Detections are scored by how many overlapping windows agree (window_support): windows
# overlapping at least this much vote for each other
SUPPORT_IOU = 0.5


def grey_levels(images: Tensor) -> Tensor:
    """(..., 3, H, W) RGB, uint8 0-255 or float in [0, 1] -> (..., H, W) int64 grey levels 0-255."""
    scale = 1.0 if images.dtype == torch.uint8 else 255.0
    luma = torch.tensor(LUMA, dtype=torch.float32).reshape(3, 1, 1)
    return ((images.float() * luma).sum(-3) * scale).round().clamp(0, 255).long()


# --------------------------------------------------------------------------- AdaBoost


@dataclass
class Stump:
    """A decision stump on one feature: face when polarity * value > polarity * threshold."""

    feature: int
    threshold: float
    polarity: int  # +1: faces above the threshold; -1: faces below
    error: float  # weighted error when chosen

    def predict(self, values: Tensor) -> Tensor:
        """values (N,) of this stump's feature -> (N,) bool, True = face."""
        return self.polarity * values > self.polarity * self.threshold


class StumpSearch:
    """The best stump over all features, for any weights: sort once, sweep many times.

    values: (N, F) feature values of N examples; labels: (N,) bool, True = face.
    Each feature's values are sorted ONCE (the order is kept as int32 to halve its memory).
    For given weights, sweeping a threshold up through the sorted values moves one example at
    a time from "above" to "below", so the weighted error of every threshold of every feature
    comes from one cumulative sum. With T+, T- the weight of all faces / non-faces and
    S+(i), S-(i) the weight of faces / non-faces among the i+1 lowest values:

        error, faces above the threshold (polarity +1) = S+ + (T- - S-) = T- + C(i)
        error, faces below the threshold (polarity -1) = S- + (T+ - S+) = T+ - C(i)
        where C(i) = S+(i) - S-(i) = cumulative sum of the SIGNED weights (+w face, -w not)

    so the best threshold of a feature is where C is smallest (polarity +1) or largest (-1).
    A threshold is only placed between two DIFFERENT values (ties cannot be split); after the
    last value it means "nothing above", which with polarity -1 is "everything is a face".
    Features are processed in chunks so that the (chunk, N) temporaries stay small.
    """

    def __init__(self, values: Tensor, labels: Tensor, chunk: int = 1024):
        self.values, self.labels, self.chunk = values, labels.bool(), chunk
        n, f = values.shape
        self.order = torch.empty(f, n, dtype=torch.int32)               # (F, N): feature by feature
        self.tied = torch.empty(f, n, dtype=torch.bool)                 # no threshold after position i
        for start in range(0, f, chunk):
            sorted_values, order = values[:, start:start + chunk].T.sort(dim=1)   # (c, N)
            self.order[start:start + chunk] = order.int()
            self.tied[start:start + chunk, :-1] = sorted_values[:, 1:] == sorted_values[:, :-1]
            self.tied[start:start + chunk, -1] = False

    def best(self, weights: Tensor) -> Stump:
        """The stump of lowest weighted error. weights: (N,) non-negative."""
        weights = weights.float()
        signed = torch.where(self.labels, weights, -weights)            # (N,)
        total_faces = float(weights[self.labels].sum())
        total_other = float(weights.sum()) - total_faces
        best = (math.inf, 0, 0, 1)  # (error, feature, position, polarity)
        for start in range(0, self.order.shape[0], self.chunk):
            cumulative = signed[self.order[start:start + self.chunk]].cumsum(1)      # C (c, N)
            tied = self.tied[start:start + self.chunk]
            lowest = cumulative.masked_fill(tied, math.inf).view(-1).argmin()
            highest = cumulative.masked_fill_(tied, -math.inf).view(-1).argmax()
            n = cumulative.shape[1]
            for polarity, flat in ((1, int(lowest)), (-1, int(highest))):
                c = float(cumulative.view(-1)[flat])
                error = total_other + c if polarity == 1 else total_faces - c
                if error < best[0]:
                    best = (error, start + flat // n, flat % n, polarity)
        error, feature, position, polarity = best
        column = self.values[:, feature].sort().values
        if position + 1 < len(column):
            threshold = float((column[position] + column[position + 1]) / 2)
        else:
            threshold = float(column[-1]) + 1.0
        return Stump(feature, threshold, polarity, max(error, 0.0))


def adaboost_weights(labels: Tensor) -> Tensor:
    """The paper's initial weights: 1 / (2 m) for each of m non-faces, 1 / (2 l) for each of l faces."""
    labels = labels.bool()
    faces, others = int(labels.sum()), int((~labels).sum())
    return torch.where(labels, 0.5 / max(faces, 1), 0.5 / max(others, 1)).double()


@dataclass
class Stage:
    """A trained strong classifier: face when sum(alphas * [stump says face]) >= threshold."""

    stumps: list[Stump]
    alphas: list[float]
    threshold: float
    detection_rate: float  # on the faces it was trained on
    false_positive_rate: float  # on the non-faces it was trained on

    def accepts(self, values: Tensor) -> Tensor:
        """values (N, F) of the feature pool -> (N,) bool, True = the stage passes the example on."""
        total = torch.zeros(len(values), dtype=torch.float64)
        for stump, alpha in zip(self.stumps, self.alphas):
            total += alpha * stump.predict(values[:, stump.feature]).double()
        return total >= self.threshold


def train_stage(search: StumpSearch, detection_rate: float, false_positive_rate: float, max_stumps: int,
                on_round: Callable[[int, float, float], None] | None = None) -> Stage:
    """AdaBoost on `search`'s examples until the stage meets its targets (or max_stumps).

    After each new stump the stage threshold is set as high as it can be while keeping at
    least `detection_rate` of the faces (the paper lowers AdaBoost's default threshold, half
    the sum of the alphas, for the same purpose); the stage is done when at most
    `false_positive_rate` of the non-faces then score above it.
    on_round(stumps so far, detection rate, false-positive rate) reports progress.
    """
    labels = search.labels
    faces = int(labels.sum())
    if faces == 0 or faces == len(labels):
        raise FacedetError(f"a cascade stage needs faces and non-faces, got {faces} faces of {len(labels)} examples")
    weights = adaboost_weights(labels)
    scores = torch.zeros(len(labels), dtype=torch.float64)
    stumps, alphas = [], []
    keep = math.ceil(detection_rate * faces)  # faces that must pass
    while True:
        weights = weights / weights.sum()
        stump = search.best(weights)
        says_face = stump.predict(search.values[:, stump.feature])
        error = min(max(stump.error, 1e-10), 1 - 1e-10)  # a perfect stump would get an infinite vote
        beta = error / (1 - error)
        alpha = math.log(1 / beta)
        correct = says_face == labels
        weights = torch.where(correct, weights * beta, weights)  # w <- w * beta^(1 - e): correct ones shrink
        stumps.append(stump)
        alphas.append(alpha)
        scores += alpha * says_face.double()
        threshold = float(scores[labels].sort(descending=True).values[keep - 1])
        passed = scores >= threshold
        detected = float(passed[labels].float().mean())
        false_positives = float(passed[~labels].float().mean())
        if on_round is not None:
            on_round(len(stumps), detected, false_positives)
        if false_positives <= false_positive_rate or len(stumps) >= max_stumps:
            return Stage(stumps, alphas, threshold, detected, false_positives)


# --------------------------------------------------------------------------- the cascade


class StageParameters(NamedTuple):
    """One stage of a cascade, ready for the scan: stumps start:end, in float64."""

    start: int
    end: int
    weighted_area: Tensor  # (J,) sum_r w_r area_r of each stump's feature
    polarities: Tensor  # (J,)
    thresholds: Tensor  # (J,)
    alphas: Tensor  # (J,)
    threshold: float  # the stage's


class ViolaJonesCascade(nn.Module):
    """A trained cascade as a module: its numbers are buffers (saved in the state_dict, moved by
    .to()), there is nothing to differentiate.

    Buffers (S stumps in all, K stages):
        rects (S, 4, 4) int64 "xyxy" rectangles of each stump's feature in the 24 x 24 window
        rect_weights (S, 4) float32 (+1 white, -1 black, 0 unused); feature_kinds (S,) int64
        thresholds (S,) float32, polarities (S,) float32, alphas (S,) float64
        stage_ends (K,) int64: stage k holds stumps stage_ends[k-1]:stage_ends[k]
        stage_thresholds (K,) float64
        box_aspect () float32: median height / width of the training faces' boxes; a detection
                  window (square, like the training crops) is reported as a box of that shape

    The numbers of stumps and stages are learned, so a checkpoint's buffers can be of any
    size: loading replaces the buffers by the stored tensors instead of copying into them.

    forward(images (B, 3, H, W) in [0, 1]) -> (boxes (B, P, 4) "xyxy" fractional, scores (B, P)),
    P = the most detections of any image; images with fewer are padded with score -1.
    """

    def __init__(self, window: int = WINDOW, scale_factor: float = 1.25, scan_step: float = 1.5,
                 min_window: int = WINDOW, max_window: int = 0):
        super().__init__()
        self.window, self.scale_factor, self.scan_step = window, scale_factor, scan_step
        self.min_window, self.max_window = min_window, max_window
        self.register_buffer("rects", torch.zeros(0, MAX_RECTS, 4, dtype=torch.int64))
        self.register_buffer("rect_weights", torch.zeros(0, MAX_RECTS))
        self.register_buffer("feature_kinds", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("thresholds", torch.zeros(0))
        self.register_buffer("polarities", torch.zeros(0))
        self.register_buffer("alphas", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("stage_ends", torch.zeros(0, dtype=torch.int64))
        self.register_buffer("stage_thresholds", torch.zeros(0, dtype=torch.float64))
        self.register_buffer("box_aspect", torch.tensor(1.0))

    # ------------------------------------------------------------------ building and loading

    def add_stage(self, stage: Stage, features: HaarFeatures) -> None:
        """Append a trained stage; `features` is the pool its stumps' feature indices refer to."""
        index = torch.tensor([s.feature for s in stage.stumps])
        self.rects = torch.cat([self.rects, features.rects[index]])
        self.rect_weights = torch.cat([self.rect_weights, features.weights[index]])
        self.feature_kinds = torch.cat([self.feature_kinds, features.kinds[index]])
        self.thresholds = torch.cat([self.thresholds, torch.tensor([s.threshold for s in stage.stumps])])
        self.polarities = torch.cat([self.polarities, torch.tensor([float(s.polarity) for s in stage.stumps])])
        self.alphas = torch.cat([self.alphas, torch.tensor(stage.alphas, dtype=torch.float64)])
        self.stage_ends = torch.cat([self.stage_ends, torch.tensor([len(self.thresholds)])])
        self.stage_thresholds = torch.cat([self.stage_thresholds, torch.tensor([stage.threshold], dtype=torch.float64)])

    def _load_from_state_dict(self, state_dict, prefix, local_metadata, strict, missing_keys,
                              unexpected_keys, error_msgs):
        for name, buffer in self._buffers.items():  # learned sizes: take the stored shapes
            stored = state_dict.get(prefix + name)
            if isinstance(stored, Tensor) and buffer is not None and stored.dim() == buffer.dim():
                self._buffers[name] = torch.empty_like(stored, dtype=buffer.dtype, device=buffer.device)
        super()._load_from_state_dict(state_dict, prefix, local_metadata, strict, missing_keys,
                                      unexpected_keys, error_msgs)

    @property
    def num_stages(self) -> int:
        return len(self.stage_ends)

    @property
    def stage_sizes(self) -> list[int]:
        """Stumps per stage."""
        return torch.diff(self.stage_ends, prepend=self.stage_ends.new_zeros(1)).tolist()

    @property
    def trained_parameters(self) -> int:
        """Learned numbers: per stump its feature, threshold, polarity and vote; per stage a threshold."""
        return 4 * len(self.thresholds) + len(self.stage_thresholds)

    # ------------------------------------------------------------------ the scan

    def scales(self, height: int, width: int) -> list[float]:
        """Feature scales of the scan: window side min_window * 1.25^k up to the image (or max_window)."""
        largest = min(height, width) if not self.max_window else min(height, width, self.max_window)
        scales, scale = [], self.min_window / self.window
        while pixels(self.window * scale) <= largest:
            scales.append(scale)
            scale *= self.scale_factor
        return scales

    def grid(self, height: int, width: int, scale: float) -> tuple[int, int, int, int]:
        """The windows of one scale: (side, step, rows, cols); windows every pixels(scan_step * scale) px."""
        side = pixels(self.window * scale)
        step = max(1, pixels(self.scan_step * scale))
        return side, step, (height - side) // step + 1, (width - side) // step + 1

    def windows(self, height: int, width: int, scale: float) -> Tensor:
        """(rows * cols, 4) int64 "xyxy" windows of one scale, row by row."""
        side, step, rows, cols = self.grid(height, width, scale)
        yy, xx = torch.meshgrid(torch.arange(rows) * step, torch.arange(cols) * step, indexing="ij")
        top_left = torch.stack([xx.reshape(-1), yy.reshape(-1)], -1)
        return torch.cat([top_left, top_left + side], -1)

    def scaled_stumps(self, scale: float) -> tuple[Tensor, Tensor, Tensor]:
        """The stumps' features at `scale`, as corner look-ups relative to a window's top-left:
        (corner_y (S, 16), corner_x (S, 16), corner_weights (S, 16)) such that
        sum_k corner_weights[k] * ii[y + corner_y[k], x + corner_x[k]] = sum_r w_r area_r sum_r / scaled_area_r.

        Edges are rounded to whole pixels by `pixels`' rule, the window's (so adjacent rectangles
        stay adjacent, and an edge on the 24-px window's border lands on the scaled window's);
        dividing each rectangle's sum by its rounded area and multiplying by its 24-px area keeps
        the value what the stump was trained on.
        """
        scaled = torch.floor(self.rects.double() * scale + 0.5).long()            # (S, 4, 4), as pixels()
        coefficients = self.rect_weights.double() * _area(self.rects) / _area(scaled).clamp(min=1)  # (S, 4)
        x0, y0, x1, y1 = scaled.unbind(-1)                                          # (S, 4) each
        corner_y = torch.stack([y1, y0, y1, y0], -1).reshape(len(scaled), 16)      # (S, 16)
        corner_x = torch.stack([x1, x1, x0, x0], -1).reshape(len(scaled), 16)
        signs = torch.tensor([1.0, -1.0, -1.0, 1.0], dtype=torch.float64)
        return corner_y, corner_x, (coefficients[..., None] * signs).reshape(len(scaled), 16)

    def stage_parameters(self) -> list[StageParameters]:
        """Each stage's stumps in float64, gathered once per scan instead of once per scale."""
        weighted_area = (self.rect_weights.double() * _area(self.rects)).sum(-1)     # (S,)
        starts = [0] + self.stage_ends[:-1].tolist()
        return [StageParameters(start, end, weighted_area[start:end], self.polarities[start:end].double(),
                                self.thresholds[start:end].double(), self.alphas[start:end].double(),
                                float(self.stage_thresholds[k]))
                for k, (start, end) in enumerate(zip(starts, self.stage_ends.tolist()))]

    @staticmethod
    def _stage_total(features: Tensor, mean: Tensor, std: Tensor, stage: StageParameters) -> Tensor:
        """Raw feature sums (..., J) of one stage -> its sum of alpha * [stump says face] (...)."""
        values = (features - mean[..., None] * stage.weighted_area) / std[..., None]   # variance-normalised
        says_face = stage.polarities * values > stage.polarities * stage.thresholds
        return (says_face.double() * stage.alphas).sum(-1)

    def dense_stage_scores(self, ii: Tensor, grid: tuple[int, int, int, int], mean: Tensor, std: Tensor,
                           corners: tuple[Tensor, Tensor, Tensor], stage: StageParameters) -> Tensor:
        """A stage on EVERY window of one scale: mean, std (rows, cols) -> (rows, cols) float64.

        Windows lie on a regular grid, so the look-up of one corner for all of them is a
        strided slice of the integral image (a view, no index arithmetic): the fast path for
        the first stages, which see most windows. Corners shared by two adjacent rectangles
        are looked up once.
        """
        side, step, rows, cols = grid
        corner_y, corner_x, corner_w = (c[stage.start:stage.end].tolist() for c in corners)
        features = torch.zeros(stage.end - stage.start, rows, cols, dtype=torch.float64)  # (J, rows, cols)
        for j in range(stage.end - stage.start):
            merged: dict[tuple[int, int], float] = {}
            for y, x, w in zip(corner_y[j], corner_x[j], corner_w[j]):
                merged[y, x] = merged.get((y, x), 0.0) + w
            for (y, x), w in merged.items():
                if w:
                    features[j].add_(ii[y: y + (rows - 1) * step + 1: step, x: x + (cols - 1) * step + 1: step], alpha=w)
        # as _stage_total, with the stumps on the first axis: every operation runs on contiguous maps
        values = (features - stage.weighted_area[:, None, None] * mean) / std               # (J, rows, cols)
        says_face = stage.polarities[:, None, None] * values > (stage.polarities * stage.thresholds)[:, None, None]
        return (says_face.double() * stage.alphas[:, None, None]).sum(0)

    def stage_scores(self, ii: Tensor, windows: Tensor, mean: Tensor, std: Tensor,
                     corners: tuple[Tensor, Tensor, Tensor], stage: StageParameters) -> Tensor:
        """A stage on some windows (the survivors of the stages before): (N,) float64.

        ii (H+1, W+1) float64; windows (N, 4) "xyxy"; mean, std (N,); corners from `scaled_stumps`.
        Gathers (N, J, 16) integral-image values, at most MAX_GATHER at a time.
        """
        corner_y, corner_x, corner_w = (c[stage.start:stage.end] for c in corners)
        row = ii.shape[1]
        offsets = corner_y * row + corner_x                                        # (J, 16)
        base = windows[:, 1] * row + windows[:, 0]                                 # (N,)
        flat = ii.reshape(-1)
        out = torch.empty(len(windows), dtype=torch.float64)
        chunk = max(1, MAX_GATHER // max(1, offsets.numel()))
        for s in range(0, len(windows), chunk):
            values = flat[base[s:s + chunk, None, None] + offsets]                 # (n, J, 16)
            features = (values * corner_w).sum(-1)                                 # (n, J)
            out[s:s + chunk] = self._stage_total(features, mean[s:s + chunk], std[s:s + chunk], stage)
        return out

    @torch.no_grad()
    def scan(self, grey: Tensor, num_stages: int | None = None,
             stage_counts: list[int] | None = None) -> tuple[Tensor, Tensor]:
        """Every window of one grey image through the first `num_stages` stages (default all).

        grey: (H, W) grey levels 0-255. Returns (windows (P, 4) float32 "xyxy" pixels, square,
        scores (P,)) of the windows that pass; a score is 0.5 + half the last stage's margin,
        (sum - threshold) / (sum of alphas - threshold), so every detection scores in [0.5, 1].
        stage_counts, when given, receives the number of windows entering each stage and,
        last, the number passing all (what the rejection-per-stage figure draws).
        """
        stages = self.num_stages if num_stages is None else min(num_stages, self.num_stages)
        height, width = grey.shape
        # int64 sums are exact on any photo (see integral_image); float64 holds them exactly
        # (< 2**53) and is what the weighted look-ups need
        ii = integral_image(grey.long()).double()
        ii_squared = integral_image(grey.long() ** 2).double()
        found, scores = [], []
        counts = [0] * (stages + 1)
        parameters = self.stage_parameters()
        for scale in self.scales(height, width):
            grid = self.grid(height, width, scale)
            side, step, rows, cols = grid
            windows = self.windows(height, width, scale)                           # (rows * cols, 4)
            mean, std = window_mean_std(ii, ii_squared, windows)
            corners = self.scaled_stumps(scale)
            margin = torch.full((len(windows),), 0.5, dtype=torch.float64)
            alive = torch.ones(len(windows), dtype=torch.bool)  # while many survive: dense slices, masked
            dense = True
            for k in range(stages):
                if dense:
                    counts[k] += int(alive.sum())
                    total = self.dense_stage_scores(ii, grid, mean.view(rows, cols), std.view(rows, cols),
                                                    corners, parameters[k]).reshape(-1)
                    alive &= total >= parameters[k].threshold
                    # once fewer than 1 window in DENSE_FRACTION survives, look up only the survivors
                    dense = k + 1 < stages and int(alive.sum()) * DENSE_FRACTION >= len(alive)
                    if not dense:
                        windows, mean, std, total = windows[alive], mean[alive], std[alive], total[alive]
                    keep = None
                else:
                    counts[k] += len(windows)
                    total = self.stage_scores(ii, windows, mean, std, corners, parameters[k])
                    keep = total >= parameters[k].threshold
                    windows, mean, std, total = windows[keep], mean[keep], std[keep], total[keep]
                stage = parameters[k]
                span = float(stage.alphas.sum()) - stage.threshold
                # span 0: the stage passes only windows where every stump says face; all score 1
                margin = 0.5 + 0.5 * ((total - stage.threshold) / span).clamp(0, 1) if span > 0 \
                    else torch.ones_like(total)
                if not len(windows):
                    break
            counts[stages] += len(windows)
            found.append(windows)
            scores.append(margin)
        if stage_counts is not None:
            stage_counts[:] = counts
        if not found:
            return torch.zeros(0, 4), torch.zeros(0)
        return torch.cat(found).float(), torch.cat(scores).float()

    def window_to_box(self, windows: Tensor) -> Tensor:
        """Square windows (P, 4) "xyxy" -> boxes of the training faces' shape (box_aspect), same centre."""
        aspect = float(self.box_aspect)
        centre = (windows[:, :2] + windows[:, 2:]) / 2
        side = windows[:, 2:3] - windows[:, 0:1]
        half = torch.cat([side * min(1.0, 1 / aspect), side * min(1.0, aspect)], 1) / 2
        return torch.cat([centre - half, centre + half], 1)

    @torch.no_grad()
    def forward(self, images: Tensor) -> tuple[Tensor, Tensor]:
        if images.dim() == 3:
            images = images.unsqueeze(0)
        height, width = images.shape[-2:]
        per_image = [self.scan(grey) for grey in grey_levels(images.cpu())]
        most = max(len(s) for _, s in per_image)
        boxes = torch.zeros(len(per_image), most, 4)
        scores = torch.full((len(per_image), most), -1.0)  # padding: below any min_score
        scale = torch.tensor([width, height, width, height], dtype=torch.float32)
        for b, (windows, score) in enumerate(per_image):
            boxes[b, : len(score)] = (self.window_to_box(windows) / scale).clamp(0, 1)
            scores[b, : len(score)] = score
        return boxes.to(images.device), scores.to(images.device)


def pixels(length: float) -> int:
    """A scaled length in whole pixels, halves rounded up: the one rule for window sides, steps
    and feature edges. (Python's round() sends halves to the even integer: with a 26-px first
    window the second is 26 x 1.25 = 32.5 px, round() made it 32 while its features' edges,
    rounded up, reached 33, one pixel outside the window and past the edge of the photo.)"""
    return math.floor(length + 0.5)


def _area(rects: Tensor) -> Tensor:
    """(..., 4) "xyxy" integer rectangles -> (...) float64 areas."""
    return ((rects[..., 2] - rects[..., 0]) * (rects[..., 3] - rects[..., 1])).double()


def window_support(boxes: Tensor, scores: Tensor, chunk: int = 1024) -> Tensor:
    """Rescore the cascade's windows by how many overlapping windows agree: (P, 4) "xyxy" and
    (P,) scores in [0.5, 1] -> (P,) in [0, 1).

    A face lights up many overlapping windows (neighbouring positions and sizes), a false
    positive usually few: the paper merges overlapping detections, OpenCV keeps a group only
    with min_neighbors = 3 raw hits. Here a window's support is the sum of the margins
    (score - 0.5) of the windows overlapping it with IoU >= SUPPORT_IOU, itself included, and
    its new score is its own score times 1 - exp(-support): a lone window of score 0.75 gets
    0.75 x 0.22 = 0.17, four overlapping ones of 0.75 get 0.75 x 0.63 = 0.47. (On 80 faces-caltech
    validation photos this raised AP50 from 0.42, own score alone, to 0.55.)
    IoU (facedet.boxes) in chunks of rows: at most chunk x P values at once.
    """
    support = torch.empty(len(boxes), dtype=torch.float32, device=boxes.device)
    for start in range(0, len(boxes), chunk):
        overlapping = box_iou(boxes[start:start + chunk], boxes) >= SUPPORT_IOU             # (c, P)
        support[start:start + chunk] = (overlapping.float() * (scores - 0.5)).sum(1)
    return scores * (1 - torch.exp(-support))


def viola_jones_postprocess(outputs: tuple[Tensor, Tensor], *, min_score: float, nms_iou: float, top_k: int,
                            max_contained: float | None = MAX_CONTAINED) -> list[dict[str, Tensor]]:
    """The cascade's windows -> detections: each window scored by its support (`window_support`),
    then merged as the sliding window's are (facedet.boxes.merge_windows: NMS across all sizes,
    then windows nested in a better one dropped unless max_contained is None). Padding (score -1)
    never passes.

    outputs: (boxes (B, P, 4) "xyxy" fractional, scores (B, P)). Returns per image
    {"boxes": (K, 4) "xyxy" fractional, "scores": (K,), "labels": (K,) zeros}, K <= top_k.
    """
    boxes, scores = outputs
    supported = torch.full_like(scores, -1.0)
    for b in range(len(scores)):
        real = scores[b] >= 0
        supported[b, real] = window_support(boxes[b, real], scores[b, real])
    return merge_windows(boxes, supported, max(min_score, 0.0), nms_iou, top_k, max_contained)


class NotDifferentiable(nn.Module):
    """Viola-Jones has no loss to backpropagate: `python -m facedet.train` runs AdaBoost for it."""

    def forward(self, outputs, targets) -> dict[str, Tensor]:
        raise FacedetError("viola_jones is trained by boosting, not by gradient descent: "
                           "run python -m facedet.train --config viola_jones.yaml (facedet/boosting.py)")


def build_viola_jones(cfg: ViolaJonesConfig) -> Detector:
    """An empty cascade (stages are added by facedet.boosting, or loaded from a checkpoint).

    Input policy "whole": the model scans the photo itself; mean 0 and std 1 leave the photo
    in [0, 1], from which the cascade takes grey levels.
    """
    cascade = ViolaJonesCascade(window=cfg.image_size, scale_factor=cfg.scale_factor, scan_step=cfg.scan_step,
                                min_window=cfg.min_window, max_window=cfg.max_window)
    return Detector(model=cascade, criterion=NotDifferentiable(), postprocess=viola_jones_postprocess,
                    task="detection", mean=(0.0, 0.0, 0.0), std=(1.0, 1.0, 1.0), image_size=cfg.image_size,
                    input_policy="whole", min_score=MIN_SCORE, nms_iou=NMS_IOU, top_k=TOP_K)
