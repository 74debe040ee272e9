"""The ladder on real faces: every trained rung, and OpenCV's Haar cascade, on the same photos.

    python -m facedet.tools.benchmark --data $FACEDET_DATA/faces-caltech
    python -m facedet.tools.benchmark --data $FACEDET_DATA/faces-mask --runs runs --out benchmark/faces-mask
    python -m facedet.tools.benchmark --data photos/ --checkpoint mine=runs/x/best.pt --no-haar --max-images 50

Each rung is looked up as runs/<name>/best.pt (written by benchmarks/train_ladder.sh), plus
the shipped default detector; `--checkpoint NAME=PATH` adds or replaces one. Every detector
sees the same photos and is scored by the same evaluator at the paper's evaluation settings
(min_score 0.01, NMS 0.45, top 200 per image):

    AP50, AP30   VOC all-point AP at IoU 0.5 and 0.3 (AP30 forgives box conventions that
                 differ between data sets: faces-caltech's boxes are landmark-derived)
    COCO AP      AP@[.5:.95]
    R@50FP       recall before the 51st false positive, IoU 0.5: what a user sees at a
                 threshold that allows about 50 false alarms over the whole set
    ms/image     median latency on one photo (load excluded): resize, forward, post-processing,
                 at the detector's operating point (what facedet.infer does by default)
    train time   from the checkpoint (training epochs, validation excluded)
    images seen  training samples (photos; crops for the classifier) when best.pt was saved

and a second table at each detector's operating point (its calibrated min score, or 0.5 for a
checkpoint without one; every detection for the Haar cascade): precision, recall, and recall
by face size (sqrt of the box area in the photo's pixels), IoU 0.5.

Two ladders, one table each (`--ladder`, default both):

    seed   the seed-size rungs (runs/<name>/best.pt, benchmarks/train_ladder.sh), the shipped
           detector and OpenCV's cascade: each rung as its source document draws it
    same   the same-backbone ladder (runs/same_<rung>/best.pt, benchmarks/train_same_backbone.sh):
           every rung's head on one small shared backbone, the same data, schedule and number
           of images, so that only the rung's idea differs

and `--ladder shipped`: every detector that ships in facedet/weights/ (`facedet.list_detectors()`),
by name. `--results DIR` also stores each detector's numbers, PR curve and recall by face size as
DIR/<name>.json under the data folder's name (facedet/tools/stored_results.py; the chapters read
facedet/weights/results/ written so).

Writes <out>/benchmark.md (the tables), benchmark.json, pr_curves.png (seed ladder) and, for the
same-backbone ladder, pr_curves_same_backbone.png and validation_curves.png (validation AP50
against images seen, read from each run's metrics.csv).
"""
from __future__ import annotations

import argparse
import csv
import dataclasses
import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path

import torch
from tqdm import tqdm

from facedet.checkpoint import SHIPPED_CHECKPOINT, SHIPPED_WEIGHTS, list_detectors, load
from facedet.cli import parse_scales, parse_size, run_cli, select_device
from facedet.config import MODEL_CONFIGS, DataConfig, EvalConfig
from facedet.data.dataset import DetectionDataset, collate_photos
from facedet.data.images import load_image
from facedet.data.loaders import load_records
from facedet.data.record import Record
from facedet.errors import CheckpointError, ConfigError
from facedet.evaluation import SIZE_BINS, EvalResult, OperatingPoint, evaluate_detections, operating_point, size_bin_name
from facedet.tools.opencv_haar import HaarCascade
from facedet.models.detector import to_image_tensor
from facedet.plots import plot_pr_curves, plot_validation_curves
from facedet.predict import predict
from facedet.tools.stored_results import result_entry, write_result

