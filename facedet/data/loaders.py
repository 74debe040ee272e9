"""From a DataConfig to data loaders: which dataset, which split, which transforms.

`data.root` empty means the embedded synthetic face dataset (generated once, cached).
Paths may use environment variables: `data.root=$FACEDET_DATA/faces-caltech`.

A folder without a validation split still trains and validates: `data.val_fraction` of
its training images (or of all its images, when it has no splits at all) are held out
for validation, the same ones every run (see `facedet.data.splits.hold_out`), and one
line says so.
"""
from __future__ import annotations

import functools
import itertools
import os
import sys
from collections.abc import Callable, Iterator, Sequence
from pathlib import Path

import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, DistributedSampler, Sampler

from facedet import distributed as dist
from facedet.config import Config, DataConfig
from facedet.data.crops import build_crop_datasets
from facedet.data.dataset import DetectionDataset, collate
from facedet.data.layouts import list_splits
from facedet.data.readers import read_dataset
from facedet.data.record import Record
from facedet.data.splits import hold_out, match_split
from facedet.data.synthetic import ensure_synthetic
from facedet.data.transforms import train_transforms
from facedet.errors import ConfigError, DataError


def dataset_roots(cfg: DataConfig) -> list[Path]:
    """The folders to read: `data.root` (several separated by commas, variables expanded),
    or the embedded synthetic set when it is empty."""
    if not cfg.root:
        return [ensure_synthetic(n_train=cfg.synthetic_train, n_val=cfg.synthetic_val)]
    roots = []
    for entry in cfg.root.split(","):
        root = Path(os.path.expandvars(os.path.expanduser(entry.strip())))
        if "$" in str(root):
            raise ConfigError(f"data.root '{entry}': environment variable not set (e.g. export FACEDET_DATA=...)")
        if not root.exists():
            raise ConfigError(f"data.root '{root}' does not exist")
        roots.append(root)
    return roots


def load_records(cfg: DataConfig, split: str) -> tuple[list[Record], list[str]]:
    """Records of one split and the class names, in whatever format each folder holds.

    Several roots are concatenated; their class names must agree (data.classes=face
    makes any face sets agree).
    """
    records, names = [], None
    for root in dataset_roots(cfg):
        more, more_names = _split_records(root, split, cfg)
        if names is not None and more_names != names:
            raise ConfigError(f"data.root '{root}' has classes {more_names}, the folder before it {names}; "
                              "set data.classes (e.g. data.classes=face) so they agree")
        records, names = records + more, more_names
    return records, names


def _split_records(root: Path, split: str, cfg: DataConfig) -> tuple[list[Record], list[str]]:
    """One folder's records of `split`, holding out validation images when it has no val split.

    Without a `data.val_split`, the validation split is `data.val_fraction` of the
    training split (or of every image, in a folder with no splits), and the training
    split is the rest: the two never share an image.
    """
    available = list_splits(root, cfg.format)
    holding_out = match_split(cfg.val_split, available) is None and split in (cfg.train_split, cfg.val_split)
    if not holding_out:
        return _read(str(root), split, cfg.format, cfg.classes, cfg.skip_bad_images)
    if match_split(cfg.train_split, available) is not None:
        pool = cfg.train_split
    elif not available:
        pool = None  # one pool of images, not divided into splits
    else:
        raise DataError(f"{root}: no '{cfg.train_split}' or '{cfg.val_split}' split to train and validate on "
                        f"(its splits are {', '.join(available)}); set data.train_split= and data.val_split=")
    train, val, names = _held_out(str(root), pool, cfg.format, cfg.classes, cfg.skip_bad_images, cfg.val_fraction)
    return (val if split == cfg.val_split else train), names


@functools.lru_cache(maxsize=8)
def _held_out(root: str, pool: str | None, fmt: str, classes: str, skip_bad_images: bool,
              fraction: float) -> tuple[list[Record], list[Record], list[str]]:
    # cached: training asks for the train part, then the val part; the line is said once
    records, names = _read(root, pool, fmt, classes, skip_bad_images)
    train, val = hold_out(records, Path(root), fraction)
    if dist.is_main():
        print(f"no validation split in {root}: holding out {len(val)} of {len(records)} images "
              f"(data.val_fraction={fraction:g})", file=sys.stderr, flush=True)
    return train, val, names


