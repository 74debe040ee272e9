"""One command regenerates doc_images/: `python -m facedet.tools.figures`.

Two kinds of figures:

* drawn from the library alone, always: the torchinfo tables of the seed-size models, the
  receptive-field calculator and its growth plot, the BCE worked example, the integral image
  and the five Haar feature types (Viola-Jones), the focal loss curves and its loss shares at
  the first step, a P3 cell's field with and without FPN's top-down path (RetinaNet), SSD's priors (at
  the centre cell of conv9_2 and on a 4 x 4 toy grid), prior matching, NMS before/after on
  toy proposals, the truth matrix of a synthetic scene and the touching-faces failure of
  connected components;
* drawn from trained runs, when their checkpoints exist under --runs (runs/<name>/best.pt,
  as benchmarks/train_ladder.sh writes them, or the file --checkpoint NAME=PATH names): Viola-Jones'
  first features on a face, its rejection per stage and its detections (viola_jones), embedding
  strips, feature maps and framing (classifier, classifier32, classifier_tight, classifier_large),
  sliding-window results (classifier), probability grids, 7 x 7 vs 14 x 14 and component boxes (grid7,
  grid14, grid_cnn), NMS before/after (yolo_face, ssd300_bccd), heatmap, peaks and boxes
  (centernet_face), training charts (every run with a metrics.csv) and precision-recall curves (every
  detection run). A missing checkpoint skips its figures with a one-line note; the command still
  succeeds and lists what it skipped.

`--only` draws some sections of SECTIONS, e.g. one rung's figures from a checkpoint of your own:

    python -m facedet.tools.figures                                   # library figures + whatever runs/ holds
    python -m facedet.tools.figures --runs runs --data $FACEDET_DATA/faces-caltech --out doc_images
    python -m facedet.tools.figures --only grid --checkpoint grid7=runs/grid7/best.pt \\
        --checkpoint grid14=runs/grid14/best.pt --images photos/     # your photos, no true boxes
    python -m facedet.tools.figures --only classifier --checkpoint classifier=runs/classifier/best.pt \\
        --data $FACEDET_DATA/faces-caltech --nonfaces $FACEDET_DATA/nonfaces
"""
from __future__ import annotations

import argparse
import csv
import os
from collections.abc import Callable, Collection, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import torch
from PIL import Image
from torch import Tensor

from facedet.checkpoint import load_detector
from facedet.cli import DefaultsHelpFormatter, select_device
from facedet.config import DataConfig, model_config
from facedet.data.crops import list_images
from facedet.data.dataset import collate_photos
from facedet.data.images import collect_images, load_image
from facedet.data.loaders import build_datasets, build_loader, load_records
from facedet.data.synthetic import render_scene
from facedet.errors import ConfigError, DataError, FacedetError
from facedet.evaluation import evaluate_detections
from facedet.tools.figures import (bce, centernet, classifier, detections, focal, grid, priors, pyramid, receptive_field,
                             summaries, viola_jones)
from facedet.models import build_model
from facedet.models.classifier import CNNClassifier
from facedet.models.detector import to_image_tensor
from facedet.models.grid import GridSimpleCNNModel
from facedet.models.sliding_window import detector_from_classifier
from facedet.models.ssd import PRIOR_MAPS, PRIORS_PER_CELL, SSD300, make_priors
from facedet.models.viola_jones import grey_levels
from facedet.models.yolo_face import YOLOFaceCNN, YOLOFaceTiny
from facedet.plots import plot_pr_curves
from facedet.predict import predict
from facedet.training_chart import plot_training_chart