# (label, run name) in ladder order: runs/<name>/best.pt
LADDER = (
    ("0 Viola-Jones (facedet)", "viola_jones"),  # the classic cascade, boosted by facedet itself
    ("2 sliding window", "classifier"),
    ("3 grid 7x7", "grid7"),
    ("3 grid 14x14", "grid14"),
    ("3 grid CNN 7x7", "grid_cnn"),
    ("4 YOLO-face", "yolo_face"),
    ("5 SSD300", "ssd300_face"),
    ("6 RetinaNet", "retinanet_face"),
    ("7 CenterNet", "centernet_face"),
)
# The same-backbone ladder: runs/same_<rung>/best.pt (benchmarks/train_same_backbone.sh)
SAME_BACKBONE = (
    ("2 sliding window", "same_classifier"),
    ("3 grid 7x7", "same_grid7"),
    ("3 grid 14x14", "same_grid14"),
    ("4 YOLO-face", "same_yolo"),
    ("5 SSD (FaceSSD)", "same_ssd"),
    ("6 RetinaNet", "same_retinanet"),
    ("7 CenterNet", "same_centernet"),
    ("8 Faster R-CNN (two stages)", "same_faster_rcnn"),
)
LADDER_TITLES = {"seed": "seed-size ladder", "same": "same backbone (SmallBackbone, width 32)",
                 "shipped": "shipped detectors (facedet/weights)"}
PLOT_TITLES = {"seed": "seed-size ladder", "same": "same backbone", "shipped": "shipped detectors"}
DEFAULT_LABEL = "5 FaceSSD (shipped default)"
HAAR_LABEL = "classic: Haar cascade (OpenCV)"
IOU_THRESHOLDS = (0.5, 0.3)


@dataclass
class Row:
    """One detector's line of the table."""

    label: str
    source: str  # checkpoint path, or the cascade file
    params: int | None
    images: int
    AP50: float
    AP30: float
    AP_coco: float
    recall_at_50fp: float
    ms_per_image: float
    train_time_s: float | None
    images_seen: int | None = None  # training samples when the checkpoint was saved
    ladder: str = "seed"  # which table: "seed" or "same"
    operating_point: dict = field(default_factory=dict)  # OperatingPoint.as_dict()
    notes: list[str] = field(default_factory=list)


def _row(label: str, source: str, params: int | None, result: EvalResult, images: int, ms: float,
         train_time_s: float | None, point: OperatingPoint, images_seen: int | None = None) -> tuple[Row, tuple]:
    """The table row and the (precision, recall) curve at IoU 0.5."""
    m = result.as_dict()
    row = Row(label, source, params, images, m["mAP50"], m["mAP30"], m["AP_coco"], m["recall@50FP"], ms, train_time_s,
              images_seen, operating_point=point.as_dict())
    return row, result.pr_curves(0.5)["face"]


def _truths(records: list[Record]) -> list[dict]:
    """Ground truth in pixels, straight from the records (every detector is scored on these)."""
    return [{"boxes": r.boxes.float(), "labels": r.labels.long(), "difficult": r.difficult.bool()} for r in records]


def _batch_size(state: dict) -> int:
    """The training batch of a checkpoint's run (per process), 0 when its config does not say."""
    config = state.get("config")
    return int(config.get("train", {}).get("batch_size", 0)) if isinstance(config, dict) else 0


def images_seen(state: dict) -> int | None:
    """Training samples behind a checkpoint: stored since the trainer counts them, otherwise
    iterations x batch size (one process)."""
    if "images_seen" in state:
        return int(state["images_seen"])
    batch = _batch_size(state)
    return int(state["iteration"]) * batch if batch and "iteration" in state else None


