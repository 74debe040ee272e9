"""Rung 1: the seed's CNNClassifier, its loss and its post-processor."""

import pytest
import torch
from torchinfo import summary

from facedet.config import ClassifierConfig
from facedet.models.classifier import (
    ClassifierLoss,
    CNNClassifier,
    build_classifier,
    classifier_postprocess,
)


@pytest.fixture(scope="module")
def model512() -> CNNClassifier:
    torch.manual_seed(0)
    return CNNClassifier(embedding_dim=512).eval()  # 67M parameters: built once per module


def test_torchinfo_matches_the_seed_table(model512):
    stats = summary(model512, input_size=(1, 3, 128, 128), verbose=0)
    assert stats.total_params == 67_203_137
    layers = [(type(l.module).__name__, l.output_size, l.num_params) for l in stats.summary_list[1:]]
    assert layers == [
        ("Conv2d", [1, 32, 128, 128], 896),
        ("Conv2d", [1, 64, 128, 128], 18_496),
        ("Conv2d", [1, 128, 64, 64], 73_856),
        ("Linear", [1, 512], 67_109_376),
        ("Linear", [1, 1], 513),
    ]


def test_32d_variant_parameter_count():
    # only the embedding layer changes: 131072*32 + 32 and 32 + 1
    assert sum(p.numel() for p in CNNClassifier(embedding_dim=32).parameters()) == 93_248 + 4_194_336 + 33


def test_forward_embed_and_feature_map_shapes(model512):
    images = torch.randn(2, 3, 128, 128)
    with torch.no_grad():
        logits = model512(images)
        maps = model512.feature_maps(images)
        embedding = model512.embed(images)
    assert logits.shape == (2,)
    assert embedding.shape == (2, 512) and (embedding >= 0).all()  # after ReLU
    assert {k: tuple(v.shape) for k, v in maps.items()} == {
        "conv1": (2, 32, 128, 128), "conv2": (2, 64, 128, 128), "conv3": (2, 128, 64, 64),
        "embedding": (2, 512), "logit": (2,)}
    torch.testing.assert_close(maps["logit"], logits)
    # one image without a batch dimension is accepted by feature_maps
    assert model512.feature_maps(images[0])["conv1"].shape == (1, 32, 128, 128)


def test_loss_is_bce_with_logits_and_stays_finite_for_huge_logits():
    criterion = ClassifierLoss()
    targets = [{"label": torch.tensor(1.0)}, {"label": torch.tensor(0.0)}]
    logits = torch.tensor([2.0, -1.0])
    expected = -(torch.log(torch.sigmoid(torch.tensor(2.0))) + torch.log(1 - torch.sigmoid(torch.tensor(-1.0)))) / 2
    torch.testing.assert_close(criterion(logits, targets)["bce"], expected)
    # sigmoid(-200) rounds to 0 in float32; BCE on probabilities would give log(0) = -inf
    assert torch.isfinite(criterion(torch.tensor([-200.0, 200.0]), targets)["bce"])


def test_postprocess_gives_probabilities_and_ignores_detector_keywords():
    probs = classifier_postprocess(torch.tensor([0.0, 100.0, -100.0]), min_score=0.5, nms_iou=0.4, top_k=10)
    torch.testing.assert_close(probs, torch.tensor([0.5, 1.0, 0.0]))


def test_builder_returns_a_classification_detector():
    detector = build_classifier(ClassifierConfig(embedding_dim=32, image_size=128))
    assert detector.task == "classification"
    assert isinstance(detector.model, CNNClassifier) and detector.model.embedding_dim == 32
    assert isinstance(detector.criterion, ClassifierLoss)


def test_overfits_one_batch():
    # Same layers at 64 px (flatten 128*16*16) and the 32-d embedding: the 128-px model
    # overfits just as well but takes ~10x longer on a CPU.
    torch.manual_seed(0)
    model = CNNClassifier(embedding_dim=32, image_size=64)
    criterion = ClassifierLoss()
    images = torch.randn(8, 3, 64, 64)
    targets = [{"label": torch.tensor(float(i % 2))} for i in range(8)]
    optimizer = torch.optim.Adam(model.parameters(), lr=3e-4)
    losses = []
    for _ in range(30):
        loss = criterion(model(images), targets)["bce"]
        optimizer.zero_grad()
        loss.backward()
        optimizer.step()
        losses.append(loss.item())
    assert losses[-1] < losses[0] / 5
    assert ((classifier_postprocess(model(images)) > 0.5).float() == torch.tensor([0.0, 1.0] * 4)).all()


# --------------------------------------------------------------------------- teaching figures


@pytest.fixture(scope="module")
def model32() -> CNNClassifier:
    torch.manual_seed(0)
    return CNNClassifier(embedding_dim=32).eval()


