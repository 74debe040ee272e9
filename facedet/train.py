"""Train any rung of the ladder from a YAML config.

    python -m facedet.train --config yolo_face.yaml
    python -m facedet.train --config yolo_face.yaml train.epochs=3 data.root=$FACEDET_DATA/faces-caltech
    torchrun --nproc_per_node 2 -m facedet.train --config ssd300_voc.yaml
"""
from __future__ import annotations

import argparse
import math
import sys
from pathlib import Path

import torch
import yaml

from facedet import distributed as dist
from facedet.boosting import train_viola_jones
from facedet.calibrate import calibrate
from facedet.checkpoint import load, load_checkpoint
from facedet.cli import run_cli, seed_everything, select_device
from facedet.config import CONFIGS_DIR, Config, load_config, save_config, to_dict
from facedet.data.dataset import collate, collate_photos
from facedet.data.loaders import build_datasets, build_loader, dataset_roots, describe_data, resolve_num_classes
from facedet.init_weights import init_model
from facedet.evaluation import evaluate_classification, evaluate_detections
from facedet.files import atomic_save
from facedet.models import build_model
from facedet.predict import predict, predict_classification
from facedet.trainer import Trainer


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    known = ", ".join(sorted(p.name for p in CONFIGS_DIR.glob("*.yaml")))
    parser = argparse.ArgumentParser(
        prog="python -m facedet.train",
        description="Train a facedet model. Writes runs/<name>/: config.yaml, metrics.csv, "
        "training_chart.png, last.pt and best.pt.",
        epilog=f"configs shipped in {CONFIGS_DIR}: {known}. "
        "Overrides are section.key=value, e.g. train.epochs=3 train.lr=1e-3 data.root=/data/faces "
        "data.classes=face model.griddim=14 train.resume=runs/x/last.pt. "
        "--print-config lists every key; facedet/config.py gives each one's type and meaning.",
    )
    parser.add_argument("--config", required=True, help="YAML file, or the name of a shipped one (facedet/configs/, listed below)")
    parser.add_argument("--print-config", action="store_true",
                        help="print the resolved config (every key, defaults included) and exit")
    parser.add_argument("overrides", nargs="*", metavar="section.key=value", help="settings to override")
    return parser.parse_args(argv)


def train(cfg: Config) -> dict[str, float]:
    """Build model, data and trainer from `cfg`; train; return the last validation metrics."""
    if cfg.model.name == "viola_jones":  # rung 0 is boosted, not trained by gradient descent
        seed_everything(cfg.train.seed)
        return train_viola_jones(cfg)
    device = dist.setup(select_device(cfg.train.device))
    seed_everything(cfg.train.seed)
    resolve_num_classes(cfg)
    detector = build_model(cfg.model)
    detector.config = cfg
    if cfg.model.init and not cfg.train.resume:  # a resumed run continues from its own weights
        note = init_model(detector.model, cfg.model.init, cfg.model)
        if dist.is_main():
            print(note, file=sys.stderr, flush=True)
    train_set, val_set, class_names = build_datasets(cfg, detector.mean, detector.std)
    train_loader = build_loader(train_set, cfg, train=True, device=device)
    val_loader = build_loader(val_set, cfg, train=False, device=device,
                              collate_fn=collate if detector.task == "classification" else collate_photos)
    run_dir = Path(cfg.out_dir) / (cfg.name or cfg.model.name)
    if dist.is_main():
        run_dir.mkdir(parents=True, exist_ok=True)
        save_config(cfg, run_dir / "config.yaml")
        print(f"{cfg.model.name}: {sum(p.numel() for p in detector.model.parameters()):,} parameters, "
              f"{len(train_set)} train / {len(val_set)} val images, device {device}, run {run_dir}")
        if detector.task == "detection":
            print(describe_data(cfg), file=sys.stderr, flush=True)
        note = memory_note(detector.model, cfg)
        if note:
            print(note)

    if detector.task == "classification":
        main_metric = "auc"

        def validate(model) -> dict[str, float]:
            probs, labels = predict_classification(detector, val_loader, device)
            return evaluate_classification(probs, labels).as_dict()
    else:
        main_metric = "mAP"  # at eval.iou_thresholds[0], 11-point when eval.use_07_metric

        def validate(model) -> dict[str, float]:
            detections, truths = predict(detector, val_loader, cfg.eval, desc="validate")
            return evaluate_detections(detections, truths, class_names, iou_thresholds=cfg.eval.iou_thresholds,
                                       use_07_metric=cfg.eval.use_07_metric, voc_rule=cfg.eval.voc_rule).as_dict()

    trainer = Trainer(cfg, detector, train_loader, run_dir, device, validate, main_metric,
                      extra_state={"class_names": class_names})
    metrics = trainer.fit()
    if dist.is_main():
        print(summary_line(trainer, run_dir, main_metric, metrics))
        if detector.task == "detection" and cfg.train.calibrate and not trainer.interrupted \
                and trainer.best != -math.inf:
            print(calibrate_best(cfg, run_dir / "best.pt", device), file=sys.stderr, flush=True)
    dist.cleanup()
    return metrics


