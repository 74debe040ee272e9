"""Selective Search proposals computed once per photo and kept on disk, and their recall.

Selective Search takes seconds per photo, and R-CNN / Fast R-CNN read the same proposals every
epoch, so they are computed once: one file per data split and settings,

    <cache_dir>/<name>-<settings digest>.pt
        = {"settings": {...}, "photos": {path: {"boxes": (P, 4), "seconds": wall s, "cpu_seconds": s}}}

Photos already in the file are not computed again, so a larger --max-images only adds the
new ones, and an interrupted run keeps what it had (the file is rewritten every `save_every`
photos). The cache folder is $FACEDET_CACHE/proposals (else ~/.cache/facedet/proposals).

    cached_proposals   records -> one (P, 4) "xyxy" pixel tensor per photo, best-ranked first
    proposal_recall    the share of ground-truth boxes that some top-N proposal overlaps at IoU >= t
"""
from __future__ import annotations

import hashlib
import json
import time
from collections.abc import Callable, Sequence
from dataclasses import asdict
from pathlib import Path

import numpy as np
import torch
from torch import Tensor

from facedet.boxes import box_iou
from facedet.data.images import load_image
from facedet.data.record import Record
from facedet.data.synthetic import cache_dir
from facedet.selective_search import SelectiveSearchConfig, selective_search

CACHE_VERSION = 1  # bump when the algorithm changes what it proposes


def default_proposals_dir() -> Path:
    """facedet's cache folder ($FACEDET_CACHE, else ~/.cache/facedet) / "proposals"."""
    return cache_dir() / "proposals"


def settings_of(config: SelectiveSearchConfig, keep: int) -> dict:
    """Everything that changes the stored boxes, as plain JSON-able values."""
    return {"version": CACHE_VERSION, "keep": keep, **json.loads(json.dumps(asdict(config)))}


def proposals_path(folder: Path, name: str, settings: dict) -> Path:
    """<folder>/<name>-<first 12 hex digits of the settings' SHA-256>.pt."""
    digest = hashlib.sha256(json.dumps(settings, sort_keys=True).encode()).hexdigest()[:12]
    return Path(folder) / f"{name}-{digest}.pt"


def cached_proposals(records: Sequence[Record], name: str, config: SelectiveSearchConfig = SelectiveSearchConfig(),
                     keep: int = 2000, folder: Path | None = None, save_every: int = 10,
                     progress: Callable[[int, int, float], None] | None = None) -> tuple[list[Tensor], list[dict]]:
    """Selective Search boxes for each record's photo, from the cache or computed (and stored).

    name: the split's name in the file name, e.g. "faces-caltech-val"; keep: the best-ranked
    boxes stored per photo. Returns (boxes: one (P_i, 4) float32 "xyxy" pixel tensor per record,
    P_i <= keep; seconds: the time Selective Search took on each photo when it was computed).
    progress(done, total, seconds of the last photo) is called after each computed photo.
    """
    if keep < 1:
        raise ValueError(f"cached_proposals: keep must be >= 1 box per photo; got {keep}")
    settings = settings_of(config, keep)
    path = proposals_path(folder or default_proposals_dir(), name, settings)
    store = torch.load(path, weights_only=True) if path.exists() else {"settings": settings, "photos": {}}
    if store["settings"] != settings:
        raise ValueError(f"{path}: stored settings {store['settings']} differ from the requested {settings}")
    photos = store["photos"]
    missing = [r for r in records if str(r.image_path) not in photos]
    for done, record in enumerate(missing, start=1):
        rgb = np.asarray(load_image(record.image_path))
        start, start_cpu = time.perf_counter(), time.process_time()
        boxes = selective_search(rgb, config)[:keep]
        seconds = time.perf_counter() - start
        # CPU time as well: on a shared machine the wall time mostly measures the other jobs
        photos[str(record.image_path)] = {"boxes": boxes, "seconds": seconds,
                                          "cpu_seconds": time.process_time() - start_cpu}
        if progress is not None:
            progress(done, len(missing), seconds)
        if done % save_every == 0 or done == len(missing):
            path.parent.mkdir(parents=True, exist_ok=True)
            torch.save(store, path)
    entries = [photos[str(r.image_path)] for r in records]
    return [e["boxes"] for e in entries], [{k: float(v) for k, v in e.items() if k != "boxes"} for e in entries]


def proposal_recall(proposals: Sequence[Tensor], targets: Sequence[Tensor], counts: Sequence[int],
                    iou_threshold: float = 0.5) -> dict[int, float]:
    """Recall of ground truth by the top-N proposals, for each N in counts -> {N: share in [0, 1]}.

    proposals[i] (P_i, 4) best first and targets[i] (G_i, 4), both "xyxy" pixels of photo i.
    A ground-truth box is found when one of the first N proposals overlaps it at IoU >= the
    threshold; the share is over all ground-truth boxes of all photos (a photo without
    proposals finds none of its boxes). No ground truth at all is an error (recall undefined).
    """
    if len(proposals) != len(targets):
        raise ValueError(f"proposal_recall: {len(proposals)} proposal lists for {len(targets)} photos")
    total = sum(len(t) for t in targets)
    if total == 0:
        raise ValueError("proposal_recall: the photos hold no ground-truth box, so recall is undefined")
    found = {n: 0 for n in counts}
    for boxes, truth in zip(proposals, targets):
        if len(truth) == 0:
            continue
        if len(boxes) == 0:
            continue
        iou = box_iou(truth.float(), boxes.float())  # (G, P)
        # the rank of the first proposal that finds each truth box (P if none does)
        hits = iou >= iou_threshold
        first = torch.where(hits.any(dim=1), hits.float().argmax(dim=1), torch.full((len(truth),), len(boxes)))
        for n in counts:
            found[n] += int((first < n).sum())
    return {n: found[n] / total for n in counts}
