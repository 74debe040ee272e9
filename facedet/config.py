"""Typed configuration: every setting in one place, with its type, default and meaning.

A YAML file holds only what differs from these defaults; the command line overrides
either as `section.key=value` (e.g. `train.epochs=3 data.root=/data/faces`).
Unknown keys and wrong types are refused with a message naming the key and the valid ones.

    cfg = load_config("yolo_face.yaml", ["train.epochs=3"])
    cfg.train.epochs  # 3
"""
from __future__ import annotations

import dataclasses
import difflib
import functools
import typing
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import yaml

from facedet.errors import ConfigError

# The shipped configs, package data (facedet/configs/): `--config yolo_face.yaml` falls back to them,
# from any folder and in a wheel install as well as an editable one.
CONFIGS_DIR = Path(__file__).resolve().parent / "configs"


@dataclass
class ModelConfig:
    """The keys every rung has. Each rung's own dataclass below adds the keys it reads;
    `model.name` selects which one a config holds (see MODEL_CONFIGS)."""

    name: str = "yolo_face_tiny"  # a key of MODEL_CONFIGS (and of facedet.models.MODELS)
    num_classes: int = 0  # object classes (background never counted); 0 = as many as the data has
    image_size: int = 224  # square network input (the training crop of face_ssd), pixels
    # start from trained weights (facedet/init_weights.py): a shipped detector's name (facedet.list_detectors()),
    # a checkpoint path, or "torchvision" (ImageNet ResNets); every tensor whose name and shape fit; "" = random
    init: str = ""


@dataclass
class ClassifierConfig(ModelConfig):
    """Rung 1 (and 2): the seed's CNNClassifier, and how a checkpoint of it scans a photo."""

    name: str = "classifier"
    image_size: int = 128  # the seed's crop
    embedding_dim: int = 512  # the seed's embedding layer; 32 for its small variant
    backbone: str = "seed"  # seed (the seed's CNNClassifier) | small (models/backbone.py, the same-backbone ladder)
    width: int = 32  # backbone small: channels at stride 4 (SmallBackbone)
    # sliding window (rung 2)
    window_sizes: list[int] = field(default_factory=lambda: [48, 64, 96, 128, 160, 224, 320])  # pixels
    window_stride: float = 0.25  # step between windows, as a fraction of the window side
    window_image_side: int = 512  # the photo's longer side is resized to this before scanning


@dataclass
class GridConfig(ModelConfig):
    """Rung 3: grid_simple (the seed's GridSimpleCNNModel) and grid_cnn."""

    name: str = "grid_simple"
    griddim: int = 7  # S: the output grid is S x S cells
    backbone: str = "seed"  # seed (the stack model.name names) | small (models/backbone.py, the same-backbone ladder)
    width: int = 32  # backbone small: channels at stride 4 (SmallBackbone)


@dataclass
class YOLOFaceConfig(ModelConfig):
    """Rung 4: the seed's YOLOFaceCNN, with YOLOv1's options."""

    name: str = "yolo_face"
    griddim: int = 7  # S: the output grid is S x S cells
    boxes_per_cell: int = 1  # B (YOLOv1 uses 2)
    cell_relative: bool = False  # centres relative to the cell (YOLOv1) instead of the image (seed)
    lambda_coord: float = 5.0  # YOLOv1's weight of the coordinate loss
    lambda_noobj: float = 0.5  # YOLOv1's weight of the no-object confidence loss
    # seed (YOLOFaceCNN; yolo_face_tiny: its own strided stack) | small (models/backbone.py, the same-backbone ladder)
    backbone: str = "seed"
    width: int = 32  # backbone small: channels at stride 4 (SmallBackbone); yolo_face_tiny: its first stage


@dataclass
class YOLOFaceTinyConfig(YOLOFaceConfig):
    """Rung 4, compact: the CPU quick start's model."""

    name: str = "yolo_face_tiny"


