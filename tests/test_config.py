import pytest
import yaml

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
    ("data.face_min_visible=2", ["data.face_min_visible", "between 0"]),
    ("data.face_close_up=-0.1", ["data.face_close_up", "between 0 and 1"]),
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
        if cfg.model.name == "viola_jones":  # buffers only, and empty until boosting adds stages
            assert detector.model.num_stages == 0 and detector.input_policy == "whole", path.name
            continue
        assert sum(p.numel() for p in detector.model.parameters()) > 0, path.name


# ----------------------------------------------------------------------------- one dataclass per rung


def test_each_rung_has_its_own_keys_and_refuses_the_others():
    from facedet.config import FaceSSDConfig, GridConfig

    cfg = load_config("face_default.yaml")
    assert isinstance(cfg.model, FaceSSDConfig) and cfg.model.match_iou == 0.35
    with pytest.raises(ConfigError) as err:
        load_config("face_default.yaml", ["model.griddim=14"])
    assert "'model.griddim'" in str(err.value) and "model 'face_ssd' uses" in str(err.value)
    assert "match_iou" in str(err.value) and "embedding_dim" not in str(err.value)
    grid = load_config("grid7.yaml")
    assert isinstance(grid.model, GridConfig) and not hasattr(grid.model, "match_iou") and grid.model.backbone == "seed"


def test_a_yaml_model_section_is_checked_against_its_rung(tmp_path):
    path = tmp_path / "c.yaml"
    path.write_text("model:\n  name: grid_simple\n  fpn: true\n")
    with pytest.raises(ConfigError, match=r"unknown key 'model.fpn'; model 'grid_simple' uses name, num_classes"):
        load_config(path)
    path.write_text("model:\n  name: grid_triple\n")
    with pytest.raises(ConfigError, match="'model.name' is 'grid_triple'; expected one of classifier, grid_simple"):
        load_config(path)


def test_switching_model_name_on_the_command_line_switches_the_dataclass():
    from facedet.config import GridConfig, SSD300Config

    cfg = load_config("grid7.yaml", ["model.name=ssd300"])
    assert isinstance(cfg.model, SSD300Config) and cfg.model.num_classes == 1  # shared keys carried over
    cfg = load_config("grid7.yaml", ["model.name=grid_cnn"])
    assert isinstance(cfg.model, GridConfig) and cfg.model.name == "grid_cnn" and cfg.model.griddim == 7


def test_print_config_shows_only_the_rungs_keys(capsys):
    from facedet import train

    assert train.main(["--config", "grid7.yaml", "--print-config"]) == 0
    model = yaml.safe_load(capsys.readouterr().out)["model"]
    assert set(model) == {"name", "num_classes", "image_size", "init", "griddim", "backbone", "width"}


def test_every_rung_config_and_builder_agree():
    from facedet.config import MODEL_CONFIGS
    from facedet.models import MODELS

    assert set(MODEL_CONFIGS) == set(MODELS)


def test_a_flat_model_section_of_an_older_checkpoint_still_loads(tmp_path):
    """Before one dataclass per rung, checkpoints stored every rung's keys in one model section."""
    from facedet.checkpoint import checkpoint_config

    flat = {"name": "grid_simple", "num_classes": 1, "image_size": 224, "griddim": 14, "boxes_per_cell": 1,
            "embedding_dim": 512, "width": 32, "loss": "ce", "pretrained": ""}
    cfg = checkpoint_config({"config": {"model": flat}}, tmp_path / "old.pt")
    assert cfg.model.griddim == 14 and not hasattr(cfg.model, "embedding_dim")


# which network each shipped config must build (checked on the meta device: no memory, no time)
RUNG_OF_CONFIG = {
    "classifier.yaml": "CNNClassifier", "grid7.yaml": "GridSimpleCNNModel", "grid14.yaml": "GridSimpleCNNModel",
    "grid_cnn.yaml": "GridCNNModel", "yolo_face.yaml": "YOLOFaceCNN", "yolov1.yaml": "YOLOFaceTiny",
    "quickstart.yaml": "YOLOFaceTiny", "ssd300_voc.yaml": "SSD300", "ssd300_face.yaml": "SSD300",
    "ssd300_bccd.yaml": "SSD300", "fastai_ssd.yaml": "FastaiSSD", "face_default.yaml": "FaceSSD",
    "retinanet_face.yaml": "RetinaNet", "retinanet_bccd.yaml": "RetinaNet", "objects.yaml": "RetinaNet",
    "centernet_face.yaml": "CenterNet",
    "faster_rcnn_face.yaml": "FasterRCNN", "faster_rcnn_bccd.yaml": "FasterRCNN",
    "viola_jones.yaml": "ViolaJonesCascade",
    # the same-backbone ladder (facedet/models/backbone.py)
    "same_classifier.yaml": "SmallClassifier", "same_grid7.yaml": "GridSmallModel", "same_grid14.yaml": "GridSmallModel",
    "same_yolo.yaml": "YOLOFaceSmall", "same_ssd.yaml": "FaceSSD", "same_retinanet.yaml": "RetinaNet",
    "same_centernet.yaml": "CenterNet", "same_faster_rcnn.yaml": "FasterRCNN",
}


@pytest.mark.parametrize("name", sorted(RUNG_OF_CONFIG))
def test_every_shipped_config_builds_its_rung(name):
    import torch

    from facedet.config import CONFIGS_DIR
    from facedet.models import build_model

    assert sorted(p.name for p in CONFIGS_DIR.glob("*.yaml")) == sorted(RUNG_OF_CONFIG)
    cfg = load_config(name)
    with torch.device("meta"):
        detector = build_model(cfg.model)
    assert type(detector.model).__name__ == RUNG_OF_CONFIG[name]
