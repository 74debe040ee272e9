"""One training loop for every rung.

The trainer knows nothing about any model: the model maps images to outputs, the
criterion maps (outputs, targets) to a dict of named loss terms, the trainer sums them,
backpropagates, steps and logs. Everything else (AMP, DDP, checkpoints, charts) is a
small optional piece around `train_one_epoch`.
"""
from __future__ import annotations

import contextlib
import csv
import itertools
import math
import os
import signal
import threading
import time
from collections import defaultdict
from collections.abc import Callable
from pathlib import Path

import torch
from torch import Tensor, nn
from torch.utils.data import DataLoader
from tqdm import tqdm

from facedet import distributed as dist
from facedet.checkpoint import load_checkpoint, load_weights
from facedet.files import atomic_save
from facedet.config import Config, to_dict
from facedet.data.loaders import release_workers
from facedet.errors import CheckpointError, NonFiniteLossError
from facedet.models.detector import Detector
from facedet.optim import build_optimizer, build_scheduler
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
        iters_per_epoch = max(1, len(train_loader))
        self.total_iters = cfg.train.max_iters or cfg.train.epochs * iters_per_epoch
        self.epochs = math.ceil(self.total_iters / iters_per_epoch)
        self.scheduler = build_scheduler(self.optimizer, cfg.train, self.total_iters)
        self.use_amp = cfg.train.amp and device.type == "cuda"
        # bfloat16 needs no loss scaling; float16 (older GPUs) does
        self.amp_dtype = torch.bfloat16 if self.use_amp and torch.cuda.is_bf16_supported() else torch.float16
        self.scaler = torch.amp.GradScaler("cuda", enabled=self.use_amp and self.amp_dtype == torch.float16)
        self.epoch, self.iteration, self.best = 0, 0, -math.inf
        # where the run stands inside the epoch: steps taken and their summed loss terms (a
        # checkpoint written by Ctrl-C mid-epoch stores both, and resume continues from there)
        self.batch, self.epoch_sums = 0, {}
        self.resume_rng: dict | None = None  # random state to restore when resuming mid-epoch
        self.stop_requested = self.stepping = self.interrupted = False
        self.train_time = 0.0  # seconds spent in training epochs (validation excluded), summed over resumes
        self.history: list[dict[str, float]] = []
        if dist.is_main():
            self.run_dir.mkdir(parents=True, exist_ok=True)
            for stale in self.run_dir.glob("*.pt*.tmp"):  # what a save killed half-way (SIGKILL) left
                stale.unlink(missing_ok=True)
        if cfg.train.resume:
            self.resume(cfg.train.resume)
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
            with self.stop_on_ctrl_c():
                while self.epoch < self.epochs and self.iteration < self.total_iters:
                    if self.stop_requested:  # Ctrl-C during the validation of the epoch before
                        raise KeyboardInterrupt
                    self.seed_epoch(self.epoch)
                    start = time.perf_counter()
                    losses = self.train_one_epoch()
                    self.train_time += time.perf_counter() - start
                    if self.stop_requested:
                        raise KeyboardInterrupt
                    dist.broadcast_buffers(self.model)  # every rank now holds exactly what rank 0 saves
                    metrics = self.maybe_validate()
                    self.epoch, self.batch, self.epoch_sums = self.epoch + 1, 0, {}
                    self.log_epoch(losses, metrics)
                    self.save(metrics)
        except KeyboardInterrupt:
            self.interrupted = True
            if dist.is_main():
                self.save_to(self.run_dir / "last.pt", metrics, interrupted=True)
                where = f"epoch {self.epoch + 1}, after batch {self.batch}"
                cut = "; the update under way when it stopped may be repeated" if self.stepping else ""
                print(f"\ninterrupted at {where}: saved {self.run_dir / 'last.pt'} "
                      f"(resume with train.resume={self.run_dir / 'last.pt'}{cut})")
            return metrics
        finally:
            if isinstance(self.train_loader, DataLoader):
                release_workers(self.train_loader)
        dist.barrier()  # no rank leaves (and tears down the process group) before rank 0 has saved
        return metrics

    @contextlib.contextmanager
    def stop_on_ctrl_c(self):
        """The first Ctrl-C asks the loop to stop after the current step; the second raises.

        Under DDP every rank would have to agree on the step to stop after, so there Ctrl-C
        stops at once (as a second Ctrl-C does here) and last.pt resumes after the last step
        that rank 0 completed."""
        owner = os.getpid()

        def request_stop(signum, frame):
            if os.getpid() != owner:  # a data-loader worker (forked with this handler): the trainer decides
                return
            if self.stop_requested:
                raise KeyboardInterrupt
            self.stop_requested = True
            tqdm.write("Ctrl-C: stopping after this step to save last.pt (Ctrl-C again to stop at once)")

        if dist.world_size() > 1 or threading.current_thread() is not threading.main_thread():  # signals reach the main thread only
            yield
            return
        previous = signal.signal(signal.SIGINT, request_stop)
        try:
            yield
        finally:
            signal.signal(signal.SIGINT, previous)

    def train_one_epoch(self) -> dict[str, float]:
        """The rest of the epoch: all of it, or after a mid-epoch resume its remaining batches."""
        self.train_model.train()
        sums: dict[str, float] = defaultdict(float, self.epoch_sums)
        batches, total = iter(self.train_loader), len(self.train_loader)
        if hasattr(getattr(self.train_loader, "sampler", None), "skip"):
            total += self.batch  # the sampler already starts at batch `self.batch` (seed_epoch)
        else:
            for _ in itertools.islice(batches, self.batch):  # a loader we cannot skip into: read past
                pass
        self.restore_rng()
        bar = tqdm(batches, desc=f"epoch {self.epoch + 1}/{self.epochs}", initial=self.batch, total=total,
                   disable=not dist.is_main(), dynamic_ncols=True, mininterval=1.0)
        for images, targets in bar:
            self.stepping = True
            for name, value in self.train_step(images, targets, self.batch).items():
                sums[name] += value
            self.stepping = False
            self.batch += 1
            self.epoch_sums = dict(sums)
            bar.set_postfix({k: f"{v / self.batch:.4f}" for k, v in sums.items()}, refresh=False)
            if self.iteration >= self.total_iters or self.stop_requested:
                break
        return dist.mean_across_ranks({k: v / max(1, self.batch) for k, v in sums.items()})

    def train_step(self, images: Tensor, targets: list[dict], batch: int = 0) -> dict[str, float]:
        """One optimisation step on a batch: forward, loss terms, backward, step.

        images (B, 3, H, W) and targets as the loader gives them (on the host). Returns the
        loss terms and their sum "loss" as floats (one device sync per step).
        """
        images = images.to(self.device, non_blocking=True, memory_format=self.memory_format)
        targets = targets_to_device(targets, self.device)
        with self.autocast():
            outputs = self.train_model(images)
        terms = self.criterion(outputs_to_float(outputs), targets)  # outside autocast: losses in float32
        values = self.check_finite(terms, batch, targets)
        self.optimizer.zero_grad(set_to_none=True)
        self.scaler.scale(sum(terms.values())).backward()
        if self.cfg.train.grad_clip > 0:
            self.scaler.unscale_(self.optimizer)
            nn.utils.clip_grad_norm_(self.model.parameters(), self.cfg.train.grad_clip)
        self.scaler.step(self.optimizer)
        self.scaler.update()
        self.scheduler.step()
        self.iteration += 1
        return values

    # ------------------------------------------------------------------ pieces
    def seed_epoch(self, epoch: int) -> None:
        """Each epoch's shuffling and augmentation depend only on (seed, epoch): resumable.
        Resuming mid-epoch, the sampler starts at the next batch."""
        seed = self.cfg.train.seed + epoch
        torch.manual_seed(seed)
        sampler = getattr(self.train_loader, "sampler", None)
        if hasattr(sampler, "set_epoch"):
            sampler.set_epoch(epoch)
        if self.batch and hasattr(sampler, "skip"):
            sampler.skip(self.batch * self.cfg.train.batch_size)  # batch_size is per rank under DDP
        generator = getattr(self.train_loader, "generator", None)
        if generator is not None:
            generator.manual_seed(seed)

    def restore_rng(self) -> None:
        """Resuming mid-epoch: torch's random state (dropout) as the interrupted run left it."""
        if self.resume_rng is not None:
            torch.set_rng_state(self.resume_rng["cpu"])
            if torch.cuda.is_available() and self.resume_rng.get("cuda"):
                torch.cuda.set_rng_state_all(self.resume_rng["cuda"])
            self.resume_rng = None

    def autocast(self):
        if not self.use_amp:
            return contextlib.nullcontext()
        return torch.autocast(device_type="cuda", dtype=self.amp_dtype)

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
        metrics = self.validate_fn(self.model) if dist.is_main() else {}
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

    def save(self, metrics: dict[str, float]) -> None:
        if not dist.is_main():
            return
        validating = self.validate_fn is not None and self.cfg.train.val_every > 0
        improved = False
        if not validating or self.main_metric in metrics:  # only validated epochs compete for best.pt
            score = metrics[self.main_metric] if validating else -self.history[-1]["loss"]
            # NaN never compares greater, but a run always ends with some best.pt
            improved = score > self.best or not (self.run_dir / "best.pt").exists()
            if improved and not math.isnan(score):
                self.best = score
        self.save_to(self.run_dir / "last.pt", metrics)  # after `best` is updated: resume sees it
        if improved:
            self.save_to(self.run_dir / "best.pt", metrics)

    def save_to(self, path: Path, metrics: dict[str, float], interrupted: bool = False) -> None:
        optimizer = {"optimizer": self.optimizer.state_dict()} if self.cfg.train.save_optimizer else {}
        atomic_save({
            "model": self.model.state_dict(),
            "config": to_dict(self.cfg),
            "epoch": self.epoch,
            "iteration": self.iteration,
            "images_seen": self.images_seen,
            "batch": self.batch,  # steps taken in `epoch` (0 at an epoch's end)
            "epoch_sums": self.epoch_sums,
            "rng": {"cpu": torch.get_rng_state(),
                    "cuda": torch.cuda.get_rng_state_all() if torch.cuda.is_available() else []},
            **optimizer,
            "scheduler": self.scheduler.state_dict(),
            "scaler": self.scaler.state_dict(),
            "best": self.best,
            "train_time_s": self.train_time,
            "metrics": metrics,
            "history": self.history,
            "interrupted": interrupted,
            **self.extra_state,
        }, path)

    def resume(self, path: str) -> None:
        state = load_checkpoint(path)
        load_weights(self.model, state, path, self.cfg.model.name)
        try:
            if "optimizer" in state:
                self.optimizer.load_state_dict(state["optimizer"])
            elif dist.is_main():
                print(f"warning: {path} holds no optimizer state (train.save_optimizer=false): "
                      f"{self.cfg.train.optimizer}'s state starts afresh, so this run is not an exact continuation")
            self.scheduler.load_state_dict(state["scheduler"])
            self.scaler.load_state_dict(state.get("scaler", {}))
        except (KeyError, ValueError) as err:
            raise CheckpointError(f"{path}: cannot resume the optimizer ({err})") from None
        self.epoch, self.iteration = state["epoch"], state["iteration"]
        self.batch, self.epoch_sums = int(state.get("batch", 0)), dict(state.get("epoch_sums", {}))
        self.resume_rng = state.get("rng") if self.batch else None
        self.best, self.history = state.get("best", -math.inf), list(state.get("history", []))
        self.train_time = float(state.get("train_time_s", 0.0))
        if dist.is_main():
            at = f", batch {self.batch}" if self.batch else ""
            print(f"resumed from {path} at epoch {self.epoch + 1}{at} (iteration {self.iteration})")


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