@dataclass
class SSD300Config(ModelConfig):
    """Rung 5: SSD300 (VGG16 base, 8732 priors, MultiBox loss)."""

    name: str = "ssd300"
    image_size: int = 300  # SSD300's priors are laid out for 300 x 300
    pretrained: str = ""  # path to a torchvision vgg16-*.pth, "torchvision" to download, "" = scratch
    batch_norm: bool = False  # BatchNorm in the VGG base (helps training from scratch)
    neg_pos_ratio: float = 3.0  # hard negative mining: negatives kept per positive
    loss: str = "ce"  # "ce" (softmax with background) or "focal" (sigmoid, no background column)
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0


@dataclass
class FastaiSSDConfig(ModelConfig):
    """Rung 5, the fast.ai variant: a multi-box head on a 7x7 backbone map."""

    name: str = "fastai_ssd"
    width: int = 32  # channels of the backbone's first stage
    loss: str = "ce"  # "focal" = focal loss; otherwise the seed's binary cross-entropy
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0


@dataclass
class FaceSSDConfig(ModelConfig):
    """Rung 5 made small: the shipped face detector."""

    name: str = "face_ssd"
    image_size: int = 320  # the square training crop; inference runs on photos of any size
    width: int = 32  # channels at stride 4; the four prediction maps have 2w, 4w, 8w, 8w
    fpn: bool = True  # top-down path from the stride-32 map into the stride-16 and stride-8 maps
    large_priors: bool = False  # + 384 and 512 px priors at stride 64: close-ups, faces up to the whole input
    match_iou: float = 0.35  # a prior is positive when its IoU with a face is at least this
    neg_pos_ratio: float = 3.0  # hard negative mining: negatives kept per positive
    loss: str = "ce"  # "ce" (softmax with background) or "focal"
    focal_alpha: float = 0.25
    focal_gamma: float = 2.0


@dataclass
class RetinaNetConfig(ModelConfig):
    """Rung 6: RetinaNet (feature pyramid + focal loss). Defaults are the paper's numbers where
    they cost nothing on a CPU (levels P3-P7, 9 anchors, IoU 0.5 / 0.4, alpha 0.25, gamma 2,
    prior 0.01) and a small network where they would (the paper: ResNet-50, 256 channels)."""

    name: str = "retinanet"
    image_size: int = 320  # the square training crop; inference runs on photos of any size
    backbone: str = "small"  # small (MobileNet-style, CPU) | resnet18 | resnet50 (need torchvision)
    width: int = 32  # small backbone: channels at stride 4; C3, C4, C5 have 2w, 4w, 8w
    pretrained: str = ""  # resnet only: path to a torchvision resnet*.pth state dict; "" = from scratch
    min_level: int = 3  # the pyramid's finest level P3 (stride 2^3 = 8)
    max_level: int = 7  # its coarsest, P7 (stride 128); P6 and P7 come from stride-2 convs on C5
    top_down: bool = True  # FPN's top-down path; false = each level sees only its own backbone stage
    fpn_channels: int = 64  # channels of every pyramid level and of both subnets (paper 256)
    head_depth: int = 4  # 3x3 conv layers in each subnet before its output conv (paper 4)
    separable: bool = True  # depthwise-separable 3x3 convs in FPN and subnets (CPU); false = paper's plain 3x3
    head_norm: bool = True  # GroupNorm in the subnets (later RetinaNets, FCOS); false = paper's conv + ReLU
    # one base side (pixels) per level, min_level first; the paper's 32..512 are 4x each stride
    anchor_sizes: list[float] = field(default_factory=lambda: [32.0, 64.0, 128.0, 256.0, 512.0])
    scales_per_octave: int = 3  # anchor scales 2^(i/3), i = 0, 1, 2: sides x1, x1.26, x1.59
    anchor_ratios: list[float] = field(default_factory=lambda: [0.5, 1.0, 2.0])  # h / w of each anchor shape
    fg_iou: float = 0.5  # an anchor is positive when its best IoU with an object is at least this
    bg_iou: float = 0.4  # negative below this; in between it is ignored (no classification loss)
    low_quality_matches: bool = True  # each object also claims its best anchor(s), whatever the IoU
    focal_alpha: float = 0.25  # weight of the positives (1 - alpha for the negatives)
    focal_gamma: float = 2.0  # focusing: a well-classified anchor's loss shrinks by (1 - p_t)^gamma
    prior_prob: float = 0.01  # every class sigmoid starts near this (bias init of the last cls conv)
    box_loss: str = "smooth_l1"  # smooth_l1 (on encoded offsets, the paper) | giou (1 - GIoU of decoded boxes)
    box_weight: float = 1.0  # lambda: L = L_cls + lambda L_box
    pre_nms_top_k: int = 1000  # decoding: best candidates kept per level before NMS
    max_size: int = 640  # inference: photos whose longer side exceeds this are shrunk to it (0 = never)


