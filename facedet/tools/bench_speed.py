"""Speed of every rung: training and inference images/s, peak memory, NMS, data loading.

    python -m facedet.tools.bench_speed                                  # CPU, batch 8, every model
    python -m facedet.tools.bench_speed --device cuda --amp --channels-last --batch 256
    python -m facedet.tools.bench_speed --models ssd300 face_ssd --quick --json speed.json
    python -m facedet.tools.bench_speed --sections loader --data $FACEDET_DATA/faces-mask --workers 0 2 4
    python -m facedet.tools.bench_speed --sections latency               # one 640x480 photo per rung
    python -m facedet.tools.bench_speed --sections latency --models face_ssd --photo photo.jpg  # vs Haar

Sections (--sections, default "models nms loader"):
  models   for each model at its input size, random weights and random boxes:
           train img/s = Trainer.train_step (forward, loss, backward, optimizer step: the
           trainer's own code, with its AMP / channels_last / compile rules) at --batch;
           infer img/s = forward + the model's post-processing (min_score 0.01, NMS 0.45,
           top_k 200: the evaluation settings, the most boxes NMS ever sees) at --batch,
           images already on the device; peak memory = torch.cuda.max_memory_allocated on
           CUDA, the process's peak resident set (getrusage) on CPU, which includes about
           0.4 GB of imported libraries. Each model runs in a fresh process, so peaks and
           allocator states do not carry over. With torchvision importable, its
           ssd300_vgg16 trains in the same conditions for comparison.
  nms      facedet.boxes.nms on 1,000 and 10,000 random boxes against OpenCV's
           cv2.dnn.NMSBoxes (when opencv is installed), and whether both keep the same boxes.
  loader   decode + augment + collate images/s of the training loader (build_loader, the
           SSD augmentation at 300 x 300) for each --workers count, on the embedded
           synthetic faces or on --data.
  latency  one 640 x 480 photo, batch 1: resize + forward + post-processing per rung,
           including the sliding window over the classifier (about a minute on a CPU);
           random weights on a random photo, or on --photo resized to 640 x 480. Then the
           shipped face detector (its trained weights, at min_score 0.01 and at
           facedet.infer's 0.5) and, when opencv is installed,
           OpenCV's Haar cascade on the same photo: with random pixels the cascade rejects
           almost every window at once, so give --photo a real one to compare them.
"""
from __future__ import annotations

import argparse
import datetime
import json
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Callable

import torch
from PIL import Image
from torch import Tensor

from facedet.boxes import nms
from facedet.checkpoint import load
from facedet.cli import run_cli, select_device
from facedet.config import Config, load_config, model_config
from facedet.data.dataset import DetectionDataset
from facedet.data.images import load_image
from facedet.data.loaders import build_loader, load_records
from facedet.data.transforms import IMAGENET_MEAN, IMAGENET_STD, train_transforms
from facedet.errors import ConfigError
from facedet.tools.opencv_haar import HaarCascade
from facedet.models import MODELS, build_model
from facedet.models.detector import to_image_tensor
from facedet.models.sliding_window import detector_from_classifier
from facedet.trainer import Trainer, outputs_to_float

# model name -> its ModelConfig options at its own input size
BENCH_MODELS: dict[str, dict] = {
    "classifier": dict(name="classifier", image_size=128),
    "grid_simple": dict(name="grid_simple", image_size=224, griddim=7),
    "grid_cnn": dict(name="grid_cnn", image_size=224, griddim=7),
    "yolo_face": dict(name="yolo_face", image_size=224),
    "yolo_face_tiny": dict(name="yolo_face_tiny", image_size=224, cell_relative=True),
    "ssd300": dict(name="ssd300", image_size=300),
    "fastai_ssd": dict(name="fastai_ssd", image_size=224),
    "face_ssd": dict(name="face_ssd", image_size=320, width=32),
    "retinanet": dict(name="retinanet", image_size=320, anchor_sizes=[10.0, 20.0, 40.0, 80.0, 160.0],
                      anchor_ratios=[1.2]),  # configs/retinanet_face.yaml's model
    "centernet": dict(name="centernet", image_size=320, width=32),
}
EVAL_SETTINGS = dict(min_score=0.01, nms_iou=0.45, top_k=200)
SECTIONS = ("models", "nms", "loader", "latency")