# The runs the checkpoint figures look for, and what each one draws (for the skip notes).
RUNS = {
    "viola_jones": "first Haar features on a face, rejection per stage, cascade before/after NMS, PR curve",
    "classifier": "embedding strip, feature maps, framing, sliding-window results",
    "classifier32": "32-d embedding strip",
    "classifier_tight": "framing: the classifier trained on tight crops",
    "classifier_large": "framing: the classifier trained on large crops",
    "grid7": "7 x 7 probability grids, component boxes, PR curve",
    "grid14": "7 vs 14 combined grids, PR curve",
    "grid_cnn": "grid_cnn probability grids, PR curve",
    "yolo_face": "YOLO-face before/after NMS, PR curve",
    "ssd300_bccd": "SSD300 before/after NMS on blood cells, PR curves",
    "retinanet_face": "PR curve",
    "centernet_face": "CenterNet heatmap, peaks and boxes, PR curve",
}
DETECTION_RUNS = ("viola_jones", "grid7", "grid14", "grid_cnn", "yolo_face", "ssd300_bccd", "retinanet_face",
                  "centernet_face")
# What --only can pick: the library's figures, and each kind of checkpoint figure with the runs it reads.
SECTIONS = {
    "library": (),
    "viola_jones": ("viola_jones",),
    "classifier": ("classifier", "classifier32", "classifier_tight", "classifier_large"),
    "grid": ("grid7", "grid14", "grid_cnn"),
    "nms": ("yolo_face", "ssd300_bccd"),
    "centernet": ("centernet_face",),
    "pr": DETECTION_RUNS,
    "charts": (),  # every run directory under --runs that holds a metrics.csv
}
SYNTHETIC_STREAM = 3  # the random stream of the figures' synthetic scenes: not train (0), val (1), demo (2)


# --------------------------------------------------------------------------- the library figures