@dataclass
class CenterNetConfig(ModelConfig):
    """Rung 7: CenterNet, objects as points (no anchors, no NMS)."""

    name: str = "centernet"
    image_size: int = 320  # the square training crop (a multiple of 32); inference runs at any size
    width: int = 32  # channels at stride 4; the base has 2w, 4w, 8w at strides 8, 16, 32
    min_iou: float = 0.7  # Gaussian radius: a peak this far off still gives a box of this IoU
    size_weight: float = 0.1  # the paper's lambda_size (sizes are in stride-4 cells, up to ~80)
    offset_weight: float = 1.0  # the paper's lambda_off
    focal_alpha: float = 2.0  # the heatmap focal loss's exponent on p (CornerNet)
    focal_beta: float = 4.0  # its penalty reduction (1 - Y)^beta near a centre
    peaks: int = 100  # K: the top-K heatmap peaks decoded per image (at most K objects)


@dataclass
class FasterRCNNConfig(ModelConfig):
    """Rung 8: Faster R-CNN (RPN + RoI head), approximate joint training. The paper's thresholds
    and sample sizes; a small network (SmallBackbone, 64-channel maps, 128-wide FC layers; the
    paper: VGG16, 512 channels, 4096-wide FC layers) so that it trains on a CPU."""

    name: str = "faster_rcnn"
    image_size: int = 320  # the square training crop (a multiple of 32); inference runs at any size
    width: int = 32  # SmallBackbone: channels at stride 4; strides 8, 16, 32 have 2w, 4w, 8w
    fpn: bool = False  # false: one stride-16 map (the paper); true: TopDown pyramid, strides 8, 16, 32
    channels: int = 64  # every map the RPN and the RoI head read is projected (1x1) to this width
    # anchor sides in pixels; with fpn they are split evenly over the 3 levels, finest first
    anchor_sizes: list[float] = field(default_factory=lambda: [16.0, 32.0, 64.0, 128.0, 256.0])
    anchor_ratios: list[float] = field(default_factory=lambda: [1.2])  # h / w; faces: one shape, the paper 0.5, 1, 2
    rpn_positive_iou: float = 0.7  # an anchor is positive at IoU >= this (and each box's best anchor)
    rpn_negative_iou: float = 0.3  # negative below this; in between it is ignored
    rpn_batch: int = 256  # anchors sampled per photo for the RPN loss
    rpn_positive_fraction: float = 0.5  # at most this share of them positive (1:1)
    pre_nms_top_n: int = 1000  # proposals: best-scoring anchors kept per map before NMS
    proposal_nms_iou: float = 0.7  # NMS among the proposals
    post_nms_top_n: int = 300  # proposals kept per photo after NMS (seed 000's ~300)
    roi_batch: int = 64  # RoIs sampled per photo for the second stage's loss
    roi_foreground_fraction: float = 0.25  # at most this share of them foreground
    roi_foreground_iou: float = 0.5  # a RoI is foreground at IoU >= this
    roi_background_iou: float = 0.1  # background RoIs have IoU in [this, roi_foreground_iou)
    roi_op: str = "align"  # align (roi_align, no quantisation) | pool (Fast R-CNN's roi_pool)
    roi_size: int = 7  # the pooled block is roi_size x roi_size
    hidden: int = 128  # width of the two FC layers of the RoI head
    box_weight: float = 1.0  # lambda of both stages: L = L_cls + lambda L_box
    max_size: int = 640  # inference: photos whose longer side exceeds this are shrunk to it (0 = never)


