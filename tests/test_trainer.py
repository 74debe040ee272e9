"""The common trainer on a stand-in model: logging, checkpoints, resume, NaN, Ctrl-C."""
import csv
import os
import signal

import pytest
import torch
from torch import nn

from facedet.checkpoint import load_checkpoint
from facedet.config import load_config
from facedet.data.loaders import build_loader
from facedet.errors import CheckpointError, NonFiniteLossError
from facedet.models.classifier import ClassifierLoss
from facedet.models.detector import Detector
from facedet.models.grid import GridLoss
from facedet.models.yolo_face import YOLOFaceLoss
from facedet.optim import build_optimizer, lr_factor
from facedet.train import memory_note, summary_line
from facedet.trainer import Trainer


class Points(torch.utils.data.Dataset):
    """Images whose target is the mean colour: a model a few steps can learn."""

    def __init__(self, n=24):
        g = torch.Generator().manual_seed(0)
        self.images = torch.rand(n, 3, 8, 8, generator=g)

    def __len__(self):
        return len(self.images)

    def __getitem__(self, i):
        image = self.images[i] + 0.05 * torch.randn(3, 8, 8)  # draws from torch's RNG, like augmentation
        return image, {"mean": self.images[i].mean(dim=(1, 2)), "path": f"img{i}.png"}


def collate(batch):
    images, targets = zip(*batch)
    return torch.stack(images), list(targets)


class Criterion(nn.Module):
    def __init__(self, poison_at=None, interrupt_at=None):
        super().__init__()
        self.calls, self.poison_at, self.interrupt_at = 0, poison_at, interrupt_at

    def forward(self, outputs, targets):
        self.calls += 1
        if self.calls == self.interrupt_at:
            raise KeyboardInterrupt
        target = torch.stack([t["mean"] for t in targets])
        mse = ((outputs - target) ** 2).mean()
        l1 = 0.1 * (outputs - target).abs().mean()
        if self.calls == self.poison_at:
            l1 = l1 * float("nan")
        return {"mse": mse, "l1": l1}


def make_detector(seed=0):
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Linear(4, 3))
    return Detector(model=model, criterion=Criterion(), postprocess=lambda o, **k: o, min_score=0.5, nms_iou=0.45, top_k=200)


def make_trainer(tmp_path, overrides=(), criterion=None, validate=None, seed=0):
    cfg = load_config(None, ["train.epochs=3", "train.batch_size=4", "train.lr=1e-2", "model.name=yolo_face_tiny",
                             "train.device=cpu", *overrides])
    detector = make_detector(seed)
    if criterion is not None:
        detector.criterion = criterion
    loader = torch.utils.data.DataLoader(Points(), batch_size=4, shuffle=True, collate_fn=collate,
                                         generator=torch.Generator())
    return Trainer(cfg, detector, loader, tmp_path, torch.device("cpu"), validate, main_metric="score")


def test_fit_logs_terms_writes_chart_csv_and_checkpoints(tmp_path):
    calls = []

    def validate(model):
        calls.append(1)
        return {"score": float(len(calls))}

    trainer = make_trainer(tmp_path, ["train.val_every=2"], validate=validate)
    trainer.fit()
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    assert len(rows) == 3
    assert {"mse", "l1", "loss", "lr"} <= set(rows[0])
    assert float(rows[-1]["loss"]) < float(rows[0]["loss"])
    assert len(calls) == 2  # epoch 2 (every 2) and the last epoch
    assert (tmp_path / "training_chart.png").stat().st_size > 5000
    state = load_checkpoint(tmp_path / "best.pt")
    assert state["epoch"] == 3 and state["config"]["model"]["name"] == "yolo_face_tiny"
    assert state["metrics"]["score"] == 2.0


def test_resume_continues_the_same_trajectory(tmp_path):
    straight = make_trainer(tmp_path / "a")
    straight.fit()
    first = make_trainer(tmp_path / "b", ["train.epochs=3"])
    first.epochs = 1  # stop after one epoch, as if the run had been cut there
    first.fit()
    resumed = make_trainer(tmp_path / "c", [f"train.resume={tmp_path / 'b' / 'last.pt'}"], seed=123)
    assert resumed.epoch == 1
    resumed.fit()
    for p, q in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)