def library_figures(out: Path, dpi: int = 110) -> list[Path]:
    """Every figure that needs no trained model, written to `out`. Returns the files."""
    photo_dpi = round(0.8 * dpi)  # figures full of photo pixels: keeps each PNG under ~300 KB
    written: list[Path] = []
    for name in summaries.seed_models():
        text = summaries.seed_summary(name)
        (out / f"summary_{name}.txt").parent.mkdir(parents=True, exist_ok=True)
        (out / f"summary_{name}.txt").write_text(text + "\n")
        written += [out / f"summary_{name}.txt", summaries.plot_text(text, out / f"summary_{name}.png", name, dpi=dpi)]

    # the receptive field of each rung's convolution stack, traced on the meta device
    with torch.device("meta"):
        stacks: dict[str, tuple[torch.nn.Module, int, Callable | None]] = {
            "classifier": (CNNClassifier(), 128, None),
            "grid_simple": (GridSimpleCNNModel(7), 224, None),
            "yolo_face": (YOLOFaceCNN(), 224, None),
            "yolo_face_tiny": (YOLOFaceTiny(), 224, None),
            "ssd300": (SSD300(20), 300, lambda m, x: m.aux(m.base(x)[1])),  # base and extra layers only
        }
    fields = {name: receptive_field.traced_fields(model, size, forward) for name, (model, size, forward) in stacks.items()}
    notes = {
        "classifier": "Then Linear 131072 -> 512: every embedding neuron sees the whole 128 px crop.",
        "grid_simple": "Then Linear 100352 -> 4096: every cell's probability depends on the whole image.",
        "yolo_face": "Then Linear 100352 -> 4096: every cell's box depends on the whole image.",
        "yolo_face_tiny": "No linear head: a cell sees only its 127 px field, enough for a face of up to ~100 px.",
        "ssd300": "Priors of conv4_3 (0.1 x 300 = 30 px) sit on 92 px fields; conv9_2's (165 px) on 516 px fields.",
    }
    tables = []
    for name, rows in fields.items():
        size = stacks[name][1]
        tables.append(receptive_field.format_receptive_field_table(rows, f"{name} ({size} px input)") + "\n" + notes[name])
        written.append(receptive_field.plot_receptive_field_table(
            rows, out / f"receptive_field_{name}.png", size, f"receptive field calculator: {name}", notes[name], dpi=dpi))
    (out / "receptive_field.txt").write_text("\n\n".join(tables) + "\n")
    written.append(out / "receptive_field.txt")
    written.append(receptive_field.plot_receptive_field_growth(
        {name: (rows, stacks[name][1]) for name, rows in fields.items()}, out / "receptive_field_growth.png", dpi=dpi))
    scene, faces = render_scene(np.random.default_rng([0, SYNTHETIC_STREAM, 0]), 224, min_faces=2, max_faces=3)
    written.append(receptive_field.plot_receptive_field_on_image(
        scene, {"yolo_face conv stack (14 x 14)": fields["yolo_face"], "yolo_face_tiny (7 x 7)": fields["yolo_face_tiny"]},
        out / "receptive_field_cell.png", dpi=dpi))

    written.append(bce.plot_bce_worked_example(out / "bce_worked_example.png", dpi=dpi))
    written.append(focal.plot_focal_loss_curves(out / "focal_loss_curves.png", dpi=dpi))
    written.append(focal.plot_loss_shares_at_init(out / "focal_loss_shares_init.png", dpi=dpi))
    fields = {}
    for top_down in (False, True):  # RetinaNet's P3 with and without FPN's top-down path
        torch.manual_seed(0)
        model = build_model(model_config("retinanet", num_classes=1, top_down=top_down)).model
        fields[f"P3 {'with' if top_down else 'without'} top-down"] = pyramid.cell_field(model, 256)
    written.append(pyramid.plot_cell_fields(fields, out / "fpn_cell_field.png", scene,
                                            title="the input pixels one P3 cell depends on", dpi=photo_dpi))
    written.append(viola_jones.plot_integral_image(out / "integral_image.png", dpi=dpi))
    written.append(viola_jones.plot_feature_types(out / "haar_feature_types.png", dpi=dpi))

    maps = [(size, k) for (_, size, _, _), k in zip(PRIOR_MAPS, PRIORS_PER_CELL)]
    conv9_2 = [name for name, *_ in PRIOR_MAPS].index("conv9_2")
    labels = ["1:1, s = 0.55", "extra 1:1, s' = sqrt(0.55 x 0.725) = 0.63", "2:1", "3:1", "1:2", "1:3"]
    photo, _ = render_scene(np.random.default_rng([1, SYNTHETIC_STREAM, 0]), 300, min_faces=1, max_faces=2)
    written.append(priors.plot_priors_at_cell(make_priors(), maps, conv9_2, 2, 2, out / "priors_conv9_2_centre.png",
                                              labels, photo, title="SSD300: the 6 priors of conv9_2's centre cell (5 x 5 map)",
                                              dpi=dpi))
    written.append(priors.plot_toy_grid_priors(out / "priors_toy_grid.png", dpi=dpi))
    written.append(priors.plot_prior_matching(out / "prior_matching.png", dpi=dpi))
    written.append(detections.plot_toy_nms(out / "nms_before_after.png", dpi=photo_dpi))

    scene, faces = render_scene(np.random.default_rng([2, SYNTHETIC_STREAM, 0]), 256, min_faces=2, max_faces=3)
    written.append(grid.plot_truth_matrix(scene, faces, 7, out / "truth_matrix_synthetic.png", dpi=photo_dpi))
    written.append(grid.plot_touching_failure(out / "touching_failure.png", dpi=photo_dpi))
    written.append(centernet.plot_target_example(out / "centernet_targets.png", dpi=photo_dpi))
    return written


# --------------------------------------------------------------------------- the checkpoint figures


