"""Killed runs and failed writes lose nothing.

- A training run killed with SIGKILL after its first checkpoint resumes from that
  checkpoint and then logs exactly the losses of a run that was never interrupted.
- A checkpoint whose write is interrupted (an error half-way, or SIGKILL half-way)
  never replaces the previous good one.
- A disk that fills up while infer writes its JSON leaves the previous JSON, not half
  of a new one, and one line saying which file could not be written.
"""
from __future__ import annotations

import csv
import io
import json
import math
import os
import signal
import subprocess
import sys
import textwrap
import time
from pathlib import Path

import pytest
import torch

from facedet import train
from facedet.checkpoint import load_checkpoint
from facedet.files import atomic_save
from facedet.cli import run_cli
from facedet.config import load_config, to_dict
from facedet.data.synthetic import ensure_synthetic, make_demo_image
from facedet.errors import FacedetError
from facedet.models import build_model

# Four epochs of two batches on 16 synthetic images, without validation: under a second each.
SYNTHETIC = {"synthetic_train": 16, "synthetic_val": 8}
RUN = ["--config", "quickstart.yaml", "train.epochs=4", "train.batch_size=8", "train.warmup_iters=0",
       "train.val_every=0", "train.device=cpu", "data.num_workers=0", "model.width=8", "model.image_size=56",
       *(f"data.{key}={value}" for key, value in SYNTHETIC.items())]
REPO = Path(__file__).resolve().parent.parent


def subprocess_env(cache: Path) -> dict[str, str]:
    return {**os.environ, "FACEDET_CACHE": str(cache), "PYTHONPATH": str(REPO)}


def read_metrics(run_dir: Path) -> list[dict[str, float]]:
    """metrics.csv rows as numbers, without the wall-clock column (it differs run to run)."""
    rows = list(csv.DictReader((run_dir / "metrics.csv").open()))
    return [{k: float(v) for k, v in row.items() if k != "train_time_s"} for row in rows]


def assert_same_rows(resumed: list[dict], straight: list[dict]) -> None:
    assert [row["epoch"] for row in resumed] == [row["epoch"] for row in straight]
    for a, b in zip(resumed, straight):
        assert a.keys() == b.keys()
        for key in a:
            same = math.isclose(a[key], b[key], rel_tol=1e-6, abs_tol=1e-9) or (math.isnan(a[key]) and math.isnan(b[key]))
            assert same, f"epoch {a['epoch']:g}, {key}: resumed {a[key]!r} vs uninterrupted {b[key]!r}"


def test_sigkill_after_first_checkpoint_then_resume_equals_uninterrupted(tmp_path, monkeypatch, capsys):
    cache = tmp_path / "cache"
    monkeypatch.setenv("FACEDET_CACHE", str(cache))
    ensure_synthetic(n_train=SYNTHETIC["synthetic_train"], n_val=SYNTHETIC["synthetic_val"])  # shared by all runs

    assert run_cli(train.main, [*RUN, f"out_dir={tmp_path}", "name=straight"]) == 0
    straight = read_metrics(tmp_path / "straight")
    assert len(straight) == 4

    # The same run in its own process, killed without warning once last.pt appears.
    run_dir = tmp_path / "killed"
    log = tmp_path / "killed.log"
    with log.open("w") as stderr:
        process = subprocess.Popen([sys.executable, "-m", "facedet.train", *RUN, f"out_dir={tmp_path}", "name=killed"],
                                   env=subprocess_env(cache), stdout=subprocess.DEVNULL, stderr=stderr)
        deadline = time.monotonic() + 120
        while not (run_dir / "last.pt").exists():
            assert process.poll() is None, log.read_text()[-2000:]
            assert time.monotonic() < deadline, "no checkpoint within 2 minutes"
            time.sleep(0.02)
        os.kill(process.pid, signal.SIGKILL)
        process.wait()
    assert process.returncode == -signal.SIGKILL
    state = load_checkpoint(run_dir / "last.pt")  # whatever the kill interrupted, this one is whole
    killed_at = state["epoch"]
    assert 1 <= killed_at < 4, "the run finished before it was killed; nothing was tested"

    capsys.readouterr()
    assert run_cli(train.main, [*RUN, f"out_dir={tmp_path}", "name=killed", f"train.resume={run_dir / 'last.pt'}"]) == 0
    # killed_at epochs were done: the run resumes at the start of the next one
    assert f"resumed from {run_dir / 'last.pt'} at epoch {killed_at + 1} (" in capsys.readouterr().out
    resumed = read_metrics(run_dir)
    assert_same_rows(resumed, straight)
    final, reference = load_checkpoint(run_dir / "last.pt"), load_checkpoint(tmp_path / "straight" / "last.pt")
    assert final["epoch"] == 4 and final["iteration"] == reference["iteration"]
    for name, tensor in reference["model"].items():
        torch.testing.assert_close(final["model"][name], tensor, rtol=1e-5, atol=1e-6, msg=name)


