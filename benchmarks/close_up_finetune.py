"""Short runs for close-up portraits (issue 28): fine-tune the shipped face detector with the
large priors and whole-face crops, then measure it with facedet.tools.portraits.

    export FACEDET_DATA=/path/to/data OMP_NUM_THREADS=2
    python benchmarks/close_up_finetune.py ft_v05 "data.root=$FACEDET_DATA/faces-caltech,$FACEDET_DATA/faces-mask"
    python benchmarks/close_up_finetune.py ft_cu3 "data.root=..." data.face_close_up=0.3 train.max_iters=500 train.epochs=3
    python -m facedet.tools.portraits --data $FACEDET_DATA/faces-caltech --max-images 60 --checkpoint runs/ft_v05/best.pt

Starts from facedet/weights/face_default.pt with model.large_priors=true: the stride-64 heads grow
from 3 to 5 priors per cell; the old priors' output channels are copied (they come first in each
cell), the 384 / 512 px ones start fresh. Then data.face_min_visible=0.5, lr 1e-3, 30 warm-up
steps, 400 steps of 32 (override any of them after the run's name).
"""
import sys

import torch

import facedet.train as training
from facedet.checkpoint import SHIPPED_CHECKPOINT
from facedet.config import load_config
from facedet.models.face_ssd import FaceSSD

name, overrides = sys.argv[1], sys.argv[2:]
cfg = load_config("face_default.yaml", [f"name={name}", "model.large_priors=true", "data.face_min_visible=0.5",
                                        "train.lr=1e-3", "train.warmup_iters=30", "train.max_iters=400",
                                        "train.epochs=2", "train.val_every=100", *overrides])
shipped = FaceSSD(32)
shipped.load_state_dict(torch.load(SHIPPED_CHECKPOINT, map_location="cpu", weights_only=True)["model"])
old = shipped.state_dict()  # today's key layout (the legacy-key hook renamed the shipped file's)
build = training.build_model


def build_from_the_shipped_weights(model_cfg):
    detector = build(model_cfg)
    state = detector.model.state_dict()
    for key, value in old.items():
        if state[key].shape == value.shape:
            state[key] = value
        else:  # a stride-64 head: the old priors' channels first
            state[key][: value.shape[0]] = value
            print(f"grew {key}: {tuple(value.shape)} -> {tuple(state[key].shape)}")
    detector.model.load_state_dict(state)
    return detector


training.build_model = build_from_the_shipped_weights
print(training.train(cfg))
