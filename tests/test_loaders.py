"""The training loader: augmentation depends only on (seed, epoch, index), whatever the workers do."""
import multiprocessing

import torch
from torch import nn

from facedet.config import load_config
from facedet.data.loaders import build_loader
from facedet.models.detector import Detector
from facedet.trainer import Trainer


class Noisy(torch.utils.data.Dataset):
    """Image i is i plus noise drawn from torch's global generator, as augmentation draws."""

    def __len__(self):
        return 20

    def __getitem__(self, i):
        image = torch.full((3, 4, 4), float(i)) + torch.randn(3, 4, 4)
        return image, {"mean": torch.full((3,), float(i) / 20), "path": f"img{i}.png", "image_id": i}


def config(*overrides):
    return load_config(None, ["train.batch_size=4", "train.seed=7", "model.name=yolo_face_tiny", "train.device=cpu",
                              *overrides])


def epoch_batches(loader, epoch):
    loader.sampler.set_epoch(epoch)
    return [images for images, _ in loader]


def test_same_samples_with_any_workers_persistent_or_not():
    plain = build_loader(Noisy(), config("data.num_workers=0"), train=True, device=torch.device("cpu"))
    persistent = build_loader(Noisy(), config("data.num_workers=2", "data.persistent_workers=true"),
                              train=True, device=torch.device("cpu"))
    assert persistent.persistent_workers and not plain.persistent_workers
    for epoch in (0, 1):
        for a, b in zip(epoch_batches(plain, epoch), epoch_batches(persistent, epoch), strict=True):
            assert torch.equal(a, b)
    # a fresh loader that starts at epoch 1 (a resumed run) sees what the long-lived one saw
    fresh = build_loader(Noisy(), config("data.num_workers=2"), train=True, device=torch.device("cpu"))
    assert all(torch.equal(a, b) for a, b in zip(epoch_batches(fresh, 1), epoch_batches(persistent, 1)))


def test_epochs_and_seeds_differ_and_the_callers_generator_is_untouched():
    loader = build_loader(Noisy(), config("data.num_workers=0"), train=True, device=torch.device("cpu"))
    torch.manual_seed(123)
    expected = torch.rand(3)
    torch.manual_seed(123)
    first, second = epoch_batches(loader, 0), epoch_batches(loader, 1)
    assert torch.equal(torch.rand(3), expected)  # loading drew nothing from the caller's stream
    assert not torch.equal(first[0], second[0])  # another epoch: another order and other noise
    # each image once per epoch: its mean is its index, give or take noise of std 1/sqrt(48)
    assert sorted(torch.cat([b.mean(dim=(1, 2, 3)) for b in first]).round().long().tolist()) == list(range(20))
    other_seed = build_loader(Noisy(), config("data.num_workers=0", "train.seed=8"), train=True,
                              device=torch.device("cpu"))
    assert not torch.equal(epoch_batches(other_seed, 0)[0], first[0])


class Criterion(nn.Module):
    def forward(self, outputs, targets):
        return {"mse": ((outputs - torch.stack([t["mean"] for t in targets])) ** 2).mean()}


def make_trainer(run_dir, *overrides, seed=0):
    cfg = config("train.epochs=3", "train.lr=1e-2", "train.val_every=0", "data.num_workers=2",
                 "data.persistent_workers=true", *overrides)
    torch.manual_seed(seed)
    model = nn.Sequential(nn.Conv2d(3, 4, 3, padding=1), nn.ReLU(), nn.AdaptiveAvgPool2d(1), nn.Flatten(),
                          nn.Dropout(0.2), nn.Linear(4, 3))  # dropout: the trainer's own random stream matters too
    loader = build_loader(Noisy(), cfg, train=True, device=torch.device("cpu"))
    return Trainer(cfg, Detector(model, Criterion(), lambda o, **k: o, min_score=0.5, nms_iou=0.45, top_k=200), loader, run_dir,
                   torch.device("cpu"))


def test_resume_with_persistent_workers_is_exact(tmp_path):
    straight = make_trainer(tmp_path / "a")
    straight.fit()
    cut = make_trainer(tmp_path / "b")
    cut.epochs = 1  # as if the run had stopped after one epoch
    cut.fit()
    resumed = make_trainer(tmp_path / "c", f"train.resume={tmp_path / 'b' / 'last.pt'}", seed=99)
    resumed.fit()
    for p, q in zip(straight.model.parameters(), resumed.model.parameters(), strict=True):
        assert torch.equal(p, q)


def test_fit_stops_the_persistent_workers_of_its_loader(tmp_path):
    """Left running, each worker would wait out a 5 s timeout when garbage-collected."""
    trainer = make_trainer(tmp_path, "train.epochs=1")
    trainer.fit()
    assert trainer.train_loader.persistent_workers and multiprocessing.active_children() == []


def test_targets_move_in_one_copy_per_key_and_keep_their_shapes():
    from facedet.trainer import targets_to_device

    targets = [{"boxes": torch.rand(n, 4), "labels": torch.arange(n), "orig_size": torch.tensor([48, 64]),
                "label": torch.tensor(1.0), "path": f"{n}.jpg"} for n in (2, 0, 3)]
    assert targets_to_device(targets, torch.device("cpu")) is targets  # nothing to move
    moved = targets_to_device(targets, torch.device("meta"))  # a device without data: shapes only
    for before, after in zip(targets, moved, strict=True):
        assert after["path"] == before["path"]
        for key in ("boxes", "labels", "orig_size", "label"):
            assert after[key].device.type == "meta"
            assert after[key].shape == before[key].shape and after[key].dtype == before[key].dtype