# Above this many bytes of weights, gradients and optimizer state, training says what it will
# need before it starts: the seed-size rungs (67 M and 413 M parameters) need GBs, the rest MBs.
MEMORY_NOTE_BYTES = 2**30
OPTIMIZER_COPIES = {"sgd": 1, "adam": 2, "adamw": 2}  # momentum; Adam's two moments


def memory_note(model: torch.nn.Module, cfg: Config) -> str | None:
    """A warning, before training, when the model's weights alone need GBs of memory and disk.

    Training holds the weights, their gradients and the optimizer's state (float32: 4 bytes
    each); a checkpoint holds the weights and the optimizer's state (unless
    train.save_optimizer=false), and training writes two of them (best.pt, last.pt)."""
    weights = 4 * sum(p.numel() for p in model.parameters())
    copies = OPTIMIZER_COPIES.get(cfg.train.optimizer, 2)
    if (2 + copies) * weights < MEMORY_NOTE_BYTES:
        return None
    gb = 2.0**30
    checkpoint = weights * (1 + copies if cfg.train.save_optimizer else 1)
    lighter = (f"; train.save_optimizer=false writes weights-only checkpoints of {weights / gb:.1f} GB "
               "(resuming then restarts the optimizer's state)") if cfg.train.save_optimizer else ""
    return (f"note: {cfg.model.name} is large: training needs about {(2 + copies) * weights / gb:.1f} GB of memory "
            f"for weights, gradients and {cfg.train.optimizer}'s state (plus activations, which grow with "
            f"train.batch_size), and each of best.pt and last.pt is {checkpoint / gb:.1f} GB{lighter}")


def summary_line(trainer: Trainer, run_dir: Path, main_metric: str, metrics: dict[str, float]) -> str:
    """The last line of a run: where the best checkpoint is and what it scored (never a best.pt
    that was not written)."""
    best = run_dir / "best.pt"
    if trainer.best == -math.inf:  # this run has not written best.pt (a file there is an older run's)
        return "stopped before the first validation: no best.pt from this run yet, only last.pt"
    validated = trainer.validate_fn is not None and trainer.cfg.train.val_every > 0
    score = f"{main_metric} {trainer.best:.4f}" if validated else f"(lowest training loss) {-trainer.best:.4f}"
    shown = ", ".join(f"{k}={v:.4f}" for k, v in metrics.items() if "/" not in k)
    verb = "stopped" if trainer.interrupted else "done"
    return f"{verb}: best {score} in {best}" + (f"; last validation: {shown}" if shown else "")


def calibrate_best(cfg: Config, best: Path, device: torch.device) -> str:
    """Store in `best` the operating point calibrated on the run's validation split (the best F1,
    facedet/calibrate.py), so that facedet.infer and facedet.load use it at once; return the log line."""
    detector = load(best, device)
    roots = [str(root) for root in dataset_roots(cfg.data)]
    point = calibrate(detector, roots, cfg.data.val_split, classes=cfg.data.classes, workers=cfg.data.num_workers,
                      max_images=cfg.eval.max_images, data=cfg.data)
    state = load_checkpoint(best)
    state["operating_point"] = point
    atomic_save(state, best)
    found = ", ".join(f"{name}: precision {row['precision']:.3f}, recall {row['recall']:.3f}"
                      for name, row in point["per_set"].items())
    return (f"calibrated {best}: min score {point['min_score']:.3f} ({point['rule']}; {found}); "
            "facedet.infer and facedet.load use it")


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    cfg = load_config(args.config, args.overrides)
    if args.print_config:
        print(yaml.safe_dump(to_dict(cfg), sort_keys=False), end="")
        return 0
    train(cfg)
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