def test_nan_loss_names_term_and_keeps_last_good_checkpoint(tmp_path):
    trainer = make_trainer(tmp_path, ["train.val_every=0"], criterion=Criterion(poison_at=8))  # 6 batches/epoch
    with pytest.raises(NonFiniteLossError) as err:
        trainer.fit()
    message = str(err.value)
    assert "'l1'" in message and "epoch 2" in message and "batch 1" in message and "last.pt" in message
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["epoch"] == 1 and all(torch.isfinite(v).all() for v in state["model"].values())


def nan_at(shape, index):
    outputs = torch.full(shape, 0.5)
    outputs[index] = float("nan")
    return outputs


YOLO_TRUTH = [{"boxes": torch.tensor([[0.1, 0.1, 0.3, 0.5]]), "labels": torch.tensor([0])}]  # in cell (2, 1) of 7 x 7
NAN_IN_A_LOSS = {  # the models' own losses return NaN terms; only the trainer checks, by name
    "grid": (GridLoss(griddim=2), nan_at((1, 2, 2), (0, 1, 1)), torch.zeros(1, 2, 2), "bce"),
    "yolo_face coord": (YOLOFaceLoss(griddim=7), nan_at((1, 7, 7, 5), (0, 2, 1, 3)), YOLO_TRUTH, "coord"),
    "yolo_face noobj": (YOLOFaceLoss(griddim=7), nan_at((1, 7, 7, 5), (0, 0, 0, 0)), YOLO_TRUTH, "noobj"),
    "classifier": (ClassifierLoss(), torch.tensor([float("nan"), 0.0]),
                   [{"label": torch.tensor(1.0)}, {"label": torch.tensor(0.0)}], "bce"),
}


@pytest.mark.parametrize("case", NAN_IN_A_LOSS)
def test_nan_in_a_model_loss_is_named_by_the_trainer(tmp_path, case):
    criterion, outputs, targets, term = NAN_IN_A_LOSS[case]
    terms = criterion(outputs, targets)  # no error here: a NaN term
    with pytest.raises(NonFiniteLossError, match=f"'{term}' is nan"):
        make_trainer(tmp_path).check_finite(terms, batch=1, targets=[])


def test_ctrl_c_saves_and_returns(tmp_path):
    trainer = make_trainer(tmp_path, criterion=Criterion(interrupt_at=3))
    trainer.fit()
    state = load_checkpoint(tmp_path / "last.pt")
    assert state["interrupted"] is True and state["iteration"] == 2


def test_resume_refuses_checkpoint_of_another_model(tmp_path):
    make_trainer(tmp_path / "a", ["train.epochs=1"]).fit()
    with pytest.raises(CheckpointError, match="model 'yolo_face_tiny', expected 'grid_simple'"):
        make_trainer(tmp_path / "b", [f"train.resume={tmp_path / 'a' / 'last.pt'}", "model.name=grid_simple"])


def test_corrupt_checkpoint_is_a_clear_error(tmp_path):
    bad = tmp_path / "bad.pt"
    bad.write_bytes(b"not a checkpoint")
    with pytest.raises(CheckpointError, match="bad.pt"):
        load_checkpoint(bad)


def test_bias_lr_factor_and_no_decay_on_biases():
    cfg = load_config(None, ["train.optimizer=sgd", "train.lr=0.1", "train.bias_lr_factor=2"]).train
    opt = build_optimizer(make_detector().model, cfg)
    weights, biases = opt.param_groups
    assert weights["lr"] == 0.1 and biases["lr"] == 0.2
    assert biases["weight_decay"] == 0.0 and all(p.ndim == 1 for p in biases["params"])


def test_schedules():
    cfg = load_config(None, ["train.schedule=multistep", "train.milestones=[80000, 100000]"]).train
    assert [lr_factor(cfg, i, 120000) for i in (0, 79999, 80000, 100000)] == pytest.approx([1, 1, 0.1, 0.01])
    cfg = load_config(None, ["train.schedule=cosine", "train.warmup_iters=10"]).train
    assert lr_factor(cfg, 0, 100) == pytest.approx(0.01)
    assert lr_factor(cfg, 100, 100) == pytest.approx(0.0, abs=1e-9)
    assert lr_factor(cfg, 50, 100) == pytest.approx(0.5)
    cfg = load_config(None, ["train.schedule=step", "train.step_size=10", "train.gamma=0.5"]).train
    assert lr_factor(cfg, 25, 100) == pytest.approx(0.25)


