"""Training Viola-Jones: boosting stages onto a cascade, with negatives bootstrapped from
face-free photos. `python -m facedet.train --config viola_jones.yaml` comes here (train.py
dispatches on the rung); the gradient trainer (facedet/trainer.py) has nothing to do with it.

    faces       24 x 24 grey crops of the training faces (facedet.data.crops, "tight" framing:
                the square around each box), plus their mirror images; their feature values
                are computed once
    for each stage:
        negatives   windows of the face-free photos that the cascade SO FAR calls faces: its
                    false positives (all windows for the first stage), cut and resized to
                    24 x 24. Each stage thus learns on exactly the mistakes of the ones before:
                    the paper's bootstrapping. When the photos hold too few such windows, the
                    cascade is as good as this negative pool can make it, and training stops.
        AdaBoost    facedet.models.viola_jones.train_stage, to the per-stage targets
        faces       the faces the new stage rejects are not shown to the next stages

The checkpoint is the project's format ({"model": state_dict, "config", ...}), so
facedet.load, infer, evaluate and benchmark treat the cascade like any other rung.
"""
from __future__ import annotations

import csv
import os
import time
from pathlib import Path

import torch
from torch import Tensor
from tqdm import tqdm

from facedet.config import Config, ViolaJonesConfig, save_config, to_dict
from facedet.data.crops import FaceCropDataset, default_cache_dir, list_images, load_image_tensor
from facedet.data.dataset import DetectionDataset, collate_photos
from facedet.data.loaders import load_records
from facedet.data.record import Record
from facedet.data.synthetic import ensure_synthetic_nonfaces
from facedet.data.transforms import resize_image
from facedet.errors import ConfigError
from facedet.evaluation import evaluate_detections
from facedet.files import atomic_save
from facedet.models import build_model
from facedet.models.haar_features import HaarFeatures, feature_values
from facedet.models.viola_jones import StumpSearch, ViolaJonesCascade, grey_levels, train_stage
from facedet.predict import predict

# A stage needs at least this many negatives to learn anything; fewer ends the training
MIN_NEGATIVES = 20


def face_windows(cfg: Config, records: list[Record], generator: torch.Generator) -> tuple[Tensor, float]:
    """The training faces as (N, 24, 24) int64 grey levels, and the median box height / width.

    Crops come from facedet.data.crops (cached), "tight" framing at the window size; at most
    model.max_faces are drawn at random, then mirrored copies are added when model.flip.
    """
    m: ViolaJonesConfig = cfg.model
    crops = FaceCropDataset(records, [], framing="tight", neg_ratio=0.0, min_face_size=cfg.data.min_face_size,
                            size=m.image_size, seed=cfg.train.seed,
                            cache_dir=cfg.data.cache_dir or default_cache_dir(), progress=True)
    if len(crops) == 0:
        raise ConfigError(f"data.root '{cfg.data.root}': no face of at least data.min_face_size="
                          f"{cfg.data.min_face_size} px to train Viola-Jones on")
    faces = grey_levels(crops.images)                                            # (N, 24, 24)
    if m.max_faces and len(faces) > m.max_faces:
        faces = faces[torch.randperm(len(faces), generator=generator)[: m.max_faces]]
    if m.flip:
        faces = torch.cat([faces, faces.flip(-1)])
    boxes = torch.cat([r.boxes.float().reshape(-1, 4) for r in records])
    wh = boxes[:, 2:] - boxes[:, :2]
    big = wh.amin(1) >= cfg.data.min_face_size
    aspect = float((wh[big, 1] / wh[big, 0]).median()) if big.any() else 1.0
    return faces, aspect


def nonface_photos(cfg: Config) -> list[Tensor]:
    """Grey levels (H, W) of the training share of the face-free photos (data.nonfaces; every
    5th photo by name is held out, as for the classifier's crops). With the synthetic data
    set (data.root empty) and no data.nonfaces, face-free synthetic scenes are generated."""
    if cfg.data.nonfaces:
        folder = Path(os.path.expandvars(os.path.expanduser(cfg.data.nonfaces)))
    elif not cfg.data.root:
        folder = ensure_synthetic_nonfaces()
    else:
        raise ConfigError("viola_jones mines its negatives from face-free photos: set data.nonfaces "
                          "(e.g. data.nonfaces=$FACEDET_DATA/nonfaces)")
    paths = [p for i, p in enumerate(list_images(folder)) if i % 5]
    if not paths:
        raise ConfigError(f"data.nonfaces '{folder}': no images in the training share (every 5th is held out)")
    return [grey_levels(load_image_tensor(p)) for p in paths]


