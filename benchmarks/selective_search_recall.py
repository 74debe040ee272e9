"""Selective Search on a data split: face recall at IoU 0.5 against the number of proposals kept,
and seconds per photo. The proposals are stored in the proposal cache (facedet.proposal_cache),
so this is also the command that fills it for R-CNN and Fast R-CNN training:

    OMP_NUM_THREADS=1 python benchmarks/selective_search_recall.py --data /work/shared/data/faces-caltech \
        --split val --max-images 100

prints one Markdown table row per split (photos, faces, recall at each count, mean proposals kept,
wall and CPU seconds per photo: on a shared machine the wall time mostly measures the other jobs).
"""
from __future__ import annotations

import argparse
import platform
import time
from dataclasses import replace
from pathlib import Path

import torch

from facedet.data.readers import read_dataset
from facedet.proposal_cache import cached_proposals, default_proposals_dir, proposal_recall
from facedet.selective_search import SelectiveSearchConfig

COUNTS = (100, 300, 1000, 2000)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--data", required=True, help="data set root (any format facedet reads)")
    parser.add_argument("--split", default="val")
    parser.add_argument("--max-images", type=int, default=100, help="the first N photos, by path")
    parser.add_argument("--mode", choices=("fast", "single"), default="fast", help="the paper's diversification")
    parser.add_argument("--max-side", type=int, default=SelectiveSearchConfig().max_side,
                        help="photos are shrunk to this many pixels per side for the proposals")
    parser.add_argument("--cache-dir", type=Path, default=None, help=f"default {default_proposals_dir()}")
    args = parser.parse_args()

    records, _ = read_dataset(args.data, args.split, classes="face")
    records = sorted(records, key=lambda r: str(r.image_path))[:args.max_images]
    config = SelectiveSearchConfig() if args.mode == "fast" else SelectiveSearchConfig.single()
    config = replace(config, max_side=args.max_side)
    name = f"{Path(args.data).name}-{args.split}"
    started = time.perf_counter()

    def progress(done: int, total: int, seconds: float) -> None:
        if done % 10 == 0 or done == total:
            print(f"  {done}/{total} photos computed ({seconds:.1f} s the last)", flush=True)

    boxes, timings = cached_proposals(records, name, config, keep=max(COUNTS), folder=args.cache_dir,
                                      progress=progress)
    recall = proposal_recall(boxes, [r.boxes for r in records], COUNTS, iou_threshold=0.5)
    faces = sum(len(r.boxes) for r in records)
    mean_kept = sum(len(b) for b in boxes) / len(boxes)
    print(f"{name}: {len(records)} photos, {faces} faces, mode {args.mode}, max side {args.max_side}, "
          f"torch threads {torch.get_num_threads()}, {platform.processor() or platform.machine()}, "
          f"wall {time.perf_counter() - started:.0f} s")
    header = " | ".join(f"recall@{n}" for n in COUNTS)
    wall = sum(t["seconds"] for t in timings) / len(timings)
    cpu = [t["cpu_seconds"] for t in timings if "cpu_seconds" in t]
    cpu_cell = f"{sum(cpu) / len(cpu):.2f} ({len(cpu)} photos)" if cpu else "not recorded"
    print(f"| split | photos | faces | {header} | proposals per photo | wall s / photo | CPU s / photo |")
    print("|---" * (6 + len(COUNTS)) + "|")
    cells = " | ".join(f"{recall[n]:.3f}" for n in COUNTS)
    print(f"| {name} | {len(records)} | {faces} | {cells} | {mean_kept:.0f} | {wall:.1f} | {cpu_cell} |")


if __name__ == "__main__":
    main()