@functools.lru_cache(maxsize=8)
def _read(root: str, split: str | None, fmt: str, classes: str,
          skip_bad_images: bool) -> tuple[list[Record], list[str]]:
    # cached: the class names are needed before the model is built, the records after
    names: str | list[str] | None = None
    if classes == "face":
        names = "face"
    elif classes:
        names = [name.strip() for name in classes.split(",")]
    return read_dataset(Path(root), split, fmt=fmt, classes=names, skip_bad_images=skip_bad_images)


def resolve_num_classes(cfg: Config) -> None:
    """`model.num_classes: 0` means as many classes as the training data has."""
    if cfg.model.num_classes == 0:
        if cfg.model.name == "classifier":
            cfg.model.num_classes = 1  # face / not face
        else:
            cfg.model.num_classes = len(load_records(cfg.data, cfg.data.train_split)[1])


def describe_data(cfg: Config) -> str:
    """The line a training run starts with: the classes, the boxes of each in the training
    split, and the images validation uses (a split of the folder, or held out from training).

        3 classes (from the data): RBC 2,512 boxes, WBC 205, Platelets 275 in 205 train images;
        validation: 87 images (split 'val')
    """
    train, names = load_records(cfg.data, cfg.data.train_split)
    val, _ = load_records(cfg.data, cfg.data.val_split)
    counts = torch.zeros(len(names), dtype=torch.int64)
    for record in train:
        counts += torch.bincount(record.labels, minlength=len(names))[: len(names)]
    source = {"": "from the data", "face": "data.classes=face: every box is a face"}.get(cfg.data.classes, "data.classes")
    per_class = ", ".join(f"{name} {count:,}" for name, count in zip(names, counts.tolist()))
    held = any(match_split(cfg.data.val_split, list_splits(root, cfg.data.format)) is None
               for root in dataset_roots(cfg.data))
    where = (f"held out from training, data.val_fraction={cfg.data.val_fraction:g}" if held
             else f"split '{cfg.data.val_split}'")
    return (f"{len(names)} class{'es' if len(names) != 1 else ''} ({source}): {per_class} boxes "
            f"in {len(train):,} {cfg.data.train_split} images; validation: {len(val):,} images ({where})")


def build_datasets(cfg: Config, mean: Sequence[float], std: Sequence[float]) -> tuple[Dataset, Dataset, list[str]]:
    """Train and validation datasets for `cfg`, normalised with the model's `mean` and `std`:
    face / non-face crops for the classifier rung, photos and boxes for every detector."""
    train_records, names = load_records(cfg.data, cfg.data.train_split)
    val_records, val_names = load_records(cfg.data, cfg.data.val_split)
    common = min(len(names), len(val_names))  # numbered YOLO names end at each split's largest id
    if names[:common] != val_names[:common]:
        raise ConfigError(f"data.train_split '{cfg.data.train_split}' has classes {names}, data.val_split "
                          f"'{cfg.data.val_split}' {val_names}; set data.classes (e.g. data.classes=face) "
                          "so they agree")
    if cfg.model.name == "classifier":
        return build_crop_datasets(cfg, train_records, val_records, mean, std)
    if cfg.model.num_classes != len(names):
        raise ConfigError(
            f"model.num_classes is {cfg.model.num_classes} but the dataset has {len(names)} classes "
            f"({', '.join(names)}); set model.num_classes={len(names)} or data.classes=face"
        )
    size = cfg.model.image_size
    transform = train_transforms(size, mean, std, cfg.data.augment, face_min_visible=cfg.data.face_min_visible,
                                 face_close_up=cfg.data.face_close_up)
    train = DetectionDataset(train_records, transform, skip_bad_images=cfg.data.skip_bad_images)
    # validation photos keep their own sizes: the detector resizes them as it would a user's photo
    val = DetectionDataset(val_records, skip_bad_images=cfg.data.skip_bad_images)
    return train, val, names


