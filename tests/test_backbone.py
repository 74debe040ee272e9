"""The shared small backbone and the same-backbone ladder: shapes and parameter counts, the
top-down path, the grid reading, every rung's head on it (`model.backbone: small`), old
checkpoints of FaceSSD/CenterNet still loading, the ladder's configs holding everything but the
head fixed, and the new heads learning a few synthetic scenes."""
import dataclasses

import numpy as np
import pytest
import torch

from facedet.config import CONFIGS_DIR, Config, load_config, model_config, validate
from facedet.data.dataset import image_to_tensor
from facedet.data.synthetic import render_scene
from facedet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from facedet.errors import ConfigError
from facedet.models import build_model
from facedet.models.backbone import LEGACY_KEYS, GridFeatures, SmallBackbone, TopDown, rename_legacy_keys
from facedet.models.centernet import CenterNet
from facedet.models.face_ssd import FaceSSD

from conftest import n_params, overfit

SAME = ["same_classifier", "same_grid7", "same_grid14", "same_yolo", "same_ssd", "same_retinanet", "same_centernet",
        "same_faster_rcnn"]


def test_small_backbone_maps_and_size():
    backbone = SmallBackbone(32).eval()
    maps = backbone(torch.randn(2, 3, 256, 192))
    assert [tuple(m.shape) for m in maps] == [(2, 32, 64, 48), (2, 64, 32, 24), (2, 128, 16, 12), (2, 256, 8, 6)]
    assert backbone.channels == (32, 64, 128, 256) and backbone.strides == (4, 8, 16, 32)
    assert n_params(backbone) == 163_840
    with pytest.raises(ConfigError, match="model.width"):
        SmallBackbone(15)


def test_top_down_keeps_widths_and_the_coarsest_map():
    top_down = TopDown((8, 16, 32)).eval()
    features = [torch.randn(1, 8, 16, 16), torch.randn(1, 16, 8, 8), torch.randn(1, 32, 4, 4)]
    out = top_down(features)
    assert [o.shape for o in out] == [f.shape for f in features]
    assert out[-1] is features[-1]
    # p_0 depends on the coarsest map: change it, p_0 changes
    changed = top_down([features[0], features[1], torch.randn(1, 32, 4, 4)])
    assert not torch.allclose(changed[0], out[0])


@pytest.mark.parametrize("griddim, fine, channels", [(7, False, 256), (14, True, 128), (8, False, 256), (16, True, 128)])
def test_grid_features_read_the_right_map(griddim, fine, channels):
    features = GridFeatures(32, griddim, 256).eval()
    assert features.fine is fine and features.channels == channels
    assert features(torch.randn(2, 3, 256, 256)).shape == (2, channels, griddim, griddim)


@pytest.mark.parametrize("name, values, shape, params", [
    ("classifier", dict(image_size=64), (3,), 164_097),
    ("grid_simple", dict(griddim=7, image_size=256, num_classes=1), (3, 7, 7), 232_961),
    ("grid_cnn", dict(griddim=14, image_size=256, num_classes=1), (3, 14, 14), 233_089),
    ("yolo_face", dict(griddim=7, image_size=256, num_classes=1), (3, 7, 7, 5), 233_989),
    ("yolo_face_tiny", dict(griddim=7, image_size=256, num_classes=1), (3, 7, 7, 5), 233_989),
    ("retinanet", dict(image_size=256, num_classes=1), (3, 12276, 1), 295_277),
])
def test_each_rung_on_the_small_backbone(name, values, shape, params):
    """`model.backbone: small` swaps the seed network for the shared base: the outputs keep the
    seed model's layout (so loss, post-processing and evaluation are the rung's own), and the
    parameter counts pin the architecture."""
    detector = build_model(model_config(name, backbone="small", width=32, **values))
    size = values["image_size"]
    out = detector.model.eval()(torch.randn(3, 3, size, size))
    out = out[-1] if isinstance(out, tuple) else out
    assert out.shape == shape
    assert detector.num_parameters == params
    backbones = [m for m in detector.model.modules() if isinstance(m, SmallBackbone)]
    assert len(backbones) == 1 and n_params(backbones[0]) == 163_840


def test_backbone_key_is_checked_per_rung():
    for name, bad in (("grid_simple", "resnet18"), ("classifier", "vgg"), ("retinanet", "seed")):
        cfg = Config(model=model_config(name, backbone=bad))
        with pytest.raises(ConfigError, match="model.backbone"):
            validate(cfg)
    validate(Config(model=model_config("grid_simple", backbone="small")))
    validate(Config(model=model_config("retinanet", backbone="resnet18")))