def _photos(data: str, split: str, count: int, images: Sequence[str] = (),
            seed: int = 0) -> list[tuple[str, Image.Image, Tensor | None]]:
    """(name, RGB photo, "xyxy" pixel face boxes or None) for the figures: every photo of `images`
    (files or folders; their faces unknown), the first `count` photos of `data` (any layout facedet
    reads), or `count` synthetic scenes when both are empty."""
    photos: list[tuple[str, Image.Image, Tensor | None]] = []
    if images:
        paths = collect_images(images)
        if not paths:
            raise DataError(f"--images {' '.join(images)}: no image files found")
        photos += [(path.stem, load_image(path), None) for path in paths]
    if data:
        records, _ = load_records(DataConfig(root=data, classes="face"), split)
        photos += [(record.image_path.stem, load_image(record.image_path), record.boxes) for record in records[:count]]
    if not images and not data:
        rng = np.random.default_rng([seed, SYNTHETIC_STREAM, 1])
        scenes = [render_scene(rng, 256, min_faces=1, max_faces=3) for _ in range(count)]
        photos += [(f"synthetic_{i}", scene.convert("RGB"), boxes) for i, (scene, boxes) in enumerate(scenes)]
    seen: dict[str, int] = {}  # photo.jpg in two folders must not overwrite each other's figure: photo, photo_1
    unique = []
    for name, photo, boxes in photos:
        n = seen.get(name, 0)
        seen[name] = n + 1
        unique.append((name if n == 0 else f"{name}_{n}", photo, boxes))
    return unique


def _training_chart(run_dir: Path, out: Path, dpi: int) -> Path | None:
    """runs/<name>/metrics.csv -> out/training_chart_<name>.png (None without metrics)."""
    metrics = run_dir / "metrics.csv"
    if not metrics.is_file():
        return None
    with metrics.open() as file:
        history = [{k: float(v) for k, v in row.items() if v not in ("", None)} for row in csv.DictReader(file)]
    if not history:
        return None
    metric = next((m for m in ("mAP", "auc") if any(m in row for row in history)), "loss")
    path = out / f"training_chart_{run_dir.name}.png"
    plot_training_chart(history, path, metric)
    return path


def _pr_curve(run: str, detector: Any, cfg: Any, out: Path, data: str, max_images: int,
              device: torch.device) -> tuple[Path, float]:
    """Evaluate a detection run on (up to max_images of) its validation split -> pr_<run>.png, AP."""
    if data:
        cfg.data.root, cfg.data.classes = data, "face"
    cfg.eval.max_images = max_images
    _, val_set, class_names = build_datasets(cfg, detector.mean, detector.std)
    loader = build_loader(val_set, cfg, train=False, device=device, collate_fn=collate_photos)
    found, truths = predict(detector, loader, cfg.eval, desc=f"evaluate {run}")
    result = evaluate_detections(found, truths, class_names, iou_thresholds=cfg.eval.iou_thresholds)
    where = Path(cfg.data.root).name or "synthetic"
    path = plot_pr_curves(result.pr_curves(), out / f"pr_{run}.png",
                          title=f"{run} on {where} ({len(found)} images): mAP50 {result.mAP:.3f}")
    return path, result.mAP


