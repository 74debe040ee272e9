"""Files from strangers run no code, and nothing talks to the network unasked.

- Checkpoints load with weights_only=True: a crafted pickle whose unpickling would run
  code is refused with one CheckpointError line, and the code does not run.
- YAML (configs, data.yaml, overrides) is read with safe_load: a python/object tag is
  refused (or stays a string) and runs nothing.
- No module opens a network connection except the one that fetches torchvision's VGG16
  weights for model.pretrained=torchvision; a run with sockets disabled works.
"""
from __future__ import annotations

import ast
import pickle
import socket
from pathlib import Path

import pytest
import torch

from facedet import evaluate, infer, train
from facedet.checkpoint import load_checkpoint
from facedet.cli import run_cli
from facedet.config import apply_override, load_config
from facedet.data.layouts import read_data_yaml
from facedet.data.synthetic import make_demo_image
from facedet.errors import CheckpointError, ConfigError, DataError

PACKAGE = Path(__file__).resolve().parent.parent / "facedet"
TINY = ["--config", "quickstart.yaml", "train.epochs=1", "train.batch_size=8", "train.val_every=0",
        "train.warmup_iters=0", "train.device=cpu", "data.num_workers=0", "model.width=8", "model.image_size=56",
        "data.synthetic_train=8", "data.synthetic_val=4"]