@dataclass
class ViolaJonesConfig(ModelConfig):
    """Rung 0: Viola-Jones (seed 001), Haar features + AdaBoost + cascade, trained by facedet/boosting.py."""

    name: str = "viola_jones"
    image_size: int = 24  # the paper's detection window (and training crop) side, pixels
    # Haar features start every this many pixels and their cells grow by it: 3 gives 2,920
    # features (2: 12,372; 1: all 162,336); each AdaBoost round sweeps all of them over every example
    feature_stride: int = 3
    stages: int = 15  # the most cascade stages (training also stops when the negatives run out)
    detection_rate: float = 0.995  # each stage keeps at least this share of its training faces
    false_positive_rate: float = 0.5  # each stage lets through at most this share of its non-faces
    max_stumps_per_stage: int = 50  # AdaBoost rounds a stage may take to reach false_positive_rate
    max_faces: int = 1500  # face crops used (mirrored copies added on top); 0 = all
    negatives: int = 0  # non-face windows per stage; 0 = as many as the face crops
    negatives_per_photo: int = 40  # at most this many of a stage's negatives from one face-free photo
    flip: bool = True  # add every face crop mirrored left-right
    time_limit_min: float = 0.0  # start no new stage after this many minutes of training; 0 = no limit
    scale_factor: float = 1.25  # the scan's window grows by this per level (the paper's 1.25)
    scan_step: float = 1.5  # window step in pixels at the 24-px level, scaled with the window (paper: 1.0-1.5)
    min_window: int = 24  # smallest window scanned, pixels of the photo
    max_window: int = 0  # largest window scanned; 0 = the photo's shorter side


# model.name -> the dataclass of that rung's keys
MODEL_CONFIGS: dict[str, type[ModelConfig]] = {
    "classifier": ClassifierConfig,
    "grid_simple": GridConfig,
    "grid_cnn": GridConfig,
    "yolo_face": YOLOFaceConfig,
    "yolo_face_tiny": YOLOFaceTinyConfig,
    "ssd300": SSD300Config,
    "fastai_ssd": FastaiSSDConfig,
    "face_ssd": FaceSSDConfig,
    "retinanet": RetinaNetConfig,
    "centernet": CenterNetConfig,
    "faster_rcnn": FasterRCNNConfig,
    "viola_jones": ViolaJonesConfig,
}


def model_config(name: str, **values: Any) -> ModelConfig:
    """The config of rung `name` with its defaults, then `values` (checked like a YAML file's)."""
    return _build_model({"name": name, **values}, "model.", "arguments")


@dataclass
class DataConfig:
    root: str = ""  # dataset folder; "" = the embedded synthetic face dataset
    format: str = "auto"  # auto | yolo | voc | coco | wider | fddb
    train_split: str = "train"
    val_split: str = "val"  # also found as valid/ or validation/ (Roboflow writes valid/)
    # Share of the training images held out for validation when the data has no val split
    # (LabelImg's train/ + test/, one folder of labelled photos). Which images: fixed by
    # their file names, not by train.seed, so every run validates on the same ones.
    val_fraction: float = 0.1
    classes: str = ""  # "" = the data's own names; "face" = every class is a face; or "RBC,WBC,Platelets"
    augment: str = "flip"  # none | flip | ssd (SPEC section 5) | face (square crops for small faces)
    # "face" crops: 0 keeps a face whose centre is in the crop, clipped to it (RetinaFace's rule);
    # v > 0 keeps a face with at least v of its area in the crop, whole, and makes the rest background
    face_min_visible: float = 0.0
    face_close_up: float = 0.0  # "face" crops: the share framed around one face, filling 0.5-1.4 of the crop
    skip_bad_images: bool = False  # skip unreadable images (counted) instead of stopping
    num_workers: int = 2
    persistent_workers: bool = True  # training loader keeps its workers between epochs (resume stays exact)
    synthetic_train: int = 600  # images generated for the embedded dataset
    synthetic_val: int = 150
    # classifier rung: face crops and negatives cut from detection data
    nonfaces: str = ""  # folder of face-free images for more negatives
    framing: str = "tight"  # tight | large | both: how much context a face crop keeps
    large_factor: float = 1.6  # "large" framing grows the box by this factor
    neg_ratio: float = 1.0  # negative crops per positive
    min_face_size: int = 24  # faces smaller than this (pixels) make no crop
    cache_dir: str = ""  # where crops are cached; "" = $FACEDET_CACHE or ~/.cache/facedet