def test_embedding_strip_groups_columns_by_outcome(model32, tmp_path):
    from facedet.tools.figures.classifier import plot_embedding_strip

    images = torch.randn(6, 3, 128, 128)
    labels = torch.tensor([1, 1, 1, 0, 0, 0])
    # threshold 0: every crop is called a face -> 3 found, 3 false positives
    counts = plot_embedding_strip(model32, images, labels, tmp_path / "strip.png", threshold=0.0)
    assert counts == {"face found": 3, "false positive": 3, "no face": 0, "face missed": 0}
    counts = plot_embedding_strip(model32, images, labels, tmp_path / "strip.png", threshold=1.01)
    assert counts == {"face found": 0, "false positive": 0, "no face": 3, "face missed": 3}
    assert (tmp_path / "strip.png").stat().st_size > 1000


def test_feature_map_and_framing_figures(model32, tmp_path):
    from facedet.tools.figures.classifier import plot_feature_maps, plot_framing

    prob = plot_feature_maps(model32, torch.randn(3, 128, 128), tmp_path / "maps.png", channels=4)
    assert 0 <= prob <= 1 and (tmp_path / "maps.png").is_file()
    photo = torch.randint(0, 256, (3, 120, 160), dtype=torch.uint8)
    probs = plot_framing({"a": model32, "b": model32}, photo, [60, 40, 100, 90], tmp_path / "framing.png",
                         factors=(1.0, 1.6))
    assert probs.shape == (2, 2) and torch.equal(probs[0], probs[1])
    assert (tmp_path / "framing.png").is_file()


def test_figures_command_help(capsys):
    from facedet.tools.figures.all import main

    with pytest.raises(SystemExit) as exit_info:
        main(["--help"])
    assert exit_info.value.code == 0
    text = " ".join(capsys.readouterr().out.split())  # argparse wraps lines anywhere
    assert "--checkpoint" in text and "--data" in text and "--nonfaces" in text
    assert "classifier (classifier, classifier32, classifier_tight, classifier_large)" in text


def test_figures_command_end_to_end(tmp_path):
    """Checkpoint + tiny YOLO data set -> every figure file (untrained weights: shapes only)."""
    import numpy as np
    from PIL import Image

    from facedet.config import Config, model_config, to_dict
    from facedet.files import atomic_save
    from facedet.tools.figures.all import main

    cfg = Config(model=model_config("classifier", image_size=128, embedding_dim=32))
    torch.manual_seed(0)
    model = CNNClassifier(embedding_dim=32)
    atomic_save({"model": model.state_dict(), "config": to_dict(cfg), "epoch": 0}, tmp_path / "ck.pt")
    (tmp_path / "data" / "images" / "val").mkdir(parents=True)
    (tmp_path / "data" / "labels" / "val").mkdir(parents=True)
    rng = np.random.default_rng(0)
    for i in range(3):
        Image.fromarray(rng.integers(0, 255, (120, 160, 3), dtype=np.uint8)).save(tmp_path / "data" / "images" / "val" / f"{i}.jpg")
        (tmp_path / "data" / "labels" / "val" / f"{i}.txt").write_text("0 0.5 0.5 0.3 0.4\n")
    out = tmp_path / "figs"
    assert main(["--only", "classifier", "--checkpoint", f"classifier={tmp_path / 'ck.pt'}", "--runs",
                 str(tmp_path / "no_runs"), "--data", str(tmp_path / "data"), "--count", "1", "--out", str(out),
                 "--device", "cpu"]) == 0
    assert sorted(p.name for p in out.iterdir()) == [
        "embeddings_32.png", "face_0_featuremaps.png", "face_1_featuremaps.png", "framing.png",
        "nonface_0_featuremaps.png", "nonface_1_featuremaps.png", "sliding_window_0.png"]


def test_small_classifier_averages_its_last_map_before_the_linear_layer():
    """Global AVERAGE pooling: the logit is fc(mean over the cells of the stride-32 map). The
    backbone's last map is replaced by a known one whose cells differ (max pooling would not agree)."""
    from facedet.models.classifier import SmallClassifier

    torch.manual_seed(0)
    model = SmallClassifier(width=8).eval()
    f32 = torch.randn(2, 64, 2, 2)  # (B, 8w, S/32, S/32) of a 64 px crop
    model.backbone.register_forward_hook(lambda module, args, out: [*out[:-1], f32])
    with torch.no_grad():
        logits = model(torch.randn(2, 3, 64, 64))
        expected = f32.mean(dim=(2, 3)) @ model.fc.weight[0] + model.fc.bias[0]  # (2,)
        by_max = f32.amax(dim=(2, 3)) @ model.fc.weight[0] + model.fc.bias[0]
    torch.testing.assert_close(logits, expected)
    assert not torch.allclose(logits, by_max, atol=1e-3)