# --------------------------------------------------------------------------- helpers


def synchronize(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def timed(fn: Callable[[], object], device: torch.device, warmup: int, repeats: int) -> float:
    """Median seconds of `repeats` calls of fn after `warmup` untimed ones."""
    for _ in range(warmup):
        fn()
    times = []
    for _ in range(repeats):
        synchronize(device)
        start = time.perf_counter()
        fn()
        synchronize(device)
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def peak_rss_mb() -> float:
    """This process's peak resident set size so far, in MB (Linux reports kB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def random_batch(cfg: Config, task: str, batch: int, seed: int = 0) -> tuple[Tensor, list[dict]]:
    """Normalised-looking images (B, 3, S, S) and 1-3 random fractional "xyxy" boxes each
    (or a 0/1 face label for the classifier)."""
    g = torch.Generator().manual_seed(seed)
    size = cfg.model.image_size
    images = torch.randn(batch, 3, size, size, generator=g)
    targets = []
    for i in range(batch):
        if task == "classification":
            targets.append({"label": torch.tensor(float(i % 2))})
            continue
        n = int(torch.randint(1, 4, (), generator=g))
        centre = 0.2 + 0.6 * torch.rand(n, 2, generator=g)
        half = 0.05 + 0.15 * torch.rand(n, 2, generator=g)
        boxes = torch.cat([centre - half, centre + half], dim=1).clamp(0, 1)
        targets.append({"boxes": boxes, "labels": torch.zeros(n, dtype=torch.int64),
                        "difficult": torch.zeros(n, dtype=torch.bool), "image_id": i})
    return images, targets


def bench_config(name: str, args: argparse.Namespace) -> Config:
    cfg = load_config(None, [f"train.device={args.device}", f"train.batch_size={args.batch}",
                             f"train.amp={args.amp}", f"train.channels_last={args.channels_last}",
                             f"train.compile={args.compile}", "train.max_iters=1000000", "train.val_every=0"])
    cfg.model = model_config(num_classes=1, **BENCH_MODELS[name])
    return cfg


# --------------------------------------------------------------------------- models


def measure_model(name: str, args: argparse.Namespace) -> dict:
    """Train and inference images/s and peak memory of one model (run in a fresh process)."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    device = torch.device(args.device)
    cfg = bench_config(name, args)
    detector = build_model(cfg.model)
    row = {"model": name, "image_size": cfg.model.image_size, "batch": args.batch,
           "parameters": sum(p.numel() for p in detector.model.parameters())}
    images, targets = random_batch(cfg, detector.task, args.batch)
    if device.type == "cuda":
        images = images.pin_memory()  # as the training loader delivers them
    warmup = 3 if args.compile else 1
    with tempfile.TemporaryDirectory() as run_dir:
        trainer = Trainer(cfg, detector, [None], run_dir, device)  # a one-"batch" loader: train_step is all we call
        trainer.train_model.train()
        if device.type == "cuda":
            torch.cuda.reset_peak_memory_stats(device)
        seconds = timed(lambda: trainer.train_step(images, targets), device, warmup, args.steps)
        row["train_img_s"] = args.batch / seconds
        row["train_peak_mb"] = (torch.cuda.max_memory_allocated(device) if device.type == "cuda" else 0) / 2**20
        trainer.optimizer.zero_grad(set_to_none=True)
        trainer.optimizer.state.clear()  # inference needs neither gradients nor Adam's moments

    model = trainer.model.eval()
    forward = torch.compile(model) if args.compile else model
    images = images.to(device, memory_format=trainer.memory_format)

    @torch.inference_mode()
    def infer():
        with trainer.amp.autocast():
            outputs = forward(images)
        detector.postprocess(outputs_to_float(outputs), **EVAL_SETTINGS)

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    row["infer_img_s"] = args.batch / timed(infer, device, warmup, args.steps)
    if device.type == "cuda":
        row["infer_peak_mb"] = torch.cuda.max_memory_allocated(device) / 2**20
    else:
        row["peak_rss_mb"] = peak_rss_mb()  # training and inference together
    return row


def measure_torchvision_ssd(args: argparse.Namespace) -> dict | None:
    """torchvision's ssd300_vgg16 (2 classes, random weights) trained like the others, if importable."""
    try:
        from torchvision.models.detection import ssd300_vgg16
    except ImportError:
        return None
    torch.set_num_threads(args.threads)
    device = torch.device(args.device)
    model = ssd300_vgg16(weights=None, weights_backbone=None, num_classes=2).to(device).train()
    optimizer = torch.optim.SGD(model.parameters(), lr=1e-3, momentum=0.9)
    cfg = bench_config("ssd300", args)
    images, targets = random_batch(cfg, "detection", args.batch)
    images = list(images.to(device))
    targets = [{"boxes": t["boxes"].to(device) * 300, "labels": t["labels"].to(device) + 1} for t in targets]
    use_amp = args.amp and device.type == "cuda"

    def step():
        with torch.autocast(device.type, dtype=torch.bfloat16, enabled=use_amp):
            losses = model(images, targets)
        optimizer.zero_grad(set_to_none=True)
        sum(losses.values()).backward()
        optimizer.step()

    if device.type == "cuda":
        torch.cuda.reset_peak_memory_stats(device)
    row = {"model": "torchvision ssd300_vgg16", "image_size": 300, "batch": args.batch,
           "parameters": sum(p.numel() for p in model.parameters()),
           "train_img_s": args.batch / timed(step, device, 1, args.steps)}
    row["train_peak_mb" if device.type == "cuda" else "peak_rss_mb"] = (
        torch.cuda.max_memory_allocated(device) / 2**20 if device.type == "cuda" else peak_rss_mb())
    return row


def run_isolated(fn: Callable, *fn_args):
    """fn(*fn_args) in a fresh spawned process (its own peak memory and allocator)."""
    with multiprocessing.get_context("spawn").Pool(1) as pool:
        return pool.apply(fn, fn_args)


# --------------------------------------------------------------------------- NMS


def random_nms_boxes(n: int, seed: int = 0) -> tuple[Tensor, Tensor]:
    """n pixel "xyxy" boxes of sides 16-128 anywhere in a 1000 x 1000 image, uniform scores."""
    g = torch.Generator().manual_seed(seed)
    corner = torch.rand(n, 2, generator=g) * 1000
    size = 16 + torch.rand(n, 2, generator=g) * 112
    return torch.cat([corner, corner + size], dim=1), torch.rand(n, generator=g)


def measure_nms(n: int, args: argparse.Namespace) -> dict:
    """facedet.boxes.nms and cv2.dnn.NMSBoxes on the same n boxes, timed turn about so
    that both see the same machine load; medians of --repeats."""
    boxes, scores = random_nms_boxes(n)
    device = torch.device(args.device)
    boxes, scores = boxes.to(device), scores.to(device)
    keep = nms(boxes, scores, 0.45)
    row = {"boxes": n, "kept": len(keep), "device": str(device)}
    try:
        import cv2
    except ImportError:
        cv2 = None
    contenders = {"facedet_ms": (lambda: nms(boxes, scores, 0.45), device)}
    if cv2 is not None:
        xywh = torch.cat([boxes[:, :2], boxes[:, 2:] - boxes[:, :2]], dim=1).cpu().numpy()  # cv2 wants x, y, w, h
        cpu_scores = scores.cpu().numpy()
        cv2_keep = cv2.dnn.NMSBoxes(xywh, cpu_scores, 0.0, 0.45)
        row["same_kept_set"] = set(keep.tolist()) == {int(i) for i in torch.as_tensor(cv2_keep).flatten()}
        contenders["cv2_ms"] = (lambda: cv2.dnn.NMSBoxes(xywh, cpu_scores, 0.0, 0.45), torch.device("cpu"))
    times: dict[str, list[float]] = {key: [] for key in contenders}
    for _ in range(args.repeats):
        for key, (fn, on) in contenders.items():
            times[key].append(1000 * timed(fn, on, warmup=1 if not times[key] else 0, repeats=1))
    row.update({key: statistics.median(values) for key, values in times.items()})
    if cv2 is not None:
        row["ratio"] = row["facedet_ms"] / row["cv2_ms"]
    return row


# --------------------------------------------------------------------------- data loading


def measure_loader(workers: int, args: argparse.Namespace) -> dict:
    """Images/s of the training loader: read, decode, SSD augmentation at 300 x 300, collate."""
    overrides = [f"data.num_workers={workers}", "train.batch_size=8"]
    if args.data:
        overrides.append(f"data.root={args.data}")
    elif args.quick:
        overrides += ["data.synthetic_train=64", "data.synthetic_val=8"]
    cfg = load_config(None, overrides)
    records, _ = load_records(cfg.data, cfg.data.train_split)
    dataset = DetectionDataset(records, train_transforms(300, IMAGENET_MEAN, IMAGENET_STD, "ssd"))
    loader = build_loader(dataset, cfg, train=True, device=torch.device("cpu"))
    # Untimed first: worker start-up, and the batches the workers prefetch meanwhile (2 each),
    # so the timed batches are produced while we wait, as in training.
    warmup = 1 + 2 * workers
    timed_batches = min(len(loader) - warmup, 4 if args.quick else 40)
    if timed_batches < 1:
        raise ConfigError(f"loader: {len(loader)} batches of 8 are too few to time with {workers} workers")
    batches = iter(loader)
    for _ in range(warmup):
        next(batches)
    start = time.perf_counter()
    for _ in range(timed_batches):
        next(batches)
    seconds = time.perf_counter() - start
    loader.close()  # its persistent workers stop now
    images = timed_batches * cfg.train.batch_size
    return {"workers": workers, "images": images, "img_s": images / seconds,
            "img_s_per_worker": images / seconds / max(1, workers),
            "data": args.data or "embedded synthetic faces (256 x 256 JPEG)"}


# --------------------------------------------------------------------------- latency of one photo


@torch.no_grad()
def measure_latency(name: str, args: argparse.Namespace) -> dict:
    """Milliseconds for one 640 x 480 photo: resize + normalise + forward + post-processing,
    through the Detector's own inference path (a fully convolutional model at its default size)."""
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = model_config(num_classes=1, **BENCH_MODELS[name])
    detector = build_model(cfg)
    if detector.task == "classification":  # a classifier detects through a sliding window (rung 2)
        detector = detector_from_classifier(detector)
    detector.model.eval()
    photo = to_image_tensor(latency_photo(args.photo))

    def one_photo():
        detector(photo, min_score=EVAL_SETTINGS["min_score"], nms_iou=EVAL_SETTINGS["nms_iou"],
                 top_k=EVAL_SETTINGS["top_k"])

    sliding = cfg.name == "classifier"
    return {"model": "classifier (sliding window)" if sliding else name, "parameters": sum(p.numel() for p in detector.model.parameters()),
            "ms": 1000 * timed(one_photo, torch.device("cpu"), 0 if sliding else 1, 1 if sliding else args.repeats)}


def latency_photo(path: str) -> Image.Image:
    """A 640 x 480 RGB photo: `path` resized, or uniform noise without one."""
    if not path:
        noise = torch.randint(0, 256, (480, 640, 3), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
        return Image.fromarray(noise.numpy())
    return load_image(path).resize((640, 480))


@torch.no_grad()
def measure_shipped_and_haar(args: argparse.Namespace) -> list[dict]:
    """The shipped face detector and OpenCV's Haar cascade on the same 640 x 480 photo (ms)."""
    torch.set_num_threads(args.threads)
    device = torch.device("cpu")
    detector = load(None, device)
    image = latency_photo(args.photo)
    photo = to_image_tensor(image)
    params = detector.num_parameters
    rows = []
    # the CLI's default (size 640 = this photo's own size, calibrated min score), the
    # evaluation's min score, and the old fixed 320 input for comparison
    for size, min_score in ((None, detector.min_score), (None, EVAL_SETTINGS["min_score"]), (320, detector.min_score)):
        shown = f"size {size}" if size else f"default size (own, <= {detector.max_size} px)"
        shown += f", min_score {min_score:.3g}"
        ms = 1000 * timed(lambda: detector(photo, min_score=min_score, size=size), device, 1, args.repeats)
        rows.append({"model": f"face_ssd (shipped weights), {shown}", "parameters": params, "ms": ms})
    try:
        cascade = HaarCascade()
    except ConfigError as err:
        print(f"note: no Haar row: {err}")
        return rows
    rows.append({"model": "Haar cascade (OpenCV, full resolution)",
                 "ms": 1000 * timed(lambda: cascade.detect(image), device, 1, args.repeats)})
    return rows


# --------------------------------------------------------------------------- report


def machine() -> str:
    cpu = platform.processor() or platform.machine()
    try:
        names = [line.split(":", 1)[1].strip() for line in open("/proc/cpuinfo") if line.startswith("model name")]
        cpu = names[0] if names else cpu
    except OSError:
        pass
    text = f"{cpu}, {os.cpu_count()} logical CPUs, torch {torch.__version__}"
    if torch.cuda.is_available():
        text += f", {torch.cuda.get_device_name(0)}"
    return text


def table(rows: list[dict], columns: list[tuple[str, str, str]]) -> str:
    """Markdown table: columns are (key, header, format)."""
    lines = ["| " + " | ".join(header for _, header, _ in columns) + " |",
             "|" + "|".join("---" if i == 0 else "---:" for i in range(len(columns))) + "|"]
    for row in rows:
        cells = [format(row[key], fmt) if key in row else "-" for key, _, fmt in columns]
        lines.append("| " + " | ".join(cells) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m facedet.tools.bench_speed", description=__doc__.split("\n\n")[0],
                                     epilog="See the module docstring (facedet/tools/bench_speed.py) for what each number means.")
    parser.add_argument("--sections", nargs="+", choices=SECTIONS, default=["models", "nms", "loader"],
                        help="what to measure (default: models nms loader): models = train/infer images per second "
                             "and peak memory per model; nms = the NMS engine against candidate counts; loader = "
                             "training-loader images per second against --workers; latency = ms for one 640x480 "
                             "photo per rung, beside OpenCV's Haar cascade")
    parser.add_argument("--models", nargs="+", choices=list(BENCH_MODELS), default=list(BENCH_MODELS),
                        help="models to time (default all; in the latency section the classifier scans a sliding window)")
    parser.add_argument("--device", default="cpu", help="cpu, cuda or cuda:N (default cpu)")
    parser.add_argument("--batch", type=int, default=8, help="batch size for training and inference (default 8)")
    parser.add_argument("--amp", action="store_true", help="mixed precision (CUDA only, as in train.amp): bf16, or fp16 with loss scaling")
    parser.add_argument("--channels-last", action="store_true", help="NHWC layout (CUDA only, as in train.channels_last)")
    parser.add_argument("--compile", action="store_true", help="torch.compile the model (as train.compile)")
    parser.add_argument("--steps", type=int, default=5, help="timed steps per model after warm-up (median; default 5)")
    parser.add_argument("--repeats", type=int, default=5, help="timed repeats for NMS and latency (default 5)")
    parser.add_argument("--threads", type=int, default=torch.get_num_threads(), help="torch CPU threads")
    parser.add_argument("--workers", type=int, nargs="+", default=[0, 1, 2], help="loader worker counts (default 0 1 2)")
    parser.add_argument("--data", default="", help="dataset folder for the loader section (default: embedded synthetic)")
    parser.add_argument("--photo", default="", help="photo for the latency section, resized to 640 x 480 (default: noise)")
    parser.add_argument("--quick", action="store_true", help="a smoke run: 2 steps, 2 repeats, small data")
    parser.add_argument("--json", help="also write every number to this JSON file")
    args = parser.parse_args(argv)
    if args.quick:
        args.steps, args.repeats = 2, 2
    if args.batch < 1 or args.steps < 1 or args.repeats < 1:
        raise ConfigError("--batch, --steps and --repeats must be at least 1")
    args.device = str(select_device(args.device))
    return args


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    torch.set_num_threads(args.threads)
    assert all(options["name"] in MODELS for options in BENCH_MODELS.values())
    report = {"command": "python -m facedet.tools.bench_speed " + " ".join(sys.argv[1:] if argv is None else argv),
              "machine": machine(), "date": datetime.date.today().isoformat(), "threads": args.threads,
              "load_average": os.getloadavg()[0]}
    print(f"{report['machine']}; {args.threads} thread(s); load average {report['load_average']:.1f}\n")
    flags = f"batch {args.batch}, device {args.device}" + "".join(
        f", {flag}" for flag, on in (("amp", args.amp), ("channels_last", args.channels_last),
                                     ("compile", args.compile)) if on)
    if "models" in args.sections:
        rows = [run_isolated(measure_model, name, args) for name in args.models if name in BENCH_MODELS]
        tv = run_isolated(measure_torchvision_ssd, args) if "ssd300" in args.models else None
        rows += [tv] if tv else []
        report["models"] = rows
        memory = [("train_peak_mb", "train peak MB", ",.0f"), ("infer_peak_mb", "infer peak MB", ",.0f")] \
            if args.device.startswith("cuda") else [("peak_rss_mb", "peak RSS MB", ",.0f")]
        print(f"Training and inference ({flags}; median of {args.steps} steps)\n")
        print(table(rows, [("model", "model", "s"), ("image_size", "input", "d"), ("parameters", "parameters", ",d"),
                           ("train_img_s", "train img/s", ",.1f"), ("infer_img_s", "infer img/s", ",.1f"), *memory]))
        print()
    if "nms" in args.sections:
        report["nms"] = rows = [measure_nms(n, args) for n in (1000, 10000)]
        print(f"NMS at IoU 0.45, random boxes (median of {args.repeats})\n")
        print(table(rows, [("boxes", "boxes", ",d"), ("kept", "kept", ",d"), ("facedet_ms", "facedet.boxes.nms ms", ".1f"),
                           ("cv2_ms", "cv2.dnn.NMSBoxes ms", ".1f"), ("ratio", "facedet / cv2", ".2f"),
                           ("same_kept_set", "same boxes kept", "")]))
        print()
    if "loader" in args.sections:
        report["loader"] = rows = [measure_loader(w, args) for w in args.workers]
        print(f"Training loader: decode + SSD augmentation at 300 x 300 + collate, {rows[0]['data']}\n")
        print(table(rows, [("workers", "workers", "d"), ("images", "images", "d"), ("img_s", "img/s", ".0f"),
                           ("img_s_per_worker", "img/s per worker", ".0f")]))
        print()
    if "latency" in args.sections:
        report["latency"] = rows = [run_isolated(measure_latency, name, args) for name in args.models]
        rows += run_isolated(measure_shipped_and_haar, args)
        photo = f"{args.photo} resized" if args.photo else "a random"
        print(f"{photo} 640 x 480 photo, batch 1: resize + forward + post-processing (CPU)\n")
        print(table(rows, [("model", "model", "s"), ("parameters", "parameters", ",d"), ("ms", "ms / photo", ",.0f")]))
        print()
    if args.json:
        with open(args.json, "w") as f:
            json.dump(report, f, indent=1)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