def validation_history(checkpoint: Path) -> list[tuple[int, float]]:
    """(images seen, validation AP50) of every validated epoch, from the metrics.csv that the
    trainer writes beside the checkpoint; [] when there is none or it holds no AP50 (the
    classifier's validation scores crops, not boxes). Runs from before the trainer counted
    images: iterations x the checkpoint's batch size."""
    path = checkpoint.parent / "metrics.csv"
    if not path.is_file():
        return []
    with open(path, newline="") as f:
        rows = [row for row in csv.DictReader(f) if row.get("mAP50")]
    if rows and not rows[0].get("images_seen"):
        batch = _batch_size(torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True))
        for row in rows:
            row["images_seen"] = int(row["iteration"]) * batch
    return [(int(row["images_seen"]), float(row["mAP50"])) for row in rows]


def _median_ms(fn, items, desc: str) -> float:
    """Median wall time of fn(item) over items, after one untimed warm-up call."""
    if items:
        fn(items[0])  # first call: lazy allocations, kernel selection
    times = []
    for item in tqdm(items, desc=desc, leave=False, mininterval=1.0, disable=None):
        start = time.perf_counter()
        fn(item)
        times.append((time.perf_counter() - start) * 1000)
    return statistics.median(times) if times else float("nan")


def _overrides_for(state: dict, overrides: list[str]) -> list[str]:
    """The overrides that apply to a checkpoint: a `model.` key only for the rungs that have it
    (model.window_stride=0.5 changes the sliding window and leaves the other rungs alone)."""
    model = state.get("config", {}).get("model", {}) if isinstance(state.get("config"), dict) else {}
    rung = MODEL_CONFIGS.get(model.get("name")) if isinstance(model, dict) else None
    keys = {f.name for f in dataclasses.fields(rung)} if rung else set()
    return [item for item in overrides
            if not item.startswith("model.") or item.split("=", 1)[0].removeprefix("model.") in keys]


def benchmark_checkpoint(label: str, checkpoint: Path, records: list[Record], device: torch.device,
                         eval_cfg: EvalConfig, overrides: list[str], timing_images: int, batch_size: int,
                         num_workers: int, window_max_images: int = 0, size: int | None = None,
                         scales: tuple[float, ...] | None = None) -> tuple[Row, tuple]:
    """Score one checkpoint on `records` and time it on the first `timing_images` photos.

    A classifier checkpoint is scanned as a sliding window, on the first `window_max_images`
    photos only when that is > 0. `size` and `scales` override a fully convolutional detector's
    input size and image pyramid.
    """
    state = torch.load(checkpoint, map_location="cpu", weights_only=True, mmap=True)  # mmap: no tensor is read
    detector = load(checkpoint, device, _overrides_for(state, overrides))
    if detector.input_policy == "whole" and window_max_images:
        records = records[:window_max_images]
    if len(detector.class_names) != 1:
        raise ConfigError(f"{checkpoint}: a face benchmark needs a one-class detector, this one has {detector.class_names}")
    loader = torch.utils.data.DataLoader(DetectionDataset(records), batch_size=batch_size, num_workers=num_workers,
                                         collate_fn=collate_photos)
    detections, _ = predict(detector, loader, eval_cfg, desc=label, size=size, scales=scales)
    truths = _truths(records)
    result = evaluate_detections(detections, truths, ["face"], iou_thresholds=IOU_THRESHOLDS)
    point = operating_point(detections, truths, 1, detector.min_score)
    photos = [to_image_tensor(load_image(r.image_path)) for r in records[:timing_images]]
    ms = _median_ms(lambda image: detector(image, size=size, scales=scales), photos, f"{label} timing")
    params = detector.num_parameters
    return _row(label, str(checkpoint), params, result, len(records), ms, state.get("train_time_s"), point,
                images_seen(state))