def crop_windows(grey: Tensor, windows: Tensor, size: int) -> Tensor:
    """Cut square windows (K, 4) "xyxy" pixels out of a grey image (H, W) and resize each to
    size x size (facedet.data.transforms.resize_image, like the face crops). Returns (K, size, size) int64."""
    out = torch.empty(len(windows), size, size, dtype=torch.int64)
    for k, (x0, y0, x1, y1) in enumerate(windows.long().tolist()):
        out[k] = resize_image(grey[y0:y1, x0:x1].float(), (size, size)).round().clamp(0, 255).long()
    return out


def bootstrap_negatives(cascade: ViolaJonesCascade, photos: list[Tensor], count: int, per_photo: int,
                        generator: torch.Generator) -> tuple[Tensor, int]:
    """Up to `count` false positives of the cascade so far, as (K, 24, 24) grey windows.

    The photos are visited in random order; from each, at most `per_photo` of the windows the
    cascade accepts are drawn at random (so that one busy photo does not supply the whole
    stage). Returns (windows, windows scanned).
    """
    found, scanned, total = [], 0, 0
    for index in torch.randperm(len(photos), generator=generator).tolist():
        counts: list[int] = []
        windows, _ = cascade.scan(photos[index], stage_counts=counts)
        scanned += counts[0]  # windows entering the first stage: all of the photo's
        if len(windows) > per_photo:
            windows = windows[torch.randperm(len(windows), generator=generator)[:per_photo]]
        windows = windows[: count - total]
        if len(windows):
            found.append(crop_windows(photos[index], windows, cascade.window))
            total += len(windows)
        if total >= count:
            break
    window = cascade.window
    return (torch.cat(found) if found else torch.zeros(0, window, window, dtype=torch.int64)), scanned


def boost_stage(k: int, cascade: ViolaJonesCascade, photos: list[Tensor], features: HaarFeatures,
                face_values: Tensor, target: int, cfg: Config,
                generator: torch.Generator) -> tuple[Tensor, dict] | None:
    """Stage k: mine `target` negatives with the cascade so far, boost a stage on them and the
    faces still in play, append it to `cascade`. Returns (the face values the stage keeps,
    its row for stages.csv), or None when the face-free photos hold too few false positives."""
    m: ViolaJonesConfig = cfg.model
    negatives, scanned = bootstrap_negatives(cascade, photos, target, m.negatives_per_photo, generator)
    if len(negatives) < MIN_NEGATIVES:
        print(f"stage {k + 1}: only {len(negatives)} false positives left in {scanned:,} windows of the "
              "face-free photos; the cascade is done")
        return None
    values = torch.cat([face_values, feature_values(negatives, features)])
    labels = torch.cat([torch.ones(len(face_values), dtype=torch.bool), torch.zeros(len(negatives), dtype=torch.bool)])
    search = StumpSearch(values, labels)
    bar = tqdm(total=m.max_stumps_per_stage, desc=f"stage {k + 1}/{m.stages}", dynamic_ncols=True, mininterval=1.0, disable=None)

    def report(rounds: int, detected: float, false_positives: float) -> None:
        bar.update(1)
        bar.set_postfix(faces=f"{detected:.3f}", false_pos=f"{false_positives:.3f}", refresh=False)

    stage = train_stage(search, m.detection_rate, m.false_positive_rate, m.max_stumps_per_stage, report)
    bar.close()
    cascade.add_stage(stage, features)
    row = {"stage": k + 1, "stumps": len(stage.stumps), "faces": len(face_values), "negatives": len(negatives),
           "windows_scanned": scanned, "detection_rate": round(stage.detection_rate, 4),
           "false_positive_rate": round(stage.false_positive_rate, 4)}
    tqdm.write(f"stage {k + 1}: {row['stumps']} stumps, faces kept {row['detection_rate']:.3f}, "
               f"false positives {row['false_positive_rate']:.3f} of {len(negatives)} negatives "
               f"(mined from {scanned:,} windows)")
    # faces this stage rejects are lost for good: later stages never see them (the paper's cascade)
    return face_values[stage.accepts(face_values)], row


