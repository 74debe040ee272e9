"""Run by tests/test_ddp.py under torchrun: `python -m facedet.train` that also records, per
rank, the images each step trained on and a digest of the final weights.

    DDP_PROBE_DIR=out torchrun --nproc_per_node 2 tests/ddp_probe.py --config quickstart.yaml ...

Writes out/rank<R>.json: {"seen": [[image ids of step 1], ...], "epochs": [epoch of each step],
"weights": sha256 of the state_dict}.
"""
import hashlib
import json
import os
import sys
from pathlib import Path

from facedet import train
from facedet.cli import run_cli
from facedet.trainer import Trainer


def digest(state_dict) -> str:
    """sha256 over every tensor's name and bytes, in state_dict order."""
    h = hashlib.sha256()
    for name, tensor in state_dict.items():
        h.update(name.encode())
        h.update(tensor.detach().cpu().contiguous().numpy().tobytes())
    return h.hexdigest()


def main() -> int:
    seen, epochs = [], []
    train_step, fit = Trainer.train_step, Trainer.fit

    def recording_step(self, images, targets, batch=0):
        seen.append([int(t["image_id"]) for t in targets])
        epochs.append(self.epoch)
        return train_step(self, images, targets, batch)

    def fit_and_record(self):
        metrics = fit(self)
        out = Path(os.environ["DDP_PROBE_DIR"]) / f"rank{os.environ['RANK']}.json"
        out.write_text(json.dumps({"seen": seen, "epochs": epochs, "weights": digest(self.model.state_dict())}))
        return metrics

    Trainer.train_step, Trainer.fit = recording_step, fit_and_record
    return run_cli(train.main, sys.argv[1:])


if __name__ == "__main__":
    raise SystemExit(main())
