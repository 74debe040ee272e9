"""Mutation testing, small and explicit: does the test suite notice a plausible one-line mistake?

    python benchmarks/mutants.py            # every mutant; prints a table and the score
    python benchmarks/mutants.py --list     # the mutants only

Each mutant is one exact text change in one file (a rule a learner could get wrong: a
boundary, an order, a stride, an activation) and the test files that ought to catch it. The
change is applied, those tests run (`pytest -x -q`), and the file is restored whatever happens.
A mutant is *killed* when the tests fail, *survived* when they pass. The list is fixed so that
the score can be compared from one commit to the next (TESTING.md records it).
"""
from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (name, file, original text, mutated text, test files)
MUTANTS = [
    ("SSD300 pool5 3x3/1 -> 1x1 (same shape)", "facedet/models/ssd.py",
     "self.pool5 = nn.MaxPool2d(3, stride=1, padding=1)", "self.pool5 = nn.MaxPool2d(1, stride=1)",
     ["tests/test_ssd.py"]),
    ("SSD300 conv10_2 stride 1 -> 2 (same 3x3 output)", "facedet/models/ssd.py",
     "self.conv10_2 = _conv(128, 256, 3, False)  #", "self.conv10_2 = _conv(128, 256, 3, False, stride=2, padding=1)  #",
     ["tests/test_ssd.py"]),
    ("SSD300 predictions flattened column by column", "facedet/models/ssd.py",
     "conv(f).permute(0, 2, 3, 1).reshape(n, -1, 4) for conv, f in zip(self.loc, features)",
     "conv(f).permute(0, 3, 2, 1).reshape(n, -1, 4) for conv, f in zip(self.loc, features)",
     ["tests/test_ssd.py"]),
    ("FaceSSD predictions flattened column by column", "facedet/models/face_ssd.py",
     "locs = [conv(f).permute(0, 2, 3, 1).reshape(n, -1, 4)", "locs = [conv(f).permute(0, 3, 2, 1).reshape(n, -1, 4)",
     ["tests/test_face_ssd.py", "tests/test_inference.py"]),
    ("prior matching: IoU == threshold becomes background", "facedet/boxes.py",
     "labels[overlap < threshold] = 0", "labels[overlap <= threshold] = 0",
     ["tests/test_ssd.py", "tests/test_face_ssd.py"]),
    ("SSD post-processing drops a box scoring exactly min_score", "facedet/boxes.py",
     "passing = group_scores >= min_score", "passing = group_scores > min_score",
     ["tests/test_ssd_postprocess.py", "tests/test_ssd.py"]),
    ("grid head: sigmoid -> hard sigmoid", "facedet/models/grid.py",
     "            nn.Sigmoid(),\n        )\n\n    @staticmethod\n    def make_features() -> nn.Module:\n        \"\"\"The convolution stack: (N, 3, H, W) -> (N, 512, H/16, W/16).\"\"\"\n        return grid_simple_features()",
     "            nn.Hardsigmoid(),\n        )\n\n    @staticmethod\n    def make_features() -> nn.Module:\n        \"\"\"The convolution stack: (N, 3, H, W) -> (N, 512, H/16, W/16).\"\"\"\n        return grid_simple_features()",
     ["tests/test_grid.py"]),
    ("encode: the two variances swapped", "facedet/boxes.py",
     "    v_center, v_size = variances\n    g_center", "    v_size, v_center = variances\n    g_center",
     ["tests/test_boxes.py", "tests/test_ssd.py"]),
    ("NMS suppresses at IoU == threshold", "facedet/boxes.py",
     "suppress = (box_iou_batched(block_boxes, block_boxes) > iou_threshold)",
     "suppress = (box_iou_batched(block_boxes, block_boxes) >= iou_threshold)",
     ["tests/test_boxes.py"]),
    ("VOC matching needs IoU strictly above the threshold", "facedet/evaluation.py",
     "candidate = same_class & (overlap >= thresholds) & ~taken", "candidate = same_class & (overlap > thresholds) & ~taken",
     ["tests/test_evaluation.py"]),
    ("precision envelope taken forwards", "facedet/evaluation.py",
     "return precision.flip(-1).cummax(-1).values.flip(-1)", "return precision.cummax(-1).values",
     ["tests/test_evaluation.py"]),
    ("recall@50FP allows the 51st false positive", "facedet/evaluation.py",
     "best_tp = torch.where(fp <= max_fp, tp, 0.0)", "best_tp = torch.where(fp <= max_fp + 1, tp, 0.0)",
     ["tests/test_evaluation.py"]),
    ("face priors centred on cell corners", "facedet/models/face_ssd.py",
     "cy, cx = torch.meshgrid((torch.arange(rows, dtype=torch.float32) + 0.5) / rows,",
     "cy, cx = torch.meshgrid((torch.arange(rows, dtype=torch.float32) + 0.0) / rows,",
     ["tests/test_face_ssd.py", "tests/test_inference.py"]),
    ("tiles keep boxes centred in their overlap twice", "facedet/models/detector.py",
     "keep = (cx >= x_lo) & (cx < x_hi) & (cy >= y_lo) & (cy < y_hi)", "keep = torch.ones_like(cx, dtype=torch.bool)",
     ["tests/test_inference.py"]),
    ("default size enlarges small photos", "facedet/models/detector.py",
     "base = min(1.0, self.max_size / max(h, w)) if self.max_size else 1.0",
     "base = self.max_size / max(h, w) if self.max_size else 1.0",
     ["tests/test_inference.py"]),
    ("operating point drops a detection scoring exactly min_score", "facedet/evaluation.py",
     "keep = flat.pred_scores >= min_score", "keep = flat.pred_scores > min_score",
     ["tests/test_operating_point.py"]),
]


def run(name: str, path: str, old: str, new: str, tests: list[str]) -> tuple[str, float]:
    file = ROOT / path
    source = file.read_text()
    if source.count(old) != 1:
        return "not applied (text not found once)", 0.0
    start = time.perf_counter()
    try:
        file.write_text(source.replace(old, new))
        result = subprocess.run([sys.executable, "-m", "pytest", "-x", "-q", "-p", "no:cacheprovider", *tests],
                                cwd=ROOT, capture_output=True, text=True, timeout=900)
        status = "killed" if result.returncode != 0 else "SURVIVED"
    finally:
        file.write_text(source)
    return status, time.perf_counter() - start


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    args = parser.parse_args()
    print("| mutant | file | tests | result | s |\n|---|---|---|---|---:|")
    killed = 0
    for name, path, old, new, tests in MUTANTS:
        if args.list:
            print(f"| {name} | {path} | {' '.join(tests)} | | |")
            continue
        status, seconds = run(name, path, old, new, tests)
        killed += status == "killed"
        print(f"| {name} | {path} | {' '.join(Path(t).name for t in tests)} | {status} | {seconds:.0f} |", flush=True)
    if not args.list:
        print(f"\nmutation score: {killed} / {len(MUTANTS)} killed")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
