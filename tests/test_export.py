"""python -m facedet.export: ONNX networks match PyTorch in onnxruntime; weights-only checkpoints."""
import json
import sys

import pytest
import torch

from facedet import export, infer
from facedet.checkpoint import load_checkpoint, load_detector
from facedet.files import atomic_save
from facedet.cli import run_cli
from facedet.config import load_config, to_dict
from facedet.models import build_model

# One small instance of every fixed-input kind (SSD300 has no width knob: its 95 MB export
# is the slowest test here, a few seconds).
KINDS = {
    "yolo_face_tiny": ["model.width=8", "model.image_size=64", "model.griddim=4"],
    "face_ssd": ["model.width=8", "model.image_size=128"],
    "ssd300": ["model.image_size=300"],
    "fastai_ssd": ["model.width=8"],
    "grid_simple": ["model.image_size=32", "model.griddim=7"],
    "classifier": ["model.image_size=32", "model.embedding_dim=8"],
}


def make_checkpoint(path, name, with_training_state=False):
    """A checkpoint of random weights, BatchNorm statistics included (so eval mode matters)."""
    cfg = load_config(None, [f"model.name={name}", "model.num_classes=1", *KINDS[name]])
    torch.manual_seed(0)
    detector = build_model(cfg.model)
    for buffer_name, buffer in detector.model.named_buffers():
        if buffer_name.endswith("running_mean"):
            buffer.normal_(0, 0.1)
        elif buffer_name.endswith("running_var"):
            buffer.uniform_(0.5, 1.5)
    state = {"model": detector.model.state_dict(), "config": to_dict(cfg), "class_names": ["face"]}
    if with_training_state:  # what the trainer adds: Adam's two moments per weight, history
        optimizer = torch.optim.Adam(detector.model.parameters())
        for p in detector.model.parameters():
            p.grad = torch.ones_like(p)
        optimizer.step()
        state.update(optimizer=optimizer.state_dict(), history=[{"epoch": 0, "loss": 1.0}], epoch=1)
    atomic_save(state, path)
    return path


def as_tuple(outputs):
    return outputs if isinstance(outputs, tuple) else (outputs,)


@pytest.mark.parametrize("name", list(KINDS))
def test_onnx_matches_pytorch_at_another_batch_size(tmp_path, name):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    checkpoint = make_checkpoint(tmp_path / "best.pt", name)
    out = export.export_onnx(checkpoint, tmp_path / "best.onnx", batch_size=1)
    meta = json.loads((tmp_path / "best.json").read_text())
    detector = load_detector(checkpoint)
    size = detector.config.model.image_size
    assert meta["class_names"] == ["face"]
    if detector.input_policy == "scalable":  # any height and width: try another than the export's
        assert meta["input_shape"] == ["batch", 3, "height", "width"]
        shape = (3, 3, size + 64, size + 128)
    else:
        assert meta["input_shape"] == ["batch", 3, size, size]
        shape = (3, 3, size, size)
    images = torch.randn(*shape, generator=torch.Generator().manual_seed(1))  # batch 3, exported at 1
    with torch.no_grad():
        expected = as_tuple(detector.model(images))
    session = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"])
    assert [o.name for o in session.get_outputs()] == meta["outputs"]
    got = session.run(None, {"images": images.numpy()})
    assert len(got) == len(expected)
    for e, g in zip(expected, got):
        torch.testing.assert_close(torch.from_numpy(g), e, rtol=1e-3, atol=1e-4)


def test_onnx_postprocess_rebuilds_the_models_postprocessing(tmp_path):
    pytest.importorskip("onnx")
    ort = pytest.importorskip("onnxruntime")
    checkpoint = make_checkpoint(tmp_path / "best.pt", "face_ssd")
    out = export.export_onnx(checkpoint, tmp_path / "best.onnx")
    detector = load_detector(checkpoint)
    images = torch.randn(2, 3, 128, 192, generator=torch.Generator().manual_seed(2))
    settings = dict(min_score=0.4, nms_iou=0.45, top_k=50, input_hw=(128, 192))  # FaceSSD: priors of that grid
    with torch.no_grad():
        expected = detector.postprocess(detector.model(images), **settings)
    outputs = ort.InferenceSession(str(out), providers=["CPUExecutionProvider"]).run(None, {"images": images.numpy()})
    got = export.onnx_postprocess(tmp_path / "best.json")(outputs, **settings)
    assert sum(len(d["scores"]) for d in expected) > 0
    for e, g in zip(expected, got, strict=True):
        assert torch.equal(e["labels"], g["labels"])
        torch.testing.assert_close(g["boxes"], e["boxes"], rtol=1e-3, atol=1e-4)
        torch.testing.assert_close(g["scores"], e["scores"], rtol=1e-3, atol=1e-4)


def test_cli_writes_onnx_and_its_json(tmp_path, capsys):
    pytest.importorskip("onnx")
    checkpoint = make_checkpoint(tmp_path / "best.pt", "yolo_face_tiny")
    assert run_cli(export.main, ["--checkpoint", str(checkpoint), "--format", "onnx"]) == 0
    assert "best.onnx" in capsys.readouterr().out
    assert (tmp_path / "best.onnx").stat().st_size > 10_000 and (tmp_path / "best.json").exists()
    assert not list(tmp_path.glob("*.tmp"))


def test_missing_onnx_package_is_one_clear_line(tmp_path, capsys, monkeypatch):
    checkpoint = make_checkpoint(tmp_path / "best.pt", "yolo_face_tiny")
    monkeypatch.setitem(sys.modules, "onnx", None)  # `import onnx` now raises ImportError
    assert run_cli(export.main, ["--checkpoint", str(checkpoint)]) == 2
    err = capsys.readouterr().err
    assert "pip install" in err and "onnx" in err and err.count("\n") == 1
    assert not (tmp_path / "best.onnx").exists()


def test_weights_format_shrinks_and_still_detects(tmp_path):
    from facedet.data.synthetic import make_demo_image

    checkpoint = make_checkpoint(tmp_path / "last.pt", "yolo_face_tiny", with_training_state=True)
    assert run_cli(export.main, ["--checkpoint", str(checkpoint), "--format", "weights"]) == 0
    weights = tmp_path / "last_weights.pt"
    assert weights.stat().st_size < 0.5 * checkpoint.stat().st_size  # Adam kept two more copies of every weight
    state = load_checkpoint(weights)
    assert "optimizer" not in state and "history" not in state and state["epoch"] == 1
    original = load_checkpoint(checkpoint)["model"]
    assert all(torch.equal(state["model"][k], v) for k, v in original.items())
    image = tmp_path / "demo.jpg"
    make_demo_image(image, seed=0)
    assert run_cli(infer.main, [str(image), "--checkpoint", str(weights), "--json", str(tmp_path / "d.json")]) == 0
    assert str(image) in json.loads((tmp_path / "d.json").read_text())