def small_state(value: float) -> dict:
    return {"model": {"weight": torch.full((1000,), value)}, "config": {}, "epoch": int(value)}


def test_failed_checkpoint_write_keeps_the_previous_one(tmp_path, monkeypatch):
    path = tmp_path / "last.pt"
    atomic_save(small_state(1.0), path)
    good = path.read_bytes()
    real_save = torch.save

    def disk_full_half_way(obj, file):
        buffer = io.BytesIO()
        real_save(obj, buffer)
        file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
        raise OSError(28, "No space left on device")

    monkeypatch.setattr(torch, "save", disk_full_half_way)
    with pytest.raises(FacedetError, match=r"last\.pt: cannot write \(No space left on device\); the previous"):
        atomic_save(small_state(2.0), path)
    assert path.read_bytes() == good and load_checkpoint(path)["epoch"] == 1
    assert sorted(p.name for p in tmp_path.iterdir()) == ["last.pt"]  # the half file is gone too


def test_sigkill_in_the_middle_of_a_checkpoint_write_keeps_the_previous_one(tmp_path):
    path = tmp_path / "last.pt"
    atomic_save(small_state(1.0), path)
    good = path.read_bytes()
    script = textwrap.dedent(f"""
        import io, os, signal, torch
        from facedet.files import atomic_save
        real_save = torch.save

        def killed_half_way(obj, file):
            buffer = io.BytesIO()
            real_save(obj, buffer)
            file.write(buffer.getvalue()[: len(buffer.getvalue()) // 2])
            file.flush()
            os.kill(os.getpid(), signal.SIGKILL)

        torch.save = killed_half_way
        atomic_save({{"model": {{"weight": torch.full((1000,), 2.0)}}, "config": {{}}, "epoch": 2}}, {str(path)!r})
    """)
    process = subprocess.run([sys.executable, "-c", script], env=subprocess_env(tmp_path / "cache"), timeout=120)
    assert process.returncode == -signal.SIGKILL
    assert path.read_bytes() == good and load_checkpoint(path)["epoch"] == 1
    (partial,) = [p for p in tmp_path.iterdir() if p.name != "last.pt"]  # what the kill interrupted
    assert partial.name.startswith("last.pt") and partial.suffix == ".tmp" and 0 < partial.stat().st_size < len(good)


def test_disk_full_while_infer_writes_json_keeps_the_previous_json(tmp_path):
    """RLIMIT_FSIZE stands in for a full disk: any write past 300 bytes fails with EFBIG."""
    images = [tmp_path / f"photo{i}.jpg" for i in range(3)]
    for seed, image in enumerate(images):
        make_demo_image(image, seed=seed, size=128)
    cfg = load_config("quickstart.yaml", ["model.width=8", "model.image_size=56", "model.num_classes=1"])
    checkpoint = tmp_path / "model.pt"  # untrained: with --min-score 0 it still reports 49 boxes per image
    atomic_save({"model": build_model(cfg.model).model.state_dict(), "config": to_dict(cfg)}, checkpoint)
    out = tmp_path / "det.json"
    out.write_text('{"earlier.jpg": []}')
    script = textwrap.dedent("""
        import resource, signal, sys
        signal.signal(signal.SIGXFSZ, signal.SIG_IGN)  # fail the write with EFBIG instead of killing
        resource.setrlimit(resource.RLIMIT_FSIZE, (300, resource.RLIM_INFINITY))
        from facedet import infer
        from facedet.cli import run_cli
        raise SystemExit(run_cli(infer.main, sys.argv[1:]))
    """)
    args = [*map(str, images), "--checkpoint", str(checkpoint), "--json", str(out), "--no-save",
            "--min-score", "0", "--device", "cpu"]
    process = subprocess.run([sys.executable, "-c", script, *args], env=subprocess_env(tmp_path / "cache"),
                             capture_output=True, text=True, timeout=120)
    assert process.returncode == 2, process.stderr[-2000:]
    assert "Traceback" not in process.stderr
    (line,) = [line for line in process.stderr.splitlines() if line.startswith("error:")]
    assert "det.json: cannot write (File too large)" in line
    assert json.loads(out.read_text()) == {"earlier.jpg": []}
    assert sorted(p.name for p in tmp_path.iterdir()) == ["det.json", "model.pt", *(p.name for p in images)]