def run_figures(runs: Path, out: Path, data: str = "", split: str = "val", count: int = 2, max_images: int = 100,
                device: str = "cpu", dpi: int = 110, sections: Collection[str] = tuple(SECTIONS),
                checkpoints: Mapping[str, str] | None = None, images: Sequence[str] = (),
                nonfaces: str | None = None) -> tuple[list[str], list[str]]:
    """Every checkpoint figure of `sections` whose run exists: runs/<name>/best.pt, or the file
    `checkpoints` names for that run. `images` replace `data` as the photos drawn; `nonfaces` (a
    folder) gives the classifier's extra negatives (default: its own data.nonfaces unless `data` is
    given). Returns (written, skipped) lines."""
    dev = select_device(device)
    photo_dpi = round(0.7 * dpi)  # figures full of photo pixels: keeps each PNG under ~300 KB
    pair_dpi = round(0.6 * dpi)   # the same for two photo panels side by side
    written: list[str] = []
    skipped: list[str] = []
    checkpoint = {name: Path((checkpoints or {}).get(name, runs / name / "best.pt")) for name in RUNS}
    wanted = [name for name in RUNS if any(name in SECTIONS[section] for section in sections)]
    present = {name for name in wanted if checkpoint[name].is_file()}
    skipped += [f"{name}: no {checkpoint[name]} -> skipped {RUNS[name]}" for name in wanted if name not in present]
    photos = _photos(data, split, count, images) if present else []

    def attempt(name: str, draw: Callable[[], list[str]]) -> None:
        """Draw one run's figures; bad data or a bad checkpoint skips them with its one-line reason."""
        try:
            written.extend(draw())
        except FacedetError as err:
            skipped.append(f"{name}: {err}")

    def classifier_figures() -> list[str]:
        detector = load_detector(checkpoint["classifier"], dev)
        cfg = detector.config
        compare = {name.split("_")[1]: load_detector(checkpoint[name], dev).model
                   for name in ("classifier_tight", "classifier_large") if name in present}
        root = data or cfg.data.root
        records, _ = load_records(DataConfig(root=root, classes="face"), split)
        negatives = nonfaces if nonfaces is not None else "" if data else cfg.data.nonfaces
        negative_photos = list_images(os.path.expandvars(negatives)) if negatives else []
        lines = classifier.draw_classifier_figures(detector, records[:200], negative_photos, out, compare=compare,
                                                   source=f"{root or 'synthetic'} ({split})",
                                                   feature_map_dpi=round(0.7 * dpi),  # 27 image panels
                                                   name=cfg.data.framing)
        m = cfg.model
        scanner = detector_from_classifier(detector, window_sizes=m.window_sizes, stride_fraction=m.window_stride,
                                           image_side=m.window_image_side)
        for photo_name, photo, boxes in photos:
            before, after = detections.nms_before_after(scanner, photo, min_score=0.5, nms_iou=0.3)
            windows = scanner.model.num_windows(photo.height, photo.width)
            path = detections.plot_before_after(
                photo, before, after, out / f"sliding_window_{photo_name}.png", true_boxes_xyxy=boxes, dpi=pair_dpi,
                title=f"sliding window: {windows} windows of sizes {scanner.model.sizes} px scanned",
                caption="Left: every window the classifier scores >= 0.5. Right: after NMS across sizes "
                        "(IoU 0.3) and dropping windows nested in a better one.")
            lines.append(str(path))
        return lines

    def classifier32_figures() -> list[str]:
        detector = load_detector(checkpoint["classifier32"], dev)
        cfg = detector.config
        root = data or cfg.data.root
        records, _ = load_records(DataConfig(root=root, classes="face"), split)
        return classifier.draw_classifier_figures(detector, records[:200], [], out, feature_maps=0, framing=False,
                                                  source=f"{root or 'synthetic'} ({split})")

    def grid_figures() -> list[str]:
        lines = []
        loaded = {name: grid.load_grid_checkpoint(checkpoint[name], dev)
                  for name in ("grid7", "grid14", "grid_cnn") if name in present}
        for photo_name, photo, boxes in photos:
            probs = {name: grid.grid_probabilities(d, photo) for name, (d, _, _) in loaded.items()}
            for name, p in probs.items():
                lines.append(str(grid.plot_probability_grid(photo, p, out / f"{name}_{photo_name}.png", 0.5, boxes,
                                                            title=f"{name}: {p.shape[-1]} x {p.shape[-1]} grid",
                                                            dpi=photo_dpi)))
            if "grid7" in probs and "grid14" in probs:
                lines.append(str(grid.plot_combined(photo, probs["grid7"], probs["grid14"],
                                                    out / f"combined_{photo_name}.png", 0.5, boxes, dpi=pair_dpi)))
            if boxes is not None:
                lines.append(str(grid.plot_truth_matrix(photo, boxes, 7, out / f"truth_matrix_{photo_name}.png",
                                                        dpi=photo_dpi)))
        return lines

    def nms_figures(name: str) -> Callable[[], list[str]]:
        def draw() -> list[str]:
            detector = load_detector(checkpoint[name], dev)
            cfg = detector.config
            own = _photos(cfg.data.root, split, count) if name == "ssd300_bccd" else photos
            lines = []
            for photo_name, photo, boxes in own:
                before, after = detections.nms_before_after(detector, photo, min_score=0.3, nms_iou=0.45)
                lines.append(str(detections.plot_before_after(
                    photo, before, after, out / f"{name}_nms_{photo_name}.png", true_boxes_xyxy=boxes, dpi=pair_dpi,
                    title=f"{name}: every proposal scoring >= 0.3, then NMS at IoU 0.45")))
            return lines
        return draw

    def centernet_figures() -> list[str]:
        detector = load_detector(checkpoint["centernet_face"], dev)
        lines = []
        for photo_name, photo, boxes in photos:
            maps = centernet.predicted_maps(detector, photo, min_score=0.3)
            lines.append(str(centernet.plot_heatmap_peaks_boxes(
                photo, maps, out / f"centernet_face_{photo_name}.png", true_boxes_xyxy=boxes, dpi=pair_dpi,
                title="centernet_face: predicted heatmap, its peaks scoring >= 0.3, the boxes read there")))
        return lines

    def pr_figure(name: str) -> Callable[[], list[str]]:
        def draw() -> list[str]:
            detector = load_detector(checkpoint[name], dev)
            cfg = detector.config
            path, ap = _pr_curve(name, detector, cfg, out, "" if name == "ssd300_bccd" else data, max_images, dev)
            return [f"{path}  mAP50={ap:.3f}"]
        return draw

    def viola_jones_figures() -> list[str]:
        detector = load_detector(checkpoint["viola_jones"], dev)
        cascade = detector.model
        greys = [grey_levels(to_image_tensor(photo)) for _, photo, _ in photos]
        faces = [viola_jones.face_window(grey, boxes, cascade.window) for grey, (_, _, boxes) in zip(greys, photos)]
        faces = [face for face in faces if face is not None]
        lines = []
        if faces:
            lines.append(str(viola_jones.plot_first_features(cascade, faces[0], out / "viola_jones_first_features.png",
                                                             count=6, dpi=dpi)))
        counts = viola_jones.stage_counts(cascade, greys)
        lines.append(str(viola_jones.plot_rejection_per_stage(counts, out / "viola_jones_rejection.png",
                                                              cascade.stage_sizes, dpi=dpi)))
        for photo_name, photo, boxes in photos:
            before, after = detections.nms_before_after(detector, photo, min_score=0.2, nms_iou=0.3)
            lines.append(str(detections.plot_before_after(
                photo, before, after, out / f"viola_jones_{photo_name}.png", true_boxes_xyxy=boxes, dpi=pair_dpi,
                title=f"Viola-Jones: {cascade.num_stages} stages, {len(cascade.thresholds)} stumps; windows passing "
                      "every stage and supported by their neighbours (score >= 0.2), then NMS at IoU 0.3")))
        return lines

    if "viola_jones" in sections and "viola_jones" in present:
        attempt("viola_jones", viola_jones_figures)
    if "classifier" in sections and "classifier" in present:
        attempt("classifier", classifier_figures)
    if "classifier" in sections and "classifier32" in present:
        attempt("classifier32", classifier32_figures)
    if "grid" in sections and present & set(SECTIONS["grid"]):
        attempt("grid", grid_figures)
    for name in SECTIONS["nms"] if "nms" in sections else ():
        if name in present:
            attempt(name, nms_figures(name))
    if "centernet" in sections and "centernet_face" in present:
        attempt("centernet_face", centernet_figures)
    for name in DETECTION_RUNS if "pr" in sections else ():
        if name in present:
            attempt(name, pr_figure(name))
    if "charts" in sections and runs.is_dir():
        for run_dir in sorted(p for p in runs.iterdir() if p.is_dir()):
            path = _training_chart(run_dir, out, dpi)
            if path is not None:
                written.append(str(path))
    return written, skipped