def benchmark_haar(records: list[Record]) -> tuple[Row, tuple]:
    """OpenCV's frontal-face cascade on the same photos, at full resolution; every photo is timed."""
    cascade = HaarCascade()
    detections, times = [], []
    for record in tqdm(records, desc="Haar cascade", leave=False, mininterval=1.0, disable=None):
        image = load_image(record.image_path)
        start = time.perf_counter()
        detections.append(cascade.detect(image))
        times.append((time.perf_counter() - start) * 1000)
    truths = _truths(records)
    result = evaluate_detections(detections, truths, ["face"], iou_thresholds=IOU_THRESHOLDS)
    lowest = min((float(d["scores"].min()) for d in detections if len(d["scores"])), default=0.0)
    point = operating_point(detections, truths, 1, min_score=lowest)  # every box the cascade returns
    row, curve = _row(HAAR_LABEL, repr(cascade), None, result, len(records), statistics.median(times), None, point)
    row.notes.append("pretrained by OpenCV; scores = level weights")
    return row, curve


def format_markdown(rows: list[Row], title: str) -> str:
    def num(v, fmt: str) -> str:
        return "—" if v is None or v != v else format(v, fmt)

    def duration(seconds: float | None) -> str:
        if seconds is None:
            return "—"
        return f"{seconds / 60:.0f} min" if seconds < 5400 else f"{seconds / 3600:.1f} h"

    lines = [f"**{title}**", "",
             "| rung | parameters | photos | AP50 | AP30 | COCO AP | R@50FP | ms / image | train time | images seen |",
             "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|"]
    for r in rows:
        lines.append(f"| {r.label} | {num(r.params, ',')} | {r.images} | {num(r.AP50, '.3f')} | {num(r.AP30, '.3f')} | "
                     f"{num(r.AP_coco, '.3f')} | {num(r.recall_at_50fp, '.3f')} | {num(r.ms_per_image, ',.0f')} | "
                     f"{duration(r.train_time_s)} | {num(r.images_seen, ',')} |")
    return "\n".join(lines)


def format_operating_points(rows: list[Row]) -> str:
    """At each detector's operating point: precision, recall, and recall by face size (found / faces)."""
    bins = [size_bin_name(low, high) for low, high in SIZE_BINS]
    lines = ["| rung | min score | precision | recall | " + " | ".join(f"recall {b}" for b in bins) + " |",
             "|---|---:|---:|---:|" + "---:|" * len(bins)]
    for r in rows:
        p = r.operating_point
        if not p:
            continue
        score = "all" if r.label == HAAR_LABEL else f"{p['min_score']:.3f}"
        cells = []
        for b in bins:
            found, total = p["recall_by_size"].get(b, (0, 0))
            cells.append(f"{found / total:.2f} ({total})" if total else "—")
        lines.append(f"| {r.label} | {score} | {p['precision']:.3f} | {p['recall']:.3f} | " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m facedet.tools.benchmark",
        description="Run every trained rung of the ladder (and OpenCV's Haar cascade when opencv is installed) "
        "on the same face photos: AP50, AP30, COCO AP, recall at 50 false positives, parameters, ms/image, "
        "training time; one table and one PR-curve PNG.",
        epilog="Rungs are found as <runs>/<name>/best.pt for names "
        + ", ".join(name for _, name in LADDER) + " (benchmarks/train_ladder.sh trains them) and, for the "
        "same-backbone table, " + ", ".join(name for _, name in SAME_BACKBONE)
        + " (benchmarks/train_same_backbone.sh). Missing runs are skipped and listed. "
        "Example: python -m facedet.tools.benchmark --data $FACEDET_DATA/faces-mask --ladder same --max-images 100",
    )
    parser.add_argument("--data", required=True, help="a face data set folder (YOLO, VOC, COCO, WIDER, FDDB); "
                        "every class counts as a face")
    parser.add_argument("--split", default="val", help="which split to score (default val)")
    parser.add_argument("--format", default="auto", help="data format (default auto)")
    parser.add_argument("--runs", default="runs", help="folder holding the rungs' run directories (default runs/)")
    parser.add_argument("--checkpoint", action="append", default=[], metavar="NAME=PATH",
                        help="add a detector (or replace a rung of that name); repeatable")
    parser.add_argument("--ladder", choices=("seed", "same", "both", "shipped"), default="both",
                        help="seed: the seed-size rungs, the shipped detector and OpenCV's cascade; same: the "
                        "same-backbone ladder (every rung's head on one small backbone, the same training); both tables; "
                        "shipped: every detector in facedet/weights, by name")
    parser.add_argument("--only", nargs="+", metavar="NAME", help="benchmark only these names (rungs, "
                        "'default', 'haar', or --checkpoint names)")
    parser.add_argument("--no-haar", action="store_true", help="leave out OpenCV's Haar cascade")
    parser.add_argument("--max-images", type=int, default=0, help="score the first N photos only (0 = all)")
    parser.add_argument("--window-max-images", type=int, default=0,
                        help="detectors that scan the photo themselves (the sliding window, seconds per photo; "
                        "Viola-Jones) score only the first N of the photos (0 = all)")
    parser.add_argument("--timing-images", type=int, default=20, help="photos timed per detector (default 20)")
    parser.add_argument("--batch-size", type=int, default=16, help="batch for scoring fixed-size models")
    parser.add_argument("--workers", type=int, default=2, help="data-loading workers")
    parser.add_argument("--size", type=parse_size,
                        help="fully convolutional detectors: longer side in pixels or 'native' "
                        "(default: each detector's own, as facedet.infer runs it)")
    parser.add_argument("--scales", type=parse_scales,
                        help="fully convolutional detectors: image pyramid, e.g. 0.5,1 (default: each detector's own)")
    parser.add_argument("--device", default="cpu", help="cpu (default: the table reports CPU latency), cuda, auto")
    parser.add_argument("--results", default="", metavar="DIR",
                        help="also store each detector's numbers, PR curve and recall by size in DIR/<name>.json "
                        "(the chapters read facedet/weights/results)")
    parser.add_argument("--out", default="", help="folder for benchmark.md/.json and pr_curves.png "
                        "(default benchmark/<data folder name>)")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value",
                        help="applied to every checkpoint's config (a model.* key only to the rungs that have it), "
                        "e.g. model.window_stride=0.5 for a faster scan")
    return parser.parse_args(argv)