@dataclass
class TrainConfig:
    epochs: int = 10
    max_iters: int = 0  # > 0: stop after this many iterations (the SSD recipe counts iterations)
    # > 0: the run's length from a time budget of this many minutes, measured on its first steps
    # (facedet/time_budget.py); it replaces epochs and max_iters
    minutes: float = 0.0
    batch_size: int = 16
    optimizer: str = "adamw"  # sgd | adam | adamw
    lr: float = 1e-3
    momentum: float = 0.9  # SGD only
    weight_decay: float = 5e-4
    bias_lr_factor: float = 1.0  # the SSD paper doubles the learning rate of biases (2.0)
    schedule: str = "cosine"  # constant | step | multistep | cosine
    milestones: list[int] = field(default_factory=list)  # iterations where multistep divides the lr
    step_size: int = 0  # iterations between decays for "step"
    gamma: float = 0.1  # lr factor at each decay
    warmup_iters: int = 0  # linear warm-up from lr/100, over at most a tenth of the run (facedet/optim.py)
    grad_clip: float = 0.0  # max gradient norm; 0 = off
    amp: bool = True  # mixed precision, used only on CUDA
    # NHWC memory layout for images and weights, used only on CUDA: tensor-core convolutions
    # run in NHWC, so NCHW costs a transpose around each of them; on CPU it rarely helps
    channels_last: bool = True
    compile: bool = False  # torch.compile the model: minutes of compiling first, then faster steps
    device: str = "auto"  # auto | cpu | cuda | cuda:1
    seed: int = 0
    val_every: int = 1  # validate every N epochs; 0 = never
    resume: str = ""  # checkpoint to continue from (exactly: a mid-epoch last.pt resumes at its next batch)
    # False: best.pt / last.pt hold the weights and the schedule but not the optimizer's state
    # (Adam keeps two moments per weight: its checkpoints are 3x the weights). Resuming from such
    # a checkpoint restarts the moments, so the run is no longer exact.
    save_optimizer: bool = True
    # detectors: at the end, calibrate best.pt's min score on the validation split (best F1,
    # facedet/calibrate.py) and store it there, for facedet.infer and facedet.load
    calibrate: bool = True


@dataclass
class EvalConfig:
    min_score: float = 0.01  # the paper's evaluation settings
    nms_iou: float = 0.45
    top_k: int = 200
    iou_thresholds: list[float] = field(default_factory=lambda: [0.5])  # VOC AP at each; the first is the headline
    use_07_metric: bool = False  # VOC2007 11-point AP instead of all-point
    voc_rule: str = "greedy"  # greedy (best unclaimed box at IoU >= t) | devkit (the VOC devkit's: best box only, IoU > t)
    max_images: int = 0  # evaluate on the first N validation images; 0 = all


@dataclass
class Config:
    name: str = ""  # run name: runs/<name>/; "" = the config file's stem
    out_dir: str = "runs"
    model: ModelConfig = field(default_factory=YOLOFaceTinyConfig)  # the class named by model.name
    data: DataConfig = field(default_factory=DataConfig)
    train: TrainConfig = field(default_factory=TrainConfig)
    eval: EvalConfig = field(default_factory=EvalConfig)


# ----------------------------------------------------------------------------- loading