# --------------------------------------------------------------------------- command line


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m facedet.tools.figures",
        description="Regenerate every figure of doc_images/: the library's figures (model summaries, receptive "
                    "field, BCE example, SSD priors and matching, NMS, truth matrix, touching faces, CenterNet targets) and, for every "
                    "trained run found under --runs (" + ", ".join(RUNS) + "), its figures and training chart. "
                    "Missing runs are skipped with a note. --only draws some sections: "
                    + "; ".join(f"{name} ({', '.join(runs) or ('every metrics.csv' if name == 'charts' else 'no run')})"
                                for name, runs in SECTIONS.items()) + ".",
        epilog="Examples: python -m facedet.tools.figures --runs runs --data $FACEDET_DATA/faces-caltech --out doc_images; "
               "python -m facedet.tools.figures --only grid --checkpoint grid7=runs/grid7/best.pt "
               "--checkpoint grid14=runs/grid14/best.pt --images photos/",
        formatter_class=DefaultsHelpFormatter,
    )
    parser.add_argument("--out", default="doc_images", help="folder for the figures")
    parser.add_argument("--runs", default="runs", help="folder of run directories, runs/<name>/best.pt")
    parser.add_argument("--only", nargs="+", choices=list(SECTIONS), default=None, metavar="SECTION",
                        help="draw only these sections of " + ", ".join(SECTIONS) + " (default: every section)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                        help="use PATH as run NAME's checkpoint instead of runs/NAME/best.pt (repeatable), "
                             "e.g. grid7=my_grid.pt; NAME is one of " + ", ".join(RUNS))
    parser.add_argument("--data", default=None,
                        help="face photos for the checkpoint figures and PR curves (any layout facedet reads); "
                             "without it: synthetic scenes, and each run's own validation data for its PR curve")
    parser.add_argument("--images", nargs="+", default=[], metavar="PATH",
                        help="image files and/or folders to draw the checkpoint figures on (their faces unknown: "
                             "no truth matrices); drawn before the photos of --data")
    parser.add_argument("--nonfaces", default=None,
                        help="a folder of face-free photos for the classifier figures' extra negatives; without it: "
                             "the classifier's own data.nonfaces, unless --data is given")
    parser.add_argument("--split", default="val", help="split of --data")
    parser.add_argument("--count", type=int, default=2, help="photos of --data (or synthetic scenes) per checkpoint figure")
    parser.add_argument("--max-images", type=int, default=100, help="validation images per PR curve")
    parser.add_argument("--device", default="auto", help="auto, cpu, cuda or cuda:N")
    parser.add_argument("--dpi", type=int, default=110, help="resolution of the PNG files")
    return parser.parse_args(argv)