def _legacy(state: dict, renames: dict[str, str]) -> dict:
    """A state dict as the models named their layers before the base was shared."""
    inverse = {new: old for old, new in renames.items()}
    old = {}
    for key, value in state.items():
        for new, name in sorted(inverse.items(), key=lambda item: -len(item[0])):
            if key.startswith(new + "."):
                key = name + key[len(new):]
                break
        old[key] = value
    return old


@pytest.mark.parametrize("make", [lambda: FaceSSD(8), lambda: CenterNet(8)])
def test_checkpoints_from_before_the_shared_backbone_still_load(make):
    torch.manual_seed(0)
    source = make().eval()
    for module in source.modules():  # non-trivial BatchNorm statistics, so a misplaced tensor shows
        if isinstance(module, torch.nn.BatchNorm2d):
            module.running_mean.uniform_(-1, 1)
            module.running_var.uniform_(0.5, 2)
    old = _legacy(source.state_dict(), LEGACY_KEYS)
    assert not any(k.startswith(("backbone.", "top_down.")) for k in old)  # really the old names
    target = make().eval()
    target.load_state_dict(old)  # strict: every old key found its new place
    x = torch.randn(1, 3, 128, 128)
    for a, b in zip(source(x), target(x)):
        torch.testing.assert_close(a, b)


def test_rename_legacy_keys_only_touches_its_prefix():
    state = {"net.stage1.0.weight": 1, "net.stage10.weight": 2, "other.stage1.weight": 3}
    rename_legacy_keys(state, "net.", {"stage1": "backbone.stem"})
    assert state == {"net.backbone.stem.0.weight": 1, "net.stage10.weight": 2, "other.stage1.weight": 3}


def test_same_backbone_configs_change_only_the_head():
    """The ladder's configs: one backbone (width 32), one schedule, one number of images, the same
    training photos' size for every detector; only the model (and, for the rungs that stretch
    photos to a fixed square, the crop's aspect) differ."""
    configs = {name: load_config(CONFIGS_DIR / f"{name}.yaml") for name in SAME}
    trains = {name: dataclasses.asdict(c.train) for name, c in configs.items()}
    assert all(t == trains["same_ssd"] for t in trains.values())
    assert trains["same_ssd"]["max_iters"] * trains["same_ssd"]["batch_size"] == 42_240
    detectors = [n for n in SAME if n != "same_classifier"]
    assert {configs[n].model.image_size for n in detectors} == {256}
    assert {configs[n].data.augment for n in detectors} == {"face", "ssd"}
    for name, cfg in configs.items():
        detector = build_model(cfg.model)
        backbones = [m for m in detector.model.modules() if isinstance(m, SmallBackbone)]
        assert len(backbones) == 1 and backbones[0].channels[0] == 32, name
        fixed = detector.input_policy == "fixed"
        if name != "same_classifier":  # photos stretched to a square train on stretched crops
            assert cfg.data.augment == ("ssd" if fixed else "face"), name


def _scenes(size: int, seeds) -> tuple[torch.Tensor, list[dict]]:
    mean, std = torch.tensor(IMAGENET_MEAN)[:, None, None], torch.tensor(IMAGENET_STD)[:, None, None]
    images, targets = [], []
    for seed in seeds:
        image, boxes = render_scene(np.random.default_rng(seed), size=size, min_faces=1, max_faces=2)
        images.append((image_to_tensor(image) - mean) / std)
        targets.append({"boxes": boxes / size, "labels": torch.zeros(len(boxes), dtype=torch.int64)})
    return torch.stack(images), targets


@pytest.mark.parametrize("name, values", [
    ("grid_simple", dict(griddim=7)),
    ("grid_simple", dict(griddim=14)),
    ("yolo_face", dict(griddim=7)),
])
def test_new_heads_learn_a_few_scenes(name, values):
    """Adam on four synthetic scenes: the rung's own loss falls by more than half."""
    torch.manual_seed(0)
    images, targets = _scenes(128, seeds=(1, 2, 3, 4))
    detector = build_model(model_config(name, backbone="small", width=16, image_size=128, num_classes=1, **values))
    losses = overfit(detector, images, targets, steps=40, lr=3e-3)
    assert losses[-1] < 0.5 * losses[0], losses[::8]


def test_recipe_benchmark_and_configs_name_the_same_rungs():
    """benchmarks/train_same_backbone.sh trains exactly the rungs the benchmark's table looks for,
    and each has its config."""
    import re
    from pathlib import Path

    from facedet.tools.benchmark import SAME_BACKBONE

    script = (Path(__file__).parents[1] / "benchmarks" / "train_same_backbone.sh").read_text()
    trained = set(re.search(r"^ALL=\(([^)]*)\)", script, re.M).group(1).split())
    assert {f"same_{r}" for r in trained} == {name for _, name in SAME_BACKBONE} == set(SAME)
    assert all((CONFIGS_DIR / f"{name}.yaml").is_file() for name in SAME)