def resolve_config_path(name: str | Path) -> Path:
    """A path as given, else the same name among the shipped configs (facedet/configs/)."""
    path = Path(name)
    if path.is_file():
        return path
    for candidate in (CONFIGS_DIR / path, CONFIGS_DIR / path.name):
        if candidate.is_file():
            return candidate
    known = ", ".join(sorted(p.name for p in CONFIGS_DIR.glob("*.yaml")))
    raise ConfigError(f"config file '{name}' not found here nor in {CONFIGS_DIR} (known: {known})")


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> Config:
    """Defaults, then the YAML file (if any), then `section.key=value` overrides."""
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        file = resolve_config_path(path)
        source = str(file)
        try:
            data = yaml.safe_load(file.read_text(encoding="utf-8")) or {}
        except UnicodeDecodeError:
            raise ConfigError(f"{file}: not a UTF-8 text file (a YAML config was expected)") from None
        except yaml.YAMLError as err:
            first_line = str(err).splitlines()[0]
            raise ConfigError(f"{file}: not valid YAML ({first_line})") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{file}: expected a mapping of sections, got {type(data).__name__}")
        data.setdefault("name", file.stem)
    cfg = from_dict(data, source)
    for item in overrides or []:
        apply_override(cfg, item)
    validate(cfg)
    return cfg


# Settings that take one of a few words; model.name is checked against MODELS when built.
CHOICES = {
    "data.format": ("auto", "yolo", "voc", "coco", "wider", "fddb"),
    "data.augment": ("none", "flip", "ssd", "face"),
    "data.framing": ("tight", "large", "both"),
    "train.optimizer": ("sgd", "adam", "adamw"),
    "train.schedule": ("constant", "step", "multistep", "cosine"),
    "model.loss": ("ce", "focal"),
    "model.box_loss": ("smooth_l1", "giou"),
    "eval.voc_rule": ("greedy", "devkit"),
    "model.roi_op": ("align", "pool"),
}


def validate(cfg: Config) -> None:
    """Refuse values no run could use, naming the key."""
    for key, allowed in CHOICES.items():
        section, name = key.split(".")
        if not hasattr(getattr(cfg, section), name):  # a key of another rung
            continue
        value = getattr(getattr(cfg, section), name)
        if value not in allowed:
            raise ConfigError(f"'{key}' is {value!r}; expected one of {', '.join(allowed)}")
    if hasattr(cfg.model, "backbone"):
        # RetinaNet's large backbones are torchvision ResNets; the lower rungs swap their seed network
        # for the small shared one (facedet/models/backbone.py)
        allowed = ("small", "resnet18", "resnet50") if isinstance(cfg.model, RetinaNetConfig) else ("seed", "small")
        if cfg.model.backbone not in allowed:
            raise ConfigError(f"'model.backbone' is {cfg.model.backbone!r}; expected one of {', '.join(allowed)}")
    if cfg.model.num_classes < 0:
        raise ConfigError(f"'model.num_classes' is {cfg.model.num_classes}; expected 0 (from the data) or more")
    positive = ["model.image_size", "model.griddim", "model.boxes_per_cell",
                "train.batch_size", "train.lr"]
    for key in positive:
        section, name = key.split(".")
        if not hasattr(getattr(cfg, section), name):  # a key of another rung
            continue
        value = getattr(getattr(cfg, section), name)
        if value <= 0:
            raise ConfigError(f"'{key}' is {value!r}; expected a positive number")
    if not 0 <= cfg.data.face_min_visible <= 1:
        raise ConfigError(f"'data.face_min_visible' is {cfg.data.face_min_visible!r}; expected a share between 0 "
                          "(the face's centre in the crop) and 1 (the whole face)")
    if not 0 <= cfg.data.face_close_up <= 1:
        raise ConfigError(f"'data.face_close_up' is {cfg.data.face_close_up!r}; expected a share between 0 and 1")
    if not 0 < cfg.data.val_fraction < 1:
        raise ConfigError(f"'data.val_fraction' is {cfg.data.val_fraction!r}; expected a fraction between 0 and 1 "
                          "(exclusive), e.g. 0.1 to hold out 10% of the images for validation")
    if isinstance(cfg.model, ViolaJonesConfig):
        _validate_viola_jones(cfg.model)
    if cfg.train.minutes < 0:
        raise ConfigError(f"'train.minutes' is {cfg.train.minutes!r}; expected 0 (train.epochs sets the length) "
                          "or a number of minutes, e.g. train.minutes=9")
    if cfg.train.schedule == "step" and cfg.train.step_size <= 0:
        raise ConfigError("'train.schedule' is 'step' but 'train.step_size' is not set (> 0 iterations)")