class RunsCode:
    """An object whose unpickling calls exec(): here it only writes a marker file."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('pwned')",)


def crafted_checkpoints(tmp_path: Path) -> tuple[Path, list[Path]]:
    """(marker, [a torch.save zip holding the object, a bare pickle of it]); neither run yet."""
    marker = tmp_path / "code_ran"
    zipped, bare = tmp_path / "zipped.pt", tmp_path / "bare.pt"
    torch.save({"model": RunsCode(marker), "config": {"model": {"name": "yolo_face_tiny"}}}, zipped)
    bare.write_bytes(pickle.dumps({"model": RunsCode(marker), "config": {}}))
    return marker, [zipped, bare]


def test_the_crafted_checkpoints_do_run_code_when_loaded_unsafely(tmp_path):
    """The control: without weights_only the files below really execute their payload."""
    marker, (zipped, bare) = crafted_checkpoints(tmp_path)
    torch.load(zipped, weights_only=False)
    assert marker.read_text() == "pwned"
    marker.unlink()
    with pytest.raises(RuntimeError, match="magic number"):  # torch's legacy reader unpickles first, checks after
        torch.load(bare, weights_only=False)
    assert marker.read_text() == "pwned"


def test_load_checkpoint_refuses_pickled_code(tmp_path):
    marker, (zipped, bare) = crafted_checkpoints(tmp_path)
    with pytest.raises(CheckpointError) as info:
        load_checkpoint(zipped)
    message = str(info.value)
    assert "\n" not in message and "zipped.pt" in message and "(exec)" in message  # the global it would call
    assert "weights_only=True" in message
    with pytest.raises(CheckpointError, match=r"bare\.pt: not a readable facedet checkpoint \(not a torch\.save archive"):
        load_checkpoint(bare)
    assert not marker.exists()


@pytest.mark.parametrize("which", ["zipped", "bare"])
def test_cli_entry_points_refuse_pickled_code(tmp_path, monkeypatch, capsys, which):
    monkeypatch.setenv("FACEDET_CACHE", str(tmp_path / "cache"))  # train builds its data before resuming
    marker, files = crafted_checkpoints(tmp_path)
    checkpoint = files[0] if which == "zipped" else files[1]
    image = tmp_path / "photo.jpg"
    make_demo_image(image, seed=0, size=64)
    runs = {
        "infer": (infer.main, [str(image), "--checkpoint", str(checkpoint), "--json", str(tmp_path / "det.json"),
                               "--no-save", "--device", "cpu"]),
        "evaluate": (evaluate.main, ["--checkpoint", str(checkpoint), "--out", str(tmp_path / "eval"), "--device", "cpu"]),
        "train": (train.main, [*TINY, f"out_dir={tmp_path / 'runs'}", f"train.resume={checkpoint}"]),
    }
    for name, (main, argv) in runs.items():
        capsys.readouterr()
        assert run_cli(main, argv) == 2, name
        errors = [line for line in capsys.readouterr().err.splitlines() if line.startswith("error:")]
        assert len(errors) == 1 and f"{checkpoint.name}: not a readable facedet checkpoint" in errors[0], (name, errors)
    assert not marker.exists()
    assert not (tmp_path / "det.json").exists() and not (tmp_path / "eval" / "metrics.json").exists()


PYTHON_TAG = "!!python/object/apply:builtins.exec [\"open({marker!r}, 'w').write('pwned')\"]"


def test_yaml_with_a_python_tag_is_refused_in_one_line(tmp_path, capsys):
    marker = tmp_path / "code_ran"
    tag = PYTHON_TAG.format(marker=str(marker))
    config = tmp_path / "evil.yaml"
    config.write_text(f"train:\n  epochs: {tag}\n")
    with pytest.raises(ConfigError, match=r"evil\.yaml: not valid YAML \(could not determine a constructor"):
        load_config(config)
    assert run_cli(train.main, ["--config", str(config)]) == 2
    (line,) = capsys.readouterr().err.strip().splitlines()
    assert line.startswith("error:") and "evil.yaml" in line

    data_yaml = tmp_path / "data.yaml"
    data_yaml.write_text(f"train: {tag}\nnames: [face]\n")
    with pytest.raises(DataError, match=r"data\.yaml: cannot read data yaml \(could not determine a constructor"):
        read_data_yaml(data_yaml)

    cfg = load_config(None)
    apply_override(cfg, f"name={tag}")  # an override that is not safe YAML stays the string typed
    assert cfg.name == tag
    assert not marker.exists()


def python_files() -> list[Path]:
    return sorted(PACKAGE.rglob("*.py"))


def calls(tree: ast.AST):
    """(module alias, attribute) of every call written `x.attr(...)`, with the node."""
    for node in ast.walk(tree):
        if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute):
            owner = node.func.value
            yield (owner.id if isinstance(owner, ast.Name) else None), node.func.attr, node


def test_every_yaml_read_is_safe_load_and_every_torch_load_is_weights_only():
    checked = 0
    for path in python_files():
        for owner, attr, node in calls(ast.parse(path.read_text())):
            where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
            if owner == "yaml":
                assert attr in ("safe_load", "safe_dump"), f"{where}: yaml.{attr}"
                checked += 1
            if owner == "torch" and attr == "load":
                flags = {k.arg: k.value for k in node.keywords}
                assert isinstance(flags.get("weights_only"), ast.Constant) and flags["weights_only"].value is True, where
                checked += 1
    assert checked >= 5  # config, data.yaml, checkpoints, crop cache, VGG weights: the scan saw them


# The two places that may reach the network, and why: model.pretrained=torchvision asks
# torchvision to download ImageNet VGG16 weights (its own cache first), and model.init=torchvision
# its ImageNet ResNet weights (facedet/init_weights.py). Both only when a config names torchvision.
NETWORK_MODULES = {"socket", "urllib", "http", "requests", "ftplib", "aiohttp", "httpx", "urllib3"}
DOWNLOADS = {"get_state_dict", "load_state_dict_from_url", "download_url_to_file", "urlopen", "urlretrieve"}
ALLOWED_DOWNLOADS = ["facedet/init_weights.py", "facedet/models/vgg_weights.py"]


def test_no_module_reaches_the_network_except_pretrained_vgg():
    downloads = []
    for path in python_files():
        tree = ast.parse(path.read_text())
        for node in ast.walk(tree):
            if isinstance(node, ast.Import):
                names = [alias.name for alias in node.names]
            elif isinstance(node, ast.ImportFrom):
                names = [node.module or ""]
            else:
                continue
            for name in names:
                assert name.split(".")[0] not in NETWORK_MODULES, f"{path.name}:{node.lineno} imports {name}"
                assert name != "torch.hub", f"{path.name}:{node.lineno} imports torch.hub"
        downloads += [f"{path.relative_to(PACKAGE.parent)}" for _, attr, _ in calls(tree) if attr in DOWNLOADS]
    assert sorted(downloads) == ALLOWED_DOWNLOADS
    vgg, init = ((PACKAGE.parent / path).read_text() for path in ("facedet/models/vgg_weights.py", "facedet/init_weights.py"))
    assert 'if str(source) == "torchvision":\n            source = torchvision_vgg16_state_dict()' in vgg
    assert 'if init == TORCHVISION:\n        return imagenet_weights(cfg)' in init


@pytest.fixture
def no_network(monkeypatch):
    """Any attempt to resolve a name or open a connection fails the test."""

    def refuse(*args, **kwargs):
        raise AssertionError(f"network access attempted: {args[:2]}")

    for name in ("create_connection", "getaddrinfo", "gethostbyname"):
        monkeypatch.setattr(socket, name, refuse)
    monkeypatch.setattr(socket.socket, "connect", refuse)
    monkeypatch.setattr(socket.socket, "connect_ex", refuse)


def test_train_infer_evaluate_work_without_network(tmp_path, monkeypatch, no_network):
    monkeypatch.setenv("FACEDET_CACHE", str(tmp_path / "cache"))
    assert run_cli(train.main, [*TINY, f"out_dir={tmp_path}", "name=offline"]) == 0
    checkpoint = tmp_path / "offline" / "last.pt"
    image = tmp_path / "photo.jpg"
    make_demo_image(image, seed=1, size=64)
    assert run_cli(infer.main, [str(image), "--checkpoint", str(checkpoint), "--no-save", "--device", "cpu"]) == 0
    assert run_cli(infer.main, [str(image), "--no-save", "--device", "cpu"]) == 0  # the shipped detector
    assert run_cli(evaluate.main, ["--checkpoint", str(checkpoint), "--out", str(tmp_path / "eval"), "--device", "cpu"]) == 0
