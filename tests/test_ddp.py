"""DistributedDataParallel on CPU: two gloo processes started by torchrun."""
import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from facedet.checkpoint import load_checkpoint

from ddp_probe import digest  # tests/ is on sys.path under pytest

TINY = ["data.synthetic_train=24", "data.synthetic_val=8", "data.num_workers=0", "train.batch_size=4",
        "model.width=8", "train.device=cpu"]


@pytest.mark.skipif(shutil.which("torchrun") is None, reason="torchrun not on PATH")
def test_two_ranks_see_different_data_and_end_with_identical_weights(tmp_path):
    env = {**os.environ, "FACEDET_CACHE": str(tmp_path / "cache"), "OMP_NUM_THREADS": "1",
           "DDP_PROBE_DIR": str(tmp_path)}
    cmd = ["torchrun", "--nproc_per_node", "2", "--master_port", "29531", str(Path(__file__).parent / "ddp_probe.py"),
           "--config", "quickstart.yaml", f"out_dir={tmp_path}", "name=ddp", "train.epochs=2", *TINY]
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert proc.stdout.count("parameters,") == 1  # only rank 0 prints
    ranks = [json.loads((tmp_path / f"rank{r}.json").read_text()) for r in (0, 1)]

    # 24 images, 2 ranks: 12 each, batches of 4 -> 3 steps per epoch, 2 epochs
    for rank in ranks:
        assert rank["epochs"] == [0, 0, 0, 1, 1, 1]
    for epoch in (0, 1):
        ids = [{i for step, e in zip(r["seen"], r["epochs"]) if e == epoch for i in step} for r in ranks]
        assert len(ids[0]) == len(ids[1]) == 12 and not ids[0] & ids[1]  # disjoint halves of the data
        assert ids[0] | ids[1] == set(range(24))
    assert ranks[0]["seen"][:3] != ranks[0]["seen"][3:]  # each epoch reshuffles (set_epoch)

    # gradients are averaged and BatchNorm statistics broadcast: one model, which rank 0 saved
    state = load_checkpoint(tmp_path / "ddp" / "last.pt")
    assert state["iteration"] == 6
    assert ranks[0]["weights"] == ranks[1]["weights"] == digest(state["model"])
