"""SSD post-processing: the tutorial's loops against facedet's batched version.

    python benchmarks/postprocess.py [--batch 8] [--classes 21] [--repeats 3] [--threads 1]

Both run on the same random network outputs at the paper's evaluation settings
(min_score 0.01, NMS IoU 0.45, top_k 200); the script checks that they return identical
detections and prints milliseconds per batch and the speed-up.

`reference_postprocess` is written the way tutorials write it (sgrvinod's
`detect_objects`): a loop over images, a loop over classes, and a loop over boxes for
NMS. It is kept here, and in the tests as an oracle, never in the library.
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch
from torch import Tensor

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))  # run from a checkout, uninstalled
from facedet.boxes import box_convert, box_iou, decode
from facedet.models.ssd import SSDPostprocess, make_priors


def reference_postprocess(outputs: tuple[Tensor, Tensor], priors: Tensor, min_score: float = 0.01,
                          nms_iou: float = 0.45, top_k: int = 200,
                          variances: tuple[float, float] = (0.1, 0.2)) -> list[dict[str, Tensor]]:
    """One image, one class, one box at a time. Same inputs and outputs as SSDPostprocess
    (softmax scores; column 0 = background; labels returned 0-based)."""
    pred_locs, pred_scores = outputs  # (B, P, 4), (B, P, C + 1)
    probs = pred_scores.softmax(dim=2)
    results = []
    for i in range(pred_locs.shape[0]):
        boxes = box_convert(decode(pred_locs[i], priors, variances), "cxcywh", "xyxy")  # (P, 4)
        image_boxes, image_scores, image_labels = [], [], []
        for c in range(1, probs.shape[2]):
            class_scores = probs[i, :, c]
            above = class_scores > min_score
            if not above.any():
                continue
            class_scores = class_scores[above]
            class_boxes = boxes[above]
            class_scores, order = class_scores.sort(descending=True)
            class_boxes = class_boxes[order]
            overlap = box_iou(class_boxes, class_boxes)
            suppress = torch.zeros(len(class_boxes), dtype=torch.bool)
            for box in range(len(class_boxes)):
                if suppress[box]:
                    continue
                # suppress every box overlapping this one too much (not itself)
                suppress = suppress | (overlap[box] > nms_iou)
                suppress[box] = False
            image_boxes.append(class_boxes[~suppress])
            image_scores.append(class_scores[~suppress])
            image_labels.append(torch.full((int((~suppress).sum()),), c - 1, dtype=torch.int64))
        if not image_boxes:
            results.append({"boxes": torch.zeros(0, 4), "scores": torch.zeros(0),
                            "labels": torch.zeros(0, dtype=torch.int64)})
            continue
        image_boxes = torch.cat(image_boxes)
        image_scores = torch.cat(image_scores)
        image_labels = torch.cat(image_labels)
        image_scores, order = image_scores.sort(descending=True)
        order = order[:top_k]
        results.append({"boxes": image_boxes[order], "scores": image_scores[:top_k],
                        "labels": image_labels[order]})
    return results


def random_outputs(batch: int, num_priors: int, num_scores: int,
                   generator: torch.Generator) -> tuple[Tensor, Tensor]:
    """Network-like raw outputs: small box offsets, and logits where background usually
    wins but each class still clears 0.01 on several hundred priors per image."""
    pred_locs = 0.5 * torch.randn(batch, num_priors, 4, generator=generator)
    pred_scores = 2.0 * torch.randn(batch, num_priors, num_scores, generator=generator)
    pred_scores[..., 0] += 9.0  # background logit: median background probability ~0.99
    return pred_locs, pred_scores


def same_detections(a: list[dict[str, Tensor]], b: list[dict[str, Tensor]]) -> bool:
    return len(a) == len(b) and all(
        torch.equal(x[key], y[key]) for x, y in zip(a, b) for key in ("boxes", "scores", "labels")
    )


def _time(fn, repeats: int) -> tuple[float, object]:
    """Best wall time of `repeats` calls, in milliseconds, and the last result."""
    best, result = float("inf"), None
    for _ in range(repeats):
        start = time.perf_counter()
        result = fn()
        best = min(best, time.perf_counter() - start)
    return 1000 * best, result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--classes", type=int, default=21, help="score columns incl. background")
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)

    priors = make_priors()
    outputs = random_outputs(args.batch, len(priors), args.classes,
                             torch.Generator().manual_seed(args.seed))
    settings = {"min_score": 0.01, "nms_iou": 0.45, "top_k": 200}
    probs = outputs[1].softmax(dim=2)[..., 1:]
    per_class = (probs > settings["min_score"]).sum(dim=1).float().mean()
    print(f"batch {args.batch}, {len(priors)} priors, "
          f"{args.classes - 1} object class(es) + background, "
          f"{per_class:.0f} boxes per (image, class) above min_score, "
          f"{torch.get_num_threads()} thread(s)")

    postprocess = SSDPostprocess(priors)
    batched_ms, batched = _time(lambda: postprocess(outputs, **settings), max(args.repeats, 5))
    loop_ms, loops = _time(lambda: reference_postprocess(outputs, priors, **settings), args.repeats)
    identical = same_detections(batched, loops)
    kept = sum(len(d["scores"]) for d in batched)

    print(f"{kept} detections kept; identical: {identical}\n")
    rows = [("reference (loops: image, class, box)", loop_ms),
            ("SSDPostprocess (batched)", batched_ms)]
    print(f"| {'post-processing':<36} | ms / batch | speed-up |")
    print(f"|{'-' * 38}|-----------:|---------:|")
    for name, ms in rows:
        print(f"| {name:<36} | {ms:10.1f} | {loop_ms / ms:7.1f}x |")
    if not identical:
        raise SystemExit("the two post-processors disagree")


if __name__ == "__main__":
    main()