def _validate_viola_jones(m: ViolaJonesConfig) -> None:
    """Refuse cascade settings no training or scan could use, naming the key."""
    rates = {"detection_rate": m.detection_rate, "false_positive_rate": m.false_positive_rate}
    for key, value in rates.items():
        if not 0.0 < value < 1.0:
            raise ConfigError(f"'model.{key}' is {value!r}; expected a rate strictly between 0 and 1")
    at_least_one = {"feature_stride": m.feature_stride, "stages": m.stages,
                    "max_stumps_per_stage": m.max_stumps_per_stage, "negatives_per_photo": m.negatives_per_photo}
    for key, value in at_least_one.items():
        if value < 1:
            raise ConfigError(f"'model.{key}' is {value!r}; expected a whole number >= 1")
    for key, value in {"max_faces": m.max_faces, "negatives": m.negatives, "max_window": m.max_window,
                       "time_limit_min": m.time_limit_min}.items():
        if value < 0:
            raise ConfigError(f"'model.{key}' is {value!r}; expected 0 (no limit / automatic) or more")
    if m.image_size < 8:
        raise ConfigError(f"'model.image_size' is {m.image_size}; the Viola-Jones window needs >= 8 pixels (paper: 24)")
    if m.scale_factor <= 1.0:
        raise ConfigError(f"'model.scale_factor' is {m.scale_factor!r}; expected > 1 (the paper's 1.25)")
    if m.scan_step <= 0:
        raise ConfigError(f"'model.scan_step' is {m.scan_step!r}; expected a positive number of pixels")
    if m.min_window < m.image_size:
        raise ConfigError(f"'model.min_window' is {m.min_window}; expected at least model.image_size "
                          f"({m.image_size}): features are scaled up, never down")


def from_dict(data: dict[str, Any], source: str = "config", lenient_model: bool = False) -> Config:
    """A Config from plain data; `lenient_model` drops model keys the rung does not use (the
    flat model sections that older checkpoints store) instead of refusing them."""
    if lenient_model and isinstance(data.get("model"), dict):
        data = {**data, "model": dataclasses.asdict(_build_model(data["model"], "model.", source, lenient=True))}
    return _build(Config, data, prefix="", source=source)


def to_dict(cfg: Any) -> dict[str, Any]:
    """Plain dict of builtins: safe for YAML and for `torch.load(weights_only=True)`."""
    return dataclasses.asdict(cfg)


def save_config(cfg: Config, path: str | Path) -> None:
    Path(path).write_text(yaml.safe_dump(to_dict(cfg), sort_keys=False))


def apply_override(cfg: Config, item: str) -> None:
    """Apply one `section.key=value` (the value is parsed as YAML: 3, 1e-3, true, [1, 2])."""
    key, sep, raw = item.partition("=")
    if not sep or not key:
        raise ConfigError(f"override '{item}' is not of the form section.key=value")
    parts = key.strip().split(".")
    target = cfg
    for depth, part in enumerate(parts):
        path = ".".join(parts[: depth + 1])
        fields = {f.name: f for f in dataclasses.fields(target)}
        if part not in fields:
            rung = target.name if isinstance(target, ModelConfig) else ""
            raise ConfigError(_unknown_key(path, fields, "command line", rung))
        if depth == len(parts) - 1:
            if dataclasses.is_dataclass(getattr(target, part)):
                raise ConfigError(f"override '{item}': '{path}' is a section; set one of its keys")
            try:
                value = yaml.safe_load(raw)
            except yaml.YAMLError:
                value = raw
            hint = typing.get_type_hints(type(target))[part]
            value = _check(value, hint, path, "command line")
            if path == "model.name" and value != target.name:  # another rung: its own dataclass
                new = _model_class(value, "command line")
                kept = {f.name: getattr(target, f.name) for f in dataclasses.fields(new)
                        if f.name != "name" and hasattr(target, f.name)}
                cfg.model = new(name=value, **kept)
                return
            setattr(target, part, value)
        else:
            target = getattr(target, part)
            if not dataclasses.is_dataclass(target):
                raise ConfigError(f"override '{item}': '{path}' is a value, not a section")