def checkpoint_paths(items: Sequence[str]) -> dict[str, str]:
    """--checkpoint NAME=PATH items -> {run name: path}; a clear error for a bad item, name or path."""
    paths = {}
    for item in items:
        name, sep, path = item.partition("=")
        if not sep or not path:
            raise ConfigError(f"--checkpoint '{item}': expected NAME=PATH")
        if name not in RUNS:
            raise ConfigError(f"--checkpoint '{item}': no run '{name}'; expected one of {', '.join(RUNS)}")
        if not Path(path).is_file():
            raise ConfigError(f"--checkpoint '{item}': {path} is not a file")
        paths[name] = path
    return paths


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    sections = args.only or list(SECTIONS)
    checkpoints = checkpoint_paths(args.checkpoint)
    out = Path(args.out)
    written = [str(p) for p in library_figures(out, args.dpi)] if "library" in sections else []
    written_runs, skipped = run_figures(Path(args.runs), out, args.data or "", args.split, args.count,
                                        args.max_images, args.device, args.dpi, sections, checkpoints, args.images,
                                        args.nonfaces)
    written += written_runs
    print("\n".join(written))
    if skipped:
        print(f"skipped ({len(skipped)}):\n  " + "\n  ".join(skipped))
    print(f"{len(written)} files in {out}/")
    return 0