class EpochSampler(Sampler):
    """The indices of one epoch as (epoch, index) pairs, for `SeededDataset`.

    The order depends only on (seed, epoch): DistributedSampler's shuffle, re-seeded by
    `set_epoch` (the trainer calls it before every epoch). Under DDP each rank takes its own
    1/world_size share of that order; in one process it is the whole order.
    """

    def __init__(self, dataset: Dataset, shuffle: bool, seed: int):
        self.order = DistributedSampler(dataset, num_replicas=dist.world_size(), rank=dist.rank(),
                                        shuffle=shuffle, seed=seed)
        self.epoch, self.start = 0, 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch, self.start = epoch, 0
        self.order.set_epoch(epoch)

    def skip(self, count: int) -> None:
        """Start this epoch after its first `count` indices (a run resumed mid-epoch)."""
        self.start = count

    def __iter__(self) -> Iterator[tuple[int, int]]:
        return ((self.epoch, index) for index in itertools.islice(self.order, self.start, None))

    def __len__(self) -> int:
        return max(0, len(self.order) - self.start)


class SeededDataset(Dataset):
    """`dataset[index]` with torch's CPU random generator seeded from (seed, epoch, index).

    Augmentation draws from torch's global generator. Seeding it for each sample makes a
    sample's augmentation a function of (seed, epoch, index) alone, not of which worker
    loads it, how many workers there are, whether they persist between epochs, or the DDP
    rank: a resumed run sees exactly the images an uninterrupted one would, and workers can
    stay alive across epochs. The caller's own random stream (dropout) is restored after.
    Keys are the (epoch, index) pairs an `EpochSampler` yields.
    """

    def __init__(self, dataset: Dataset, seed: int):
        self.dataset, self.seed = dataset, seed

    def __len__(self) -> int:
        return len(self.dataset)

    def __getitem__(self, key: tuple[int, int]):
        epoch, index = key
        # SeedSequence hashes the three numbers into one well-mixed 64-bit seed
        sample_seed = np.random.SeedSequence([self.seed % 2**64, epoch, index]).generate_state(1, np.uint64)[0]
        with torch.random.fork_rng(devices=[]):  # CPU generator only: CUDA's is not touched
            torch.default_generator.manual_seed(int(sample_seed))
            return self.dataset[index]


class TrainLoader(DataLoader):
    """The training DataLoader, which its owner can `close()`: its persistent workers stop at once.

    Left to the garbage collector, workers caught in a reference cycle take 5 s each to go:
    torch's queues can be finalised before the iterator that needs them to stop its workers,
    which then wait out a timeout. DataLoader keeps the persistent iterator in `_iterator` and
    has no public way to drop it, so the loader drops its own; the next `iter()` starts fresh
    workers.
    """

    def close(self) -> None:
        self._iterator = None


def build_loader(dataset: Dataset, cfg: Config, train: bool, device: torch.device,
                 collate_fn: Callable = collate) -> DataLoader:
    """Shuffled, augmented per (seed, epoch, index) and sharded under DDP for training;
    in order for evaluation.

    Training wraps the dataset in `SeededDataset` and draws (epoch, index) pairs from an
    `EpochSampler`, so shuffling and augmentation depend only on (seed, epoch) whatever the
    workers do: resume is exact and `data.persistent_workers` costs nothing in
    reproducibility. The loader's own generator (only used to seed its workers) keeps the
    loader from drawing on torch's global random stream.
    """
    common = dict(batch_size=cfg.train.batch_size, num_workers=cfg.data.num_workers, collate_fn=collate_fn,
                  pin_memory=device.type == "cuda", generator=torch.Generator().manual_seed(cfg.train.seed))
    if not train:  # used once per epoch: its workers are started for each pass, never left behind
        return DataLoader(dataset, shuffle=False, **common)
    sampler = EpochSampler(dataset, shuffle=True, seed=cfg.train.seed)
    return TrainLoader(SeededDataset(dataset, cfg.train.seed), sampler=sampler,
                       drop_last=len(sampler) > cfg.train.batch_size,
                       persistent_workers=cfg.data.num_workers > 0 and cfg.data.persistent_workers, **common)