def test_best_checkpoint_survives_resume(tmp_path):
    scores = iter([0.5, 0.9, 0.6, 0.7])

    def validate(model):
        return {"score": next(scores)}

    first = make_trainer(tmp_path, ["train.epochs=4"], validate=validate)
    first.epochs = 2
    first.fit()
    resumed = make_trainer(tmp_path, ["train.epochs=4", f"train.resume={tmp_path / 'last.pt'}"], validate=validate)
    resumed.fit()
    assert load_checkpoint(tmp_path / "best.pt")["metrics"]["score"] == 0.9  # 0.6 and 0.7 never replace it
    assert load_checkpoint(tmp_path / "last.pt")["metrics"]["score"] == 0.7


def test_leftover_of_a_killed_save_is_removed_and_training_time_recorded(tmp_path):
    tmp_path.mkdir(exist_ok=True)
    stale = tmp_path / "last.ptab12cd.tmp"  # what atomic_write leaves when SIGKILL lands mid-save
    stale.write_bytes(b"half a checkpoint")
    keep = tmp_path / "notes.tmp"  # not a checkpoint's temporary file: left alone
    keep.write_text("mine")
    trainer = make_trainer(tmp_path, ["train.epochs=2", "train.val_every=0"])
    assert not stale.exists() and keep.exists()
    trainer.fit()
    rows = list(csv.DictReader(open(tmp_path / "metrics.csv")))
    times = [float(r["train_time_s"]) for r in rows]
    assert 0 <= times[0] <= times[1]  # cumulative
    assert load_checkpoint(tmp_path / "last.pt")["train_time_s"] >= times[1] - 0.1


# ---------------------------------------------------------------- exact resume after Ctrl-C


class Noisy(nn.Module):
    """The stand-in model with dropout: resume is exact only if torch's random state is restored too."""

    def __init__(self):
        super().__init__()
        self.body = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                                  nn.Dropout(0.3), nn.Linear(4, 3))

    def forward(self, x):
        return self.body(x)


class RecordingCriterion(Criterion):
    """Records every batch's loss; sends this process a real SIGINT (Ctrl-C) during call `sigint_at`."""

    def __init__(self, log, sigint_at=None):
        super().__init__()
        self.log, self.sigint_at = log, sigint_at

    def forward(self, outputs, targets):
        terms = super().forward(outputs, targets)
        if self.calls == self.sigint_at:
            os.kill(os.getpid(), signal.SIGINT)
        self.log.append(sum(terms.values()).item())
        return terms


def make_library_trainer(tmp_path, overrides=(), log=None, sigint_at=None):
    """The trainer with the library's own training loader (EpochSampler + SeededDataset)."""
    cfg = load_config(None, ["train.epochs=3", "train.batch_size=4", "train.lr=1e-2", "model.name=yolo_face_tiny",
                             "train.device=cpu", "data.num_workers=0", "train.seed=5", *overrides])
    torch.manual_seed(0)
    detector = Detector(model=Noisy(), criterion=RecordingCriterion(log, sigint_at), postprocess=None,
                        min_score=0.5, nms_iou=0.45, top_k=200)
    loader = build_loader(Points(), cfg, train=True, device=torch.device("cpu"), collate_fn=collate)
    return Trainer(cfg, detector, loader, tmp_path, torch.device("cpu"), None, main_metric="score")


@pytest.mark.parametrize("sigint_at", [4, 6, 11])  # mid-epoch 1, the last batch of epoch 1, mid-epoch 2
def test_ctrl_c_mid_epoch_then_resume_gives_the_uninterrupted_losses_batch_by_batch(tmp_path, sigint_at):
    straight_log, cut_log, resumed_log = [], [], []
    straight = make_library_trainer(tmp_path / "a", log=straight_log)
    straight.fit()
    assert len(straight_log) == 18  # 3 epochs x 6 batches

    cut = make_library_trainer(tmp_path / "b", log=cut_log, sigint_at=sigint_at)
    cut.fit()  # the SIGINT handler lets the step finish, then saves and returns
    assert cut.interrupted and len(cut_log) == sigint_at
    state = load_checkpoint(tmp_path / "b" / "last.pt")
    assert state["interrupted"] and state["iteration"] == sigint_at and state["batch"] == (sigint_at - 1) % 6 + 1

    resumed = make_library_trainer(tmp_path / "c", [f"train.resume={tmp_path / 'b' / 'last.pt'}"], log=resumed_log)
    resumed.fit()
    assert cut_log + resumed_log == straight_log  # no batch twice, none skipped, same dropout
    for p, q in zip(straight.model.parameters(), resumed.model.parameters()):
        assert torch.equal(p, q)
    assert [r["loss"] for r in resumed.history] == [r["loss"] for r in straight.history]  # epoch means too
    assert resumed.scheduler.last_epoch == straight.scheduler.last_epoch == 18


