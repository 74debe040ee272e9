"""CPU latency of every rung on one 640 x 480 photo: resize/normalise, forward, post-process.

    python benchmarks/speed.py                      # all rungs, 2 threads
    python benchmarks/speed.py --models yolo_face_tiny ssd300 --threads 1 --repeats 5

Weights are random: speed does not depend on them (post-processing sees the eval
settings min_score 0.01, so NMS has as much work as it will ever get). The sliding
window scans with the seed classifier at its default window sizes.
"""
from __future__ import annotations

import argparse
import statistics
import time

import torch

from facedet.config import ModelConfig
from facedet.data.loaders import inference_transforms
from facedet.models import MODELS, build_model
from facedet.models.sliding_window import detector_from_classifier

# model name -> (ModelConfig options, label in the table)
RUNGS = {
    "sliding_window": (dict(name="classifier", image_size=128), "2  sliding window (CNNClassifier)"),
    "grid_simple": (dict(name="grid_simple", griddim=7), "3  GridSimpleCNNModel 7x7"),
    "grid_cnn": (dict(name="grid_cnn", griddim=7), "3  GridCNNModel 7x7"),
    "yolo_face": (dict(name="yolo_face"), "4  YOLOFaceCNN"),
    "yolo_face_tiny": (dict(name="yolo_face_tiny"), "4  YOLOFaceTiny (quick start)"),
    "ssd300": (dict(name="ssd300", image_size=300), "5  SSD300"),
    "fastai_ssd": (dict(name="fastai_ssd"), "5  fast.ai SSD head"),
    "face_ssd": (dict(name="face_ssd", image_size=320, width=32), "5  FaceSSD (shipped default)"),
}


@torch.no_grad()
def time_rung(options: dict, photo: torch.Tensor, repeats: int) -> tuple[int, float, float]:
    """(parameters, median ms, min ms) for photo (3, 480, 640) in [0, 1]."""
    cfg = ModelConfig(num_classes=1, **options)
    detector = build_model(cfg)
    if detector.task == "classification":
        detector = detector_from_classifier(detector)
    detector.model.eval()
    params = sum(p.numel() for p in detector.model.parameters())
    transform = inference_transforms(detector, cfg.image_size)
    empty = {"boxes": torch.zeros(0, 4), "labels": torch.zeros(0, dtype=torch.int64),
             "difficult": torch.zeros(0, dtype=torch.bool)}
    times = []
    for i in range(repeats + 1):  # the first run warms up allocators and kernels
        start = time.perf_counter()
        inputs, _ = transform(photo, empty)
        outputs = detector.model(inputs[None])
        detector.postprocess(outputs, min_score=0.01, nms_iou=0.45, top_k=200)
        if i:
            times.append((time.perf_counter() - start) * 1000)
    return params, statistics.median(times), min(times)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0],
                                     formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--models", nargs="+", default=list(RUNGS), choices=list(RUNGS))
    parser.add_argument("--threads", type=int, default=2, help="torch CPU threads (default 2)")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per model after one warm-up")
    args = parser.parse_args(argv)
    assert set(RUNGS[m][0]["name"] for m in RUNGS) <= set(MODELS)
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    photo = torch.rand(3, 480, 640)
    print(f"CPU latency on one 640x480 photo, {args.threads} thread(s), median of {args.repeats} runs\n")
    print("| rung | parameters | ms / image (median) | ms / image (min) |")
    print("|---|---:|---:|---:|")
    for name in args.models:
        options, label = RUNGS[name]
        params, median, fastest = time_rung(options, photo, args.repeats)
        print(f"| {label} | {params:,} | {median:,.0f} | {fastest:,.0f} |", flush=True)


if __name__ == "__main__":
    main()
