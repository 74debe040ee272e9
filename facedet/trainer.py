"""One training loop for every rung.

The trainer knows nothing about any model: the model maps images to outputs, the
criterion maps (outputs, targets) to a dict of named loss terms, the trainer sums them,
backpropagates, steps and logs. Everything else is a small piece around `train_one_epoch`:
checkpoints (facedet/run_checkpoints.py), exact resume (facedet/resume.py), Ctrl-C
(facedet/interrupt.py), AMP, DDP (facedet/distributed.py) and the chart.
"""
from __future__ import annotations

import csv
import math
import sys
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from tqdm import tqdm

from facedet import distributed as dist
from facedet.amp import MixedPrecision
from facedet.config import Config
from facedet.data.loaders import TrainLoader
from facedet.errors import ConfigError, NonFiniteLossError
from facedet.interrupt import CtrlC, interrupted_note
from facedet.models.detector import Detector
from facedet.optim import build_optimizer, build_scheduler, warmup_note
from facedet.resume import restore_rng, resume, rest_of_epoch, seed_epoch
from facedet.run_checkpoints import remove_leftovers, save_checkpoint, save_epoch
from facedet.time_budget import TimeBudget
from facedet.training_chart import plot_training_chart


class Trainer:
    """Train `detector` on `train_loader`; validate with `validate(model) -> metrics`.

    `main_metric` (a key of the validation metrics, higher is better) picks best.pt;
    without validation the lowest training loss does.
    """

    def __init__(
        self,
        cfg: Config,
        detector: Detector,
        train_loader: torch.utils.data.DataLoader,
        run_dir: Path,
        device: torch.device,
        validate: Callable[[nn.Module], dict[str, float]] | None = None,
        main_metric: str = "mAP50",
        extra_state: dict | None = None,
    ):
        self.cfg, self.train_loader, self.validate_fn = cfg, train_loader, validate
        self.run_dir, self.device, self.main_metric = Path(run_dir), device, main_metric
        self.extra_state = extra_state or {}  # e.g. class names, stored in every checkpoint
        # NHWC weights and images on CUDA (see train.channels_last); a no-op choice on CPU
        self.memory_format = torch.channels_last if cfg.train.channels_last and device.type == "cuda" \
            else torch.contiguous_format
        self.model = detector.model.to(device, memory_format=self.memory_format)
        self.criterion = detector.criterion.to(device)
        if device.type == "cuda":
            torch.backends.cudnn.benchmark = True  # fixed input sizes: let cuDNN time its kernels once
            torch.backends.cuda.matmul.allow_tf32 = True  # float32 matmuls (validation) on tensor cores
        self.optimizer = build_optimizer(self.model, cfg.train)
        self.iters_per_epoch = max(1, len(train_loader))
        self.total_iters = cfg.train.max_iters or cfg.train.epochs * self.iters_per_epoch
        self.epochs = math.ceil(self.total_iters / self.iters_per_epoch)
        self.scheduler = build_scheduler(self.optimizer, cfg.train, lambda: self.total_iters)
        # train.minutes: the run sizes itself after its first steps (until then, the length above)
        self.budget = TimeBudget(cfg.train.minutes) if cfg.train.minutes > 0 else None
        if self.budget is not None and dist.world_size() > 1:
            raise ConfigError("train.minutes times one process; under torchrun each rank would size the run "
                              "differently: set train.max_iters (or train.epochs) instead")
        note = warmup_note(cfg.train, self.total_iters)
        if note and self.budget is None and dist.is_main():
            print(note, file=sys.stderr, flush=True)
        self.amp = MixedPrecision(cfg.train.amp, device)
        self.epoch, self.iteration, self.best = 0, 0, -math.inf
        # where the run stands inside the epoch: steps taken and their summed loss terms (a
        # checkpoint written by Ctrl-C mid-epoch stores both, and resume continues from there)
        self.batch, self.epoch_sums = 0, {}
        self.resume_rng: dict | None = None  # random state to restore when resuming mid-epoch
        self.ctrl_c, self.stepping, self.interrupted = CtrlC(), False, False
        self.train_time = 0.0  # seconds spent in training epochs (validation excluded), summed over resumes
        self.validation_time = 0.0  # seconds the last validation took
        self.history: list[dict[str, float]] = []
        if dist.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            remove_leftovers(self.run_dir)
        if cfg.train.resume:
            resume(self, cfg.train.resume)
        self.train_model = self.model  # what the loop calls; self.model is what is saved and validated
        if dist.world_size() > 1:
            ids = [device.index] if device.type == "cuda" else None
            self.train_model = nn.parallel.DistributedDataParallel(self.model, device_ids=ids)
        if cfg.train.compile:  # after DDP, as torch's docs recommend; shares self.model's weights
            self.train_model = torch.compile(self.train_model)

    # ------------------------------------------------------------------ the loop
    def fit(self) -> dict[str, float]:
        """Train to the end, or to Ctrl-C: the first one stops after the current step and saves a
        last.pt that resumes exactly (at the next batch, same data order, schedule and random
        state); a second one stops at once."""
        metrics: dict[str, float] = {}
        try:
            with self.ctrl_c:
                while self.epoch < self.epochs and self.iteration < self.total_iters:
                    if self.ctrl_c.requested:  # Ctrl-C during the validation of the epoch before
                        raise KeyboardInterrupt
                    seed_epoch(self.train_loader, self.cfg.train.seed, self.epoch, self.batch, self.cfg.train.batch_size)
                    start = time.perf_counter()
                    losses = self.train_one_epoch()
                    self.train_time += time.perf_counter() - start
                    if self.ctrl_c.requested:
                        raise KeyboardInterrupt
                    dist.broadcast_buffers(self.model)  # every rank now holds exactly what rank 0 saves
                    if self.budget is not None:  # before validating: a run resized to end here validates now
                        self.budget.after_epoch(self)
                    metrics = self.maybe_validate()
                    self.epoch, self.batch, self.epoch_sums = self.epoch + 1, 0, {}
                    self.log_epoch(losses, metrics)
                    if dist.is_main():
                        save_epoch(self, metrics, validating=self.validate_fn is not None and self.cfg.train.val_every > 0)
        except KeyboardInterrupt:
            self.interrupted = True
            if dist.is_main():
                save_checkpoint(self, self.run_dir / "last.pt", metrics, interrupted=True)
                print("\n" + interrupted_note(self.run_dir / "last.pt", self.epoch, self.batch, self.stepping))
            return metrics
        finally:
            if isinstance(self.train_loader, TrainLoader):
                self.train_loader.close()  # its persistent workers stop now, not at garbage collection
        dist.barrier()  # no rank leaves (and tears down the process group) before rank 0 has saved
        return metrics

    def train_one_epoch(self) -> dict[str, float]:
        """The rest of the epoch: all of it, or after a mid-epoch resume its remaining batches."""
        self.train_model.train()
        sums: dict[str, float] = defaultdict(float, self.epoch_sums)
        batches, total = rest_of_epoch(self.train_loader, self.batch)
        if self.resume_rng is not None:  # resuming mid-epoch: torch's random state as the interrupted run left it
            restore_rng(self.resume_rng)
            self.resume_rng = None
        # disable=None: no bar when stderr is not a terminal, so a log file gets lines, not carriage returns
        bar = tqdm(batches, desc=f"epoch {self.epoch + 1}/{self.epochs}", initial=self.batch, total=total,
                   disable=None if dist.is_main() else True, dynamic_ncols=True, mininterval=1.0)
        for images, targets in bar:
            self.stepping = True
            for name, value in self.train_step(images, targets, self.batch).items():
                sums[name] += value
            self.stepping = False
            self.batch += 1
            self.epoch_sums = dict(sums)
            if self.budget is not None:
                self.budget.after_step(self)
            bar.set_postfix({k: f"{v / self.batch:.4f}" for k, v in sums.items()}, refresh=False)
            if self.iteration >= self.total_iters or self.ctrl_c.requested:
                break
        return dist.mean_across_ranks({k: v / max(1, self.batch) for k, v in sums.items()})

    def train_step(self, images: Tensor, targets: list[dict], batch: int = 0) -> dict[str, float]:
        """One optimisation step on a batch: forward, loss terms, backward, step.

        images (B, 3, H, W) and targets as the loader gives them (on the host). Returns the
        loss terms and their sum "loss" as floats (one device sync per step).
        """
        images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
        targets = targets_to_device(targets, self.device)
        with self.amp.autocast():
            outputs = self.train_model(images)
        terms = self.criterion(outputs_to_float(outputs), targets)  # outside autocast: losses in float32
        values = self.check_finite(terms, batch, targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.amp.scaler.scale(sum(terms.values())).backward()
        if self.cfg.train.grad_clip > 0:
            self.amp.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.amp.scaler.step(self.optimizer)
        self.amp.scaler.update()
        self.scheduler.step()
        self.iteration += 1
        return values

    # ------------------------------------------------------------------ pieces
    def set_length(self, total_iters: int) -> None:
        """Make the run `total_iters` steps long (train.minutes): the schedule follows, and the
        checkpoints' config records it, so that a resumed run keeps this length."""
        self.total_iters = self.cfg.train.max_iters = max(total_iters, self.iteration, 1)
        self.epochs = math.ceil(self.total_iters / self.iters_per_epoch)

    def check_finite(self, terms: dict[str, Tensor], batch: int, targets: list[dict]) -> dict[str, float]:
        """The terms and their sum "loss" as floats; stop with the bad term named if any is NaN or inf."""
        numbers = torch.stack([value.detach().float() for value in terms.values()]).tolist()  # one sync
        values = dict(zip(terms, numbers))
        for name, value in values.items():
            if not math.isfinite(value):
                paths = ", ".join(str(t.get("path", "?")) for t in targets[:4])
                last = self.run_dir / "last.pt"
                kept = f"last good checkpoint: {last}" if last.exists() else "no checkpoint written yet"
                raise NonFiniteLossError(
                    f"loss term '{name}' is {value} at epoch {self.epoch + 1}, batch {batch} "
                    f"(images: {paths}); {kept}. Try a lower train.lr or train.grad_clip=10"
                )
        return {**values, "loss": sum(numbers)}

    @property
    def images_seen(self) -> int:
        """Training samples through the network so far (photos, or crops for the classifier), all ranks."""
        return self.iteration * self.cfg.train.batch_size * dist.world_size()  # batch_size is per rank

    def maybe_validate(self) -> dict[str, float]:
        every = self.cfg.train.val_every
        last_epoch = self.epoch + 1 >= self.epochs or self.iteration >= self.total_iters
        if self.validate_fn is None or every <= 0 or ((self.epoch + 1) % every and not last_epoch):
            return {}
        start = time.perf_counter()
        metrics = self.validate_fn(self.model) if dist.is_main() else {}
        self.validation_time = time.perf_counter() - start  # train.minutes keeps time for the last one
        dist.barrier()
        return metrics

    def log_epoch(self, losses: dict[str, float], metrics: dict[str, float]) -> None:
        if not dist.is_main():
            return
        row = {"epoch": self.epoch, "iteration": self.iteration, "images_seen": self.images_seen,
               "lr": self.optimizer.param_groups[0]["lr"], "train_time_s": round(self.train_time, 1), **losses, **metrics}
        self.history.append(row)
        # per-class values ("AP50/face") go to the CSV only
        shown = " ".join(f"{k}={v:.4g}" for k, v in row.items()
                         if k not in ("epoch", "iteration", "images_seen", "train_time_s") and "/" not in k)
        tqdm.write(f"epoch {self.epoch}/{self.epochs}: {shown}")
        keys = list(dict.fromkeys(k for r in self.history for k in r))
        with open(self.run_dir / "metrics.csv", "w", newline="") as f:
            writer = csv.DictWriter(f, fieldnames=keys)
            writer.writeheader()
            writer.writerows(self.history)
        plot_training_chart(self.history, self.run_dir / "training_chart.png", self.main_metric)


def targets_to_device(targets: list[dict], device: torch.device) -> list[dict]:
    """The batch's targets on `device`, in one copy per key instead of one per image and key.

    Each key's per-image tensors ("boxes" (n_i, 4), "labels" (n_i,), ...) are flattened and
    concatenated on the host, copied in one transfer, and split back into per-image views:
    at batch 256 that is 4 copies instead of 1,024. Non-tensor values (paths) stay as they are.
    """
    if device.type == "cpu" or not targets:
        return targets
    moved = [dict(t) for t in targets]
    keys = [k for k, v in targets[0].items() if isinstance(v, Tensor) and all(k in t for t in targets)]
    for key in keys:
        flat = torch.cat([t[key].reshape(-1) for t in targets])  # one dtype per key
        if device.type == "cuda":
            flat = flat.pin_memory()  # page-locked: the copy below runs asynchronously
        pieces = flat.to(device, non_blocking=True).split([t[key].numel() for t in targets])
        for target, piece, original in zip(moved, pieces, targets):
            target[key] = piece.view(original[key].shape)
    return moved


def outputs_to_float(outputs):
    """Losses are computed in float32 even when the forward pass ran in half precision."""
    if isinstance(outputs, Tensor):
        return outputs.float()
    return type(outputs)(outputs_to_float(o) for o in outputs)