def test_ctrl_c_handler_is_removed_after_fit(tmp_path):
    before = signal.getsignal(signal.SIGINT)
    make_library_trainer(tmp_path, ["train.epochs=1"], log=[]).fit()
    assert signal.getsignal(signal.SIGINT) is before


def test_weights_only_checkpoints_resume_with_a_warning(tmp_path, capsys):
    first = make_library_trainer(tmp_path / "a", ["train.epochs=1", "train.save_optimizer=false"], log=[])
    first.fit()
    state = load_checkpoint(tmp_path / "a" / "last.pt")
    assert "optimizer" not in state and "scheduler" in state
    full = make_library_trainer(tmp_path / "b", ["train.epochs=1"], log=[])
    full.fit()
    assert (tmp_path / "a" / "last.pt").stat().st_size < (tmp_path / "b" / "last.pt").stat().st_size
    resumed = make_library_trainer(tmp_path / "c", ["train.epochs=2", f"train.resume={tmp_path / 'a' / 'last.pt'}"],
                                   log=[])
    assert "holds no optimizer state" in capsys.readouterr().out
    resumed.fit()
    assert resumed.iteration == 12


def test_ctrl_c_before_the_first_validation_names_no_best_checkpoint(tmp_path):
    (tmp_path / "best.pt").write_bytes(b"an older run's file")
    trainer = make_library_trainer(tmp_path, log=[], sigint_at=2)
    trainer.validate_fn, trainer.cfg.train.val_every = (lambda model: {"score": 1.0}), 1
    trainer.fit()
    line = summary_line(trainer, tmp_path, "score", {})
    assert "no best.pt from this run" in line and "only last.pt" in line


def test_summary_line_after_a_validated_run(tmp_path):
    trainer = make_library_trainer(tmp_path, ["train.epochs=1"], log=[])
    trainer.validate_fn = lambda model: {"score": 0.25}
    metrics = trainer.fit()
    assert summary_line(trainer, tmp_path, "score", metrics).startswith(f"done: best score 0.2500 in {tmp_path / 'best.pt'}")


def test_memory_note_warns_for_the_seed_size_models_only():
    yolo = load_config("yolo_face.yaml")
    note = memory_note(nn.Linear(413_000, 1000, device="meta"), yolo)  # 413 M parameters, no memory taken
    assert note and "6.2 GB" in note and "each of best.pt and last.pt is 4.6 GB" in note
    assert "train.save_optimizer=false" in note and "1.5 GB" in note
    assert memory_note(nn.Linear(1000, 1000), yolo) is None


# --------------------------------------------------------------------------- train.minutes, clipped warm-up


def test_warmup_is_clipped_to_a_tenth_of_a_short_run_with_a_note():
    from facedet.optim import warmup_note, warmup_steps

    cfg = load_config(None, ["train.warmup_iters=100", "train.schedule=cosine"]).train
    assert warmup_steps(cfg, 48) == 4 and warmup_steps(cfg, 1000) == 100  # the 48 steps vs 100
    assert warmup_note(cfg, 1000) is None
    assert warmup_note(cfg, 48) == ("note: warm-up clipped to 4 of the run's 48 steps (train.warmup_iters=100, "
                                    "at most 10% of a run), so the learning rate reaches its peak and decays")
    factors = [lr_factor(cfg, i, 48) for i in range(48)]
    assert factors[0] == pytest.approx(0.01) and factors[3] < 1.0  # warming up over steps 0-3
    assert max(factors) == pytest.approx(0.5 * (1 + torch.cos(torch.tensor(4 / 48 * torch.pi)).item()))
    assert factors[-1] < 0.01  # and decayed by the end


def test_a_short_run_logs_its_clipped_warmup(tmp_path, capsys):
    make_trainer(tmp_path, ["train.warmup_iters=100"])  # 3 epochs of 6 steps
    assert "note: warm-up clipped to 1 of the run's 18 steps (train.warmup_iters=100" in capsys.readouterr().err