def _build(cls: type, data: dict[str, Any], prefix: str, source: str) -> Any:
    fields = {f.name: f for f in dataclasses.fields(cls)}
    hints = typing.get_type_hints(cls)
    kwargs = {}
    rung = data.get("name", cls.name) if issubclass(cls, ModelConfig) else ""
    for key, value in data.items():
        path = prefix + str(key)
        if key not in fields:
            raise ConfigError(_unknown_key(path, fields, source, rung))
        hint = hints[key]
        if dataclasses.is_dataclass(hint):
            if not isinstance(value, dict):
                raise ConfigError(f"{source}: '{path}' must be a section (mapping), got {value!r}")
            build = _build_model if hint is ModelConfig else functools.partial(_build, hint)
            kwargs[key] = build(value, path + ".", source)
        else:
            kwargs[key] = _check(value, hint, path, source)
    return cls(**kwargs)


def _model_class(name: Any, source: str) -> type[ModelConfig]:
    if name not in MODEL_CONFIGS:
        raise ConfigError(f"{source}: 'model.name' is {name!r}; expected one of {', '.join(MODEL_CONFIGS)}")
    return MODEL_CONFIGS[name]


def _build_model(data: dict[str, Any], prefix: str, source: str, lenient: bool = False) -> ModelConfig:
    """The model section as the dataclass of the rung its `name` selects. A key that rung does
    not use is refused with the keys it does use; `lenient` drops such keys instead (configs
    stored by facedet versions whose model section was one flat set of every rung's keys)."""
    cls = _model_class(data.get("name", ModelConfig.name), source)
    if lenient:
        known = {f.name for f in dataclasses.fields(cls)}
        data = {k: v for k, v in data.items() if k in known}
    return _build(cls, data, prefix, source)


def _check(value: Any, hint: Any, path: str, source: str) -> Any:
    """Return `value` if it fits the annotated type (ints are accepted as floats)."""
    origin = typing.get_origin(hint)
    if origin is list:
        (item_type,) = typing.get_args(hint)
        if not isinstance(value, list):
            raise ConfigError(f"{source}: '{path}' must be a list of {item_type.__name__}, got {value!r}")
        return [_check(v, item_type, f"{path}[{i}]", source) for i, v in enumerate(value)]
    if hint is float and isinstance(value, int) and not isinstance(value, bool):
        return float(value)
    if hint is float and isinstance(value, str):
        try:
            return float(value)  # YAML 1.1 reads "1e-3" (no dot) as a string
        except ValueError:
            pass
    if hint is str and value is None:
        return ""  # `data.classes=` on the command line: empty, not YAML's null
    if hint is str and isinstance(value, (int, float)) and not isinstance(value, bool):
        return str(value)  # a run name like 2024 or a split like 2007
    if hint is int and isinstance(value, bool) or not isinstance(value, hint):
        raise ConfigError(
            f"{source}: '{path}' must be {hint.__name__}, got {value!r} ({type(value).__name__})"
        )
    return value


def _unknown_key(path: str, fields: dict, source: str, rung: str = "") -> str:
    name = path.rsplit(".", 1)[-1]
    close = difflib.get_close_matches(name, list(fields), n=1)
    hint = f" (did you mean '{close[0]}'?)" if close else ""
    where = f"model '{rung}' uses" if rung else "valid keys here:"
    return f"{source}: unknown key '{path}'{hint}; {where} {', '.join(fields)}"
