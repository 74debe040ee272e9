"""Mutation testing, small and explicit: does the test suite notice a plausible one-line mistake?

    python benchmarks/mutants.py                  # every mutant; prints a table and the score
    python benchmarks/mutants.py --list           # the mutants only
    python benchmarks/mutants.py -k centernet     # the mutants whose name or file contains a word

Each mutant is one exact text change in one file (a rule a learner could get wrong: a
boundary, an order, a stride, an activation) and the tests that ought to catch it: test files,
or pytest node ids (`tests/test_x.py::test_name`) where one test says the rule and the whole
file would take long on a loaded machine. The change is applied to the files under ROOT (the
checkout this script sits in), those tests run (`pytest -x -q`), and the file is restored
whatever happens (an exception, Ctrl-C or SIGTERM).
A mutant is *killed* when the tests fail, *survived* when they pass. The list is fixed so that
the score can be compared from one commit to the next (TESTING.md records it).
"""
from __future__ import annotations

import argparse
import signal
import subprocess
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent

# (name, file, original text, mutated text, test files or node ids)
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
    # ---- rung 0: Viola-Jones
    ("Viola-Jones scan step does not grow with the window", "facedet/models/viola_jones.py",
     "step = max(1, pixels(self.scan_step * scale))", "step = max(1, pixels(self.scan_step))",
     ["tests/test_viola_jones.py::test_the_scan_step_grows_with_the_window",
      "tests/test_viola_jones.py::test_the_scan_finds_a_planted_pattern_at_its_scale_and_place"]),
    ("Viola-Jones feature edges rounded half to even, not as the window", "facedet/models/viola_jones.py",
     "scaled = torch.floor(self.rects.double() * scale + 0.5).long()", "scaled = torch.round(self.rects.double() * scale).long()",
     ["tests/test_viola_jones.py::test_scaled_features_never_reach_outside_their_window",
      "tests/test_viola_jones.py::test_a_photo_one_window_wide_scans_at_every_min_window"]),
    # ---- rung 1: classifier, sliding window
    ("small classifier pools its map by max, not mean", "facedet/models/classifier.py",
     "return self.fc(f32.mean(dim=(2, 3))).squeeze(1)", "return self.fc(f32.amax(dim=(2, 3))).squeeze(1)",
     ["tests/test_classifier.py::test_small_classifier_averages_its_last_map_before_the_linear_layer"]),
    ("sliding window misses the last row/column of windows", "facedet/models/sliding_window.py",
     "rows = math.ceil(max(hr - self.window, 0) / self.stride) + 1", "rows = math.floor(max(hr - self.window, 0) / self.stride) + 1",
     ["tests/test_sliding_window.py::test_levels_scale_the_image_so_each_window_becomes_the_net_input",
      "tests/test_sliding_window.py::test_window_boxes_hand_example"]),
    ("sliding window boxes with x and y swapped", "facedet/models/sliding_window.py",
     "level = torch.stack([xx, yy, xx + self.window, yy + self.window], dim=-1)",
     "level = torch.stack([yy, xx, yy + self.window, xx + self.window], dim=-1)",
     ["tests/test_sliding_window.py::test_window_boxes_hand_example",
      "tests/test_sliding_window.py::test_scores_match_a_loop_over_windows"]),
    # ---- rung 3: grid
    ("small grid head: sigmoid -> hard sigmoid", "facedet/models/grid.py",
     "return torch.sigmoid(self.head(self.features(images))).squeeze(1)",
     "return (self.head(self.features(images)) / 6 + 0.5).clamp(0, 1).squeeze(1)",
     ["tests/test_grid.py::test_small_grid_head_is_a_sigmoid_of_its_1x1_convolution"]),
    ("grid truth: a cell counts when its centre is strictly inside", "facedet/models/grid.py",
     "in_cols = (x1 <= centres) & (centres <= x2)", "in_cols = (x1 < centres) & (centres < x2)",
     ["tests/test_grid.py::test_truth_matrix_hand_made_boxes",
      "tests/test_grid.py::test_truth_matrices_match_the_loop_oracle"]),
    # ---- rung 4: YOLO-face
    ("YOLO cell-relative centre with row and column swapped", "facedet/models/yolo_face.py",
     "x, y = cx * S - col, cy * S - row", "x, y = cx * S - row, cy * S - col",
     ["tests/test_yolo_face.py::test_encode_puts_the_box_in_the_cell_holding_its_centre",
      "tests/test_yolo_face.py::test_encode_matches_the_loop_oracle",
      "tests/test_yolo_face.py::test_decode_cell_relative_offsets"]),
    ("YOLO decode shifts x by the row", "facedet/models/yolo_face.py",
     "shift[:, :, 1 : 5 * boxes_per_cell : 5] = steps.view(1, S, 1)",
     "shift[:, :, 1 : 5 * boxes_per_cell : 5] = steps.view(S, 1, 1)",
     ["tests/test_yolo_face.py::test_decode_cell_relative_offsets",
      "tests/test_yolo_face.py::test_encode_then_postprocess_gives_the_boxes_back"]),
    ("YOLO loss makes the worst slot responsible", "facedet/models/yolo_face.py",
     "best = F.one_hot(iou.argmax(-1), B).bool()", "best = F.one_hot(iou.argmin(-1), B).bool()",
     ["tests/test_yolo_face.py::test_loss_with_two_slots_makes_the_best_overlap_responsible"]),
    # ---- rung 5: fast.ai head
    ("fast.ai head: sizes scaled x0 .. x2 instead of x0.5 .. x1.5", "facedet/models/fastai_ssd.py",
     "sizes = (t[..., 2:] / 2 + 1) * anchors[:, 2:]", "sizes = (t[..., 2:] + 1) * anchors[:, 2:]",
     ["tests/test_fastai_ssd.py::test_activations_to_boxes_limits"]),
    ("fast.ai anchors centred on cell corners", "facedet/models/fastai_ssd.py",
     "centres = (torch.arange(g, dtype=torch.float32) + 0.5) / g", "centres = (torch.arange(g, dtype=torch.float32) + 0.0) / g",
     ["tests/test_fastai_ssd.py::test_anchors_hand_computed"]),
    ("focal loss: alpha weighs the negatives", "facedet/models/losses.py",
     "alpha_t = alpha * targets + (1 - alpha) * (1 - targets)", "alpha_t = (1 - alpha) * targets + alpha * (1 - targets)",
     ["tests/test_retinanet.py::test_focal_loss_worked_example_by_hand"]),
    # ---- rung 6: RetinaNet
    ("FPN P7 without the ReLU on P6", "facedet/models/retinanet.py",
     "levels.append(self.p7(F.relu(levels[-1])))", "levels.append(self.p7(levels[-1]))",
     ["tests/test_retinanet.py::test_p7_is_computed_from_p6_after_a_relu",
      "tests/test_retinanet.py::test_fpn_output_shapes_per_level"]),
    ("FPN top-down pathway dropped", "facedet/models/retinanet.py",
     "m = m + F.interpolate(above, size=m.shape[-2:], mode=\"nearest\")", "m = m + 0 * above.mean()",
     ["tests/test_retinanet.py::test_top_down_path_carries_deep_features_into_p3"]),
    ("RetinaNet matching: IoU == fg threshold is not positive", "facedet/models/retinanet.py",
     "labels = torch.where(overlap >= fg_iou, labels,", "labels = torch.where(overlap > fg_iou, labels,",
     ["tests/test_retinanet.py::test_an_anchor_at_exactly_the_foreground_iou_is_positive",
      "tests/test_retinanet.py::test_matching_thresholds_and_the_ignore_band",
      "tests/test_retinanet.py::test_matching_agrees_with_a_loop_oracle"]),
    ("RetinaNet anchors centred on cell corners", "facedet/boxes.py",
     "cy, cx = torch.meshgrid((torch.arange(rows, dtype=torch.float32) + 0.5) * stride,",
     "cy, cx = torch.meshgrid((torch.arange(rows, dtype=torch.float32) + 0.0) * stride,",
     ["tests/test_retinanet.py::test_grid_anchors_centres_and_order_by_hand"]),
    # ---- rung 7: CenterNet
    ("CenterNet Gaussian radius rounded instead of floored", "facedet/models/centernet.py",
     "radius = gaussian_radius(w, h, min_iou).floor().clamp(min=0).long()",
     "radius = gaussian_radius(w, h, min_iou).round().clamp(min=0).long()",
     ["tests/test_centernet.py::test_the_gaussian_radius_is_floored_to_whole_cells",
      "tests/test_centernet.py::test_encode_targets_toy_box_by_hand"]),
    ("CenterNet centre cell rounded instead of floored", "facedet/models/centernet.py",
     "col = cx.floor().long().clamp(0, width - 1)", "col = cx.round().long().clamp(0, width - 1)",
     ["tests/test_centernet.py::test_a_centre_belongs_to_the_cell_it_falls_in_not_the_nearest_corner",
      "tests/test_centernet.py::test_encode_targets_toy_box_by_hand"]),
    ("CenterNet peaks: a 1x1 window keeps every cell", "facedet/models/centernet.py",
     "pooled = F.max_pool2d(heatmap, kernel_size=3, stride=1, padding=1)",
     "pooled = F.max_pool2d(heatmap, kernel_size=1, stride=1, padding=0)",
     ["tests/test_centernet.py::test_decoding_matches_the_loop_oracle"]),
    ("Gaussian radius: the largest of the three cases", "facedet/boxes.py",
     "return torch.min(torch.min(r1, r2), r3)", "return torch.max(torch.max(r1, r2), r3)",
     ["tests/test_centernet.py::test_gaussian_radius_hand_cases",
      "tests/test_centernet.py::test_corners_moved_by_the_radius_keep_the_iou"]),
    # ---- inference path: resize, tiles, calibration
    ("the one resize without antialiasing", "facedet/data/transforms.py",
     "mode=\"bilinear\", align_corners=False, antialias=True)", "mode=\"bilinear\", align_corners=False, antialias=False)",
     ["tests/test_transforms.py::test_the_one_resize_averages_when_it_shrinks",
      "tests/test_transforms.py::test_resize_hand_values_and_pixels"]),
    ("neighbouring tiles overlap by half the promised overlap", "facedet/models/detector.py",
     "    step = side - overlap\n", "    step = side - overlap // 2\n",
     ["tests/test_inference.py::test_neighbouring_tiles_overlap_by_at_least_the_promised_overlap",
      "tests/test_inference.py::test_tiles_give_the_single_pass_boxes"]),
    ("one resize scale for both axes when boxes go back to the photo", "facedet/models/detector.py",
     "scale = (new_w / w, new_h / h)", "scale = (new_w / w, new_w / w)",
     ["tests/test_inference.py::test_boxes_go_back_to_the_photo_with_each_axis_own_scale",
      "tests/test_inference.py::test_a_chosen_size_resizes_and_maps_boxes_back_to_the_photo"]),
    ("boxes mapped back with the x scale on y", "facedet/models/detector.py",
     "boxes = boxes[keep] / torch.tensor([sx, sy, sx, sy])", "boxes = boxes[keep] / torch.tensor([sx, sx, sx, sx])",
     ["tests/test_inference.py::test_boxes_go_back_to_the_photo_with_each_axis_own_scale",
      "tests/test_inference.py::test_a_chosen_size_resizes_and_maps_boxes_back_to_the_photo"]),
    ("tile offset added to x only", "facedet/models/detector.py",
     "boxes = boxes + torch.tensor([p.offset[0], p.offset[1], p.offset[0], p.offset[1]])",
     "boxes = boxes + torch.tensor([p.offset[0], p.offset[0], p.offset[0], p.offset[0]])",
     ["tests/test_inference.py::test_a_tile_keeps_only_the_boxes_centred_in_its_own_span",
      "tests/test_inference.py::test_tiles_give_the_single_pass_boxes"]),
    ("calibrate's precision rule: any set instead of every set", "facedet/calibrate.py",
     "min_score = max(per_set_threshold.values())", "min_score = min(per_set_threshold.values())",
     ["tests/test_operating_point.py::test_calibrate_precision_rule_keeps_the_precision_on_every_set"]),
    ("calibrate's F1 rule on the first set only", "facedet/calibrate.py",
     "min_score = threshold_for_best_f1(all_dets, all_truths, num_classes)",
     "min_score = threshold_for_best_f1(*next(iter(found.values())), num_classes)",
     ["tests/test_operating_point.py::test_calibrate_keeps_two_sets_that_share_a_folder_name"]),
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
        # pytest's 4 (usage error, e.g. a node id that no longer exists) and 5 (nothing collected)
        # are the mutants list's own faults, not a kill
        if result.returncode in (4, 5):
            status = f"not tested (pytest exit {result.returncode}: a test id not found)"
        else:
            status = "killed" if result.returncode != 0 else "SURVIVED"
    except subprocess.TimeoutExpired:
        status = "killed (timed out)"
    finally:
        file.write_text(source)
    return status, time.perf_counter() - start


def _stop(signum, frame):
    """SIGTERM -> SystemExit, so that `run`'s finally restores the mutated file."""
    raise SystemExit(128 + signum)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--list", action="store_true", help="list the mutants and exit")
    parser.add_argument("-k", "--filter", default="",
                        help="only the mutants whose name or file contains this text (case-insensitive)")
    args = parser.parse_args()
    signal.signal(signal.SIGTERM, _stop)
    chosen = [m for m in MUTANTS if args.filter.lower() in (m[0] + " " + m[1]).lower()]
    print("| mutant | file | tests | result | s |\n|---|---|---|---|---:|")
    killed = 0
    for name, path, old, new, tests in chosen:
        if args.list:
            print(f"| {name} | {path} | {' '.join(tests)} | | |")
            continue
        status, seconds = run(name, path, old, new, tests)
        killed += status.startswith("killed")
        print(f"| {name} | {path} | {' '.join(t.split('/')[-1] for t in tests)} | {status} | {seconds:.0f} |",
              flush=True)
    if not args.list:
        print(f"\nmutation score: {killed} / {len(chosen)} killed"
              + (f" (the {len(chosen)} of {len(MUTANTS)} mutants matching {args.filter!r})" if args.filter else ""))
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