def test_minutes_size_the_run_from_its_first_steps_and_the_schedule_follows(tmp_path, capsys):
    from facedet.time_budget import TimeBudget

    trainer = make_trainer(tmp_path, ["train.minutes=1", "train.epochs=100", "train.warmup_iters=10"])
    # a clock where every step takes 2 s: 54 s of the minute are for training (10% kept), so after
    # steps 2-6 (10 s) it is at 12 s and 21 more steps fit: 27 in all
    trainer.budget = TimeBudget(1.0, clock=lambda: 2.0 * trainer.iteration)
    trainer.fit()
    assert trainer.iteration == trainer.total_iters == 27 and trainer.epochs == 5  # 6 steps an epoch
    assert load_checkpoint(tmp_path / "last.pt")["config"]["train"]["max_iters"] == 27  # resume keeps the length
    out = capsys.readouterr().err  # log lines, beside the progress bars
    assert ("train.minutes=1: 2.00 s per step over steps 2-6, so the run is 27 steps (5 epochs), its schedule "
            "laid out over them; 10% of the time is kept") in out
    assert "note: warm-up clipped to 2 of the run's 27 steps" in out
    assert trainer.optimizer.param_groups[0]["lr"] == pytest.approx(1e-2 * lr_factor(trainer.cfg.train, 27, 27))


def test_minutes_stop_at_the_deadline_when_steps_slow_down(tmp_path, capsys):
    from facedet.time_budget import TimeBudget

    trainer = make_trainer(tmp_path, ["train.minutes=1", "train.epochs=100"])
    # 2 s a step, 5 s from step 12 on: sized to 27 steps at step 6 (12 s); at the end of epoch 2
    # (step 12, 27 s: 2.25 s a step so far) resized to 12 more, 24; step 18 ends at 57 s, past 54 s
    trainer.budget = TimeBudget(1.0, clock=lambda: 2.0 * trainer.iteration + 3.0 * max(0, trainer.iteration - 11))
    trainer.fit()
    assert trainer.iteration == trainer.total_iters == 18
    out = capsys.readouterr().err
    assert "so the run is 27 steps" in out and "train.minutes=1: time is up after step 18 of 24; stopping here" in out


def test_negative_minutes_are_refused():
    from facedet.errors import ConfigError

    with pytest.raises(ConfigError, match=r"'train.minutes' is -1.0; expected 0 .* e.g. train.minutes=9"):
        load_config(None, ["train.minutes=-1"])


def test_no_progress_bars_when_stderr_is_not_a_terminal(tmp_path, capsys):
    """Logs written to a file get the epoch lines, not bars redrawn with carriage returns."""
    make_trainer(tmp_path).fit()
    captured = capsys.readouterr()
    assert "\r" not in captured.err and "it/s" not in captured.err
    assert "epoch 2/3:" in captured.out


def test_minutes_stop_at_the_deadline_even_before_the_run_is_sized(tmp_path, capsys):
    from facedet.time_budget import TimeBudget

    trainer = make_trainer(tmp_path, ["train.minutes=1"])
    trainer.budget = TimeBudget(1.0, clock=lambda: 40.0 * trainer.iteration)  # step 2 ends at 80 s, past 54 s
    trainer.fit()
    assert trainer.iteration == trainer.total_iters == 2
    assert "train.minutes=1: time is up after step 2 of 18; stopping here" in capsys.readouterr().err


def test_a_run_the_budget_ends_at_an_epoch_still_validates_there(tmp_path):
    from facedet.time_budget import TimeBudget

    calls = []
    trainer = make_trainer(tmp_path, ["train.minutes=1", "train.epochs=100", "train.val_every=100"],
                           validate=lambda model: calls.append(1) or {"score": 1.0})
    # 2 s a step up to step 6 (sized to 27 steps), then slower: step 12 ends at 53 s, and the
    # 4.4 s a step so far leave no step in the last second before 54 s: the run ends at step 12
    trainer.budget = TimeBudget(1.0, clock=lambda: 2.0 * trainer.iteration if trainer.iteration <= 6
                                else 12.0 + (trainer.iteration - 6) * 41.0 / 6)
    trainer.fit()
    assert trainer.iteration == trainer.total_iters == 12
    assert calls == [1] and (tmp_path / "best.pt").exists()  # validated once, at the run's new end