def train_viola_jones(cfg: Config) -> dict[str, float]:
    """Train the cascade of `cfg` (model.name viola_jones); write runs/<name>/best.pt; return
    the validation metrics (empty when train.val_every is 0)."""
    m: ViolaJonesConfig = cfg.model
    if cfg.train.resume:
        raise ConfigError("viola_jones cannot resume (train.resume): a cascade trains in minutes, start it again")
    generator = torch.Generator().manual_seed(cfg.train.seed)
    train_records, names = load_records(cfg.data, cfg.data.train_split)
    val_records, _ = load_records(cfg.data, cfg.data.val_split)
    if len(names) != 1:
        raise ConfigError(f"viola_jones detects one class, the data has {len(names)} ({', '.join(names)}); "
                          "set data.classes=face")
    m.num_classes = 1
    run_dir = Path(cfg.out_dir) / (cfg.name or m.name)
    run_dir.mkdir(parents=True, exist_ok=True)
    save_config(cfg, run_dir / "config.yaml")

    start = time.perf_counter()
    faces, aspect = face_windows(cfg, train_records, generator)
    photos = nonface_photos(cfg)
    features = HaarFeatures.enumerate(m.image_size, m.feature_stride)
    print(f"viola_jones: {len(faces)} face crops ({'with' if m.flip else 'no'} mirror copies), "
          f"{len(photos)} face-free photos, {len(features):,} Haar features "
          f"(stride {m.feature_stride}), run {run_dir}")
    detector = build_model(m)
    cascade: ViolaJonesCascade = detector.model
    cascade.box_aspect.fill_(aspect)
    face_values = feature_values(faces, features)                                # (P, F), computed once
    target = m.negatives or len(faces)
    history: list[dict] = []
    interrupted = False
    for k in range(m.stages):
        if m.time_limit_min and time.perf_counter() - start > 60 * m.time_limit_min:
            print(f"time limit of {m.time_limit_min:g} min reached after {k} stages (model.time_limit_min)")
            break
        try:
            result = boost_stage(k, cascade, photos, features, face_values, target, cfg, generator)
        except KeyboardInterrupt:  # Ctrl-C: keep the stages done so far, like the gradient trainer
            interrupted = True
            print(f"\ninterrupted during stage {k + 1}: keeping {cascade.num_stages} stages")
            break
        if result is None:
            break
        face_values, row = result
        history.append({**row, "train_time_s": round(time.perf_counter() - start, 1)})
        # after every stage: a stopped run (Ctrl-C, a kill) keeps the cascade so far
        save_cascade(run_dir / "best.pt", cascade, cfg, names, history, time.perf_counter() - start, {})
    train_time = time.perf_counter() - start
    if not cascade.num_stages:
        raise ConfigError("viola_jones trained no stage: the face-free photos gave no negatives")

    detector.config, detector.class_names = cfg, list(names)
    metrics: dict[str, float] = {}
    if cfg.train.val_every > 0 and val_records and not interrupted:
        loader = torch.utils.data.DataLoader(DetectionDataset(val_records), batch_size=1, num_workers=0,
                                             collate_fn=collate_photos)
        detections, truths = predict(detector, loader, cfg.eval, desc="validate")
        metrics = evaluate_detections(detections, truths, names, iou_thresholds=cfg.eval.iou_thresholds,
                                      use_07_metric=cfg.eval.use_07_metric, voc_rule=cfg.eval.voc_rule).as_dict()
    with open(run_dir / "stages.csv", "w", newline="") as f:  # not metrics.csv: no epochs, no loss
        writer = csv.DictWriter(f, fieldnames=list(history[0]))
        writer.writeheader()
        writer.writerows(history)
    save_cascade(run_dir / "best.pt", cascade, cfg, names, history, train_time, metrics)
    shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if "/" not in k)
    print(f"done: {cascade.num_stages} stages, {len(cascade.thresholds)} stumps {cascade.stage_sizes} in "
          f"{train_time:.0f} s; {shown or 'not validated'}; {run_dir / 'best.pt'}")
    return metrics


def save_cascade(path: Path, cascade: ViolaJonesCascade, cfg: Config, names: list[str], history: list[dict],
                 train_time: float, metrics: dict[str, float]) -> None:
    """The project's checkpoint format: facedet.checkpoint.load_detector rebuilds the cascade from it.
    "epoch" counts stages and "iteration" stumps; train_time_s excludes validation."""
    atomic_save({"model": cascade.state_dict(), "config": to_dict(cfg), "epoch": cascade.num_stages,
                 "iteration": len(cascade.thresholds), "train_time_s": train_time, "metrics": metrics,
                 "history": history, "class_names": list(names)}, path)
