import pytest

from facedet.config import (
    CONFIGS_DIR,
    Config,
    from_dict,
    load_config,
    resolve_config_path,
    save_config,
    to_dict,
)
from facedet.errors import ConfigError


def test_defaults_then_yaml_then_overrides(tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("train:\n  epochs: 7\n  lr: 1e-3\nmodel:\n  griddim: 14\n")
    cfg = load_config(path, ["train.epochs=3", "train.milestones=[10, 20]", "data.root=/x"])
    assert cfg.train.epochs == 3  # the command line wins over the file
    assert cfg.train.lr == pytest.approx(1e-3)  # "1e-3" is a string to YAML 1.1; accepted as float
    assert cfg.model.griddim == 14 and cfg.train.milestones == [10, 20] and cfg.data.root == "/x"
    assert cfg.train.batch_size == Config().train.batch_size  # untouched keys keep defaults
    assert cfg.name == "exp"  # run name defaults to the file's stem


@pytest.mark.parametrize("override, words", [
    ("train.epoch=3", ["train.epoch", "epochs"]),          # unknown key, with a suggestion
    ("train.epochs=abc", ["train.epochs", "int", "abc"]),  # wrong type
    ("train.lr=true", ["train.lr", "float"]),
    ("train.amp=3", ["train.amp", "bool"]),
    ("train.epochs=2.5", ["train.epochs", "int"]),
    ("model=3", ["model", "section"]),
    ("train.optimizer=rmsprop", ["train.optimizer", "sgd"]),
    ("data.augment=heavy", ["data.augment", "ssd"]),
    ("noequals", ["section.key=value"]),
    ("train.batch_size=0", ["train.batch_size", "positive"]),
])
def test_bad_overrides_name_the_key(override, words):
    with pytest.raises(ConfigError) as err:
        load_config(None, [override])
    message = str(err.value)
    assert "\n" not in message
    for word in words:
        assert word in message


def test_unknown_key_in_file_lists_valid_keys(tmp_path):
    path = tmp_path / "bad.yaml"
    path.write_text("train:\n  epohcs: 3\n")
    with pytest.raises(ConfigError, match=r"bad.yaml.*'train.epohcs'.*valid keys here: epochs"):
        load_config(path)


def test_wrong_section_type_and_bad_yaml(tmp_path):
    (tmp_path / "a.yaml").write_text("train: 3\n")
    with pytest.raises(ConfigError, match="'train' must be a section"):
        load_config(tmp_path / "a.yaml")
    (tmp_path / "b.yaml").write_text("train: [\n")
    with pytest.raises(ConfigError, match="not valid YAML"):
        load_config(tmp_path / "b.yaml")


def test_bare_name_resolves_to_configs_dir(tmp_path, monkeypatch):
    monkeypatch.chdir(tmp_path)
    shipped = sorted(CONFIGS_DIR.glob("*.yaml"))
    assert shipped, "configs/ ships YAML files"
    assert resolve_config_path(shipped[0].name) == shipped[0]
    local = tmp_path / shipped[0].name  # a file in the working directory wins
    local.write_text("train:\n  epochs: 1\n")
    assert resolve_config_path(shipped[0].name).resolve() == local
    with pytest.raises(ConfigError, match="not found"):
        resolve_config_path("nope.yaml")


def test_every_shipped_config_loads():
    for path in CONFIGS_DIR.glob("*.yaml"):
        load_config(path)


def test_round_trip_through_yaml_and_dict(tmp_path):
    cfg = load_config(None, ["train.epochs=5", "model.name=grid_simple"])
    save_config(cfg, tmp_path / "c.yaml")
    assert load_config(tmp_path / "c.yaml") == cfg
    assert from_dict(to_dict(cfg)) == cfg


def test_every_shipped_config_builds_its_model():
    """Each recipe names a real model with options its builder accepts (built on the meta device)."""
    import torch

    from facedet.models import build_model

    for path in CONFIGS_DIR.glob("*.yaml"):
        cfg = load_config(path)
        with torch.device("meta"):  # no memory for the 400M-parameter seed models
            detector = build_model(cfg.model)
        assert sum(p.numel() for p in detector.model.parameters()) > 0, path.name