def _detectors(args: argparse.Namespace) -> list[tuple[str, str, Path, str]]:
    """(name, label, checkpoint, ladder) of every detector to run, in ladder order."""
    entries = []
    if args.ladder in ("seed", "both"):
        entries += [(name, label, Path(args.runs) / name / "best.pt", "seed") for label, name in LADDER]
        entries.append(("default", DEFAULT_LABEL, SHIPPED_CHECKPOINT, "seed"))
    if args.ladder in ("same", "both"):
        entries += [(name, label, Path(args.runs) / name / "best.pt", "same") for label, name in SAME_BACKBONE]
    if args.ladder == "shipped":
        entries += [(name, name, SHIPPED_WEIGHTS / f"{name}.pt", "shipped") for name in list_detectors()]
    for item in args.checkpoint:
        name, sep, path = item.partition("=")
        if not sep or not name or not path:
            raise ConfigError(f"--checkpoint '{item}': expected NAME=PATH")
        if not Path(path).is_file():
            raise CheckpointError(f"--checkpoint {name}: {path} not found")
        known = [i for i, e in enumerate(entries) if e[0] == name]
        label, ladder = (entries[known[0]][1], entries[known[0]][3]) if known else (name, "seed")
        entry = (name, label, Path(path), ladder)
        if known:
            entries[known[0]] = entry
        else:
            entries.append(entry)
    if args.only:
        entries = [e for e in entries if e[0] in args.only]
    return entries


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    device = select_device(args.device)
    data_cfg = DataConfig(root=args.data, format=args.format, classes="face")
    records, _ = load_records(data_cfg, args.split)
    if args.max_images:
        records = records[: args.max_images]
    if not records:
        raise ConfigError(f"{args.data}: split '{args.split}' has no images")
    eval_cfg = EvalConfig()  # min_score 0.01, NMS 0.45, top_k 200: the paper's evaluation settings
    overrides = ["data.classes=face", *args.overrides]
    rows, curves, skipped, named = [], {"seed": {}, "same": {}, "shipped": {}}, [], []
    print(f"{len(records)} photos of {args.data} ({args.split}), {sum(len(r.boxes) for r in records)} faces; "
          f"device {device}, {torch.get_num_threads()} threads")
    for name, label, checkpoint, ladder in _detectors(args):
        if not checkpoint.is_file():
            skipped.append(f"{label} ({LADDER_TITLES[ladder]}): no {checkpoint}")
            continue
        row, curves[ladder][label] = benchmark_checkpoint(label, checkpoint, records, device, eval_cfg, overrides,
                                                          args.timing_images, args.batch_size, args.workers,
                                                          args.window_max_images, args.size, args.scales)
        row.ladder = ladder
        rows.append(row)
        named.append((name, row, curves[ladder][label]))
        print(format_markdown(rows[-1:], label).splitlines()[-1])
    if args.ladder in ("seed", "both") and not args.no_haar and (not args.only or "haar" in args.only):
        try:
            row, curves["seed"][HAAR_LABEL] = benchmark_haar(records)
            rows.append(row)
        except ConfigError as err:  # no OpenCV: the ladder's own rows still count
            skipped.append(f"Haar cascade: {err}")
    if not rows:
        raise ConfigError("nothing to benchmark: " + "; ".join(skipped))

    out = Path(args.out) if args.out else Path("benchmark") / Path(args.data.rstrip("/")).name
    out.mkdir(parents=True, exist_ok=True)
    title = (f"{Path(args.data).name} {args.split}: {len(records)} photos, "
             f"{sum(len(r.boxes) for r in records)} faces; {device}, {torch.get_num_threads()} threads")
    sections, written = [], [out / "benchmark.md", out / "benchmark.json"]
    for ladder, png in (("seed", "pr_curves.png"), ("same", "pr_curves_same_backbone.png"),
                        ("shipped", "pr_curves_shipped.png")):
        ladder_rows = [r for r in rows if r.ladder == ladder]
        if not ladder_rows:
            continue
        sections.append(format_markdown(ladder_rows, f"{LADDER_TITLES[ladder]}: {title}")
                        + "\n\nAt each detector's operating point (IoU 0.5; recall by face size: found share "
                        "(faces)):\n\n" + format_operating_points(ladder_rows))
        colors = {label: f"C{i}" for i, label in enumerate(curves[ladder])}  # one colour per rung in both figures
        written.append(plot_pr_curves(curves[ladder], out / png, colors=colors,
                                      title=f"{PLOT_TITLES[ladder]}, IoU 0.5: {title.split(';')[0]}"))
        if ladder == "same":
            histories = {r.label: validation_history(Path(r.source)) for r in ladder_rows}
            histories = {label: h for label, h in histories.items() if h}
            if histories:
                written.append(plot_validation_curves(histories, out / "validation_curves.png", colors=colors,
                                                      title="same backbone: validation AP50 while training"))
    if args.results:
        data_set = Path(args.data.rstrip("/")).name
        for name, row, curve in named:
            written.append(write_result(args.results, name, data_set, result_entry(asdict(row), curve)))
    table = "\n\n".join(sections)
    (out / "benchmark.md").write_text(table + "\n")
    (out / "benchmark.json").write_text(json.dumps({"data": args.data, "split": args.split, "images": len(records),
                                                    "device": str(device), "threads": torch.get_num_threads(),
                                                    "overrides": args.overrides,
                                                    "rows": [asdict(r) for r in rows], "skipped": skipped}, indent=1))
    print()
    print(table)
    for line in skipped:
        print(f"skipped: {line}")
    print("wrote " + ", ".join(str(p) for p in written))
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
