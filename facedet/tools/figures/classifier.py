"""The classifier rung's teaching figures (seed 000, "Clasificator cu rețele neuronale").

    plot_embedding_strip   one column per crop: the embedding layer's activations as a
                           heat-map, faces found | false positives | non-faces | faces missed
    plot_feature_maps      what each convolution layer "sees" in one crop
    plot_framing           one face cut tight ... large, and what each classifier says

Every function takes a model and images and writes one PNG (matplotlib `Figure` objects,
drawn off-screen: no display and no pyplot state needed). Regenerate the figures of
doc_images/ from a trained checkpoint with

    python -m facedet.tools.figures --only classifier --checkpoint classifier=runs/classifier/best.pt \\
        --data $FACEDET_DATA/faces-caltech --nonfaces $FACEDET_DATA/nonfaces --out doc_images/
"""
from __future__ import annotations

import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import torch
from matplotlib.colors import ListedColormap
from matplotlib.figure import (
    Figure,  # drawn off-screen: no pyplot, no display, no global backend
)
from matplotlib.patches import Patch
from torch import Tensor, nn

from facedet.data.crops import FaceCropDataset, crop_and_resize, load_image_tensor, square_boxes
from facedet.data.transforms import IMAGENET_MEAN, IMAGENET_STD
from facedet.errors import DataError

# The seed's colours: green = face found, yellow = false positive, red = correctly "no face".
GROUPS = (("face found", "tab:green"), ("false positive", "gold"), ("no face", "tab:red"), ("face missed", "tab:blue"))


def _denormalise(images: Tensor, mean: Sequence[float], std: Sequence[float]) -> Tensor:
    """Normalised (..., 3, H, W) -> displayable (..., H, W, 3) in [0, 1]."""
    mean_t = torch.tensor(mean).view(3, 1, 1)
    std_t = torch.tensor(std).view(3, 1, 1)
    return (images.detach().cpu().float() * std_t + mean_t).clamp(0, 1).movedim(-3, -1)


@torch.no_grad()
def _scores_and_embeddings(model: nn.Module, images: Tensor, batch_size: int = 64) -> tuple[Tensor, Tensor]:
    """Face probabilities (N,) and embeddings (N, D) of normalised crops (N, 3, S, S)."""
    device = next(model.parameters()).device
    probs, embeddings = [], []
    for chunk in images.split(batch_size):
        maps = model.feature_maps(chunk.to(device))
        probs.append(torch.sigmoid(maps["logit"]).cpu())
        embeddings.append(maps["embedding"].cpu())
    return torch.cat(probs), torch.cat(embeddings)


def plot_embedding_strip(
    model: nn.Module,
    images: Tensor,
    labels: Tensor,
    out_path: str | os.PathLike,
    threshold: float = 0.5,
    title: str | None = None,
) -> dict[str, int]:
    """Draw the embedding of every crop as one column of a heat-map (the seed's embeddings_512 figure).

    model: a CNNClassifier (needs `feature_maps`); images: (N, 3, S, S) normalised crops;
    labels: (N,) 1 = face, 0 = not a face. Columns are grouped by outcome at `threshold`
    (faces found, false positives, non-faces, faces missed; a coloured band on top tells
    which); each row is one embedding neuron, brightness = activation / the largest one.
    Similar columns within "face found" and the odd false positive resembling them is
    what the seed points out. Returns the number of crops in each group.
    """
    model.eval()
    probs, embeddings = _scores_and_embeddings(model, images)
    predicted = probs >= threshold
    truth = labels.cpu().bool()
    masks = [truth & predicted, ~truth & predicted, ~truth & ~predicted, truth & ~predicted]
    order = torch.cat([m.nonzero().flatten() for m in masks])                        # columns, grouped
    group_of_column = torch.cat([torch.full((int(m.sum()),), g) for g, m in enumerate(masks)])
    heat = embeddings[order].T                                                        # (D, N)
    heat = heat / heat.max().clamp(min=1e-12)  # ReLU activations >= 0 -> [0, 1]

    n, dim = len(order), embeddings.shape[1]
    fig = Figure(figsize=(max(6.0, 0.12 * n + 2), 6))
    band, ax = fig.subplots(2, 1, gridspec_kw={"height_ratios": [1, 12]}, sharex=True)
    colours = ListedColormap([c for _, c in GROUPS])
    band.imshow(group_of_column[None].numpy(), aspect="auto", cmap=colours, vmin=-0.5, vmax=len(GROUPS) - 0.5,
                interpolation="nearest")
    band.set_yticks([])
    image = ax.imshow(heat.numpy(), aspect="auto", cmap="inferno", vmin=0, vmax=1, interpolation="nearest")
    ax.set_xlabel("crops (one column each)")
    ax.set_ylabel(f"embedding neuron (of {dim})")
    fig.colorbar(image, ax=[band, ax], fraction=0.03, label="activation / max")
    handles = [Patch(color=c, label=f"{name} ({int(m.sum())})") for (name, c), m in zip(GROUPS, masks)]
    band.legend(handles=handles, loc="lower center", bbox_to_anchor=(0.5, 1.0), ncol=4, frameon=False, fontsize=8)
    fig.suptitle(title or f"{dim}-d embedding of {n} crops (threshold {threshold})", y=0.99)
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=120, bbox_inches="tight")  # nothing cut at the edges
    return {name: int(m.sum()) for (name, _), m in zip(GROUPS, masks)}


@torch.no_grad()
def plot_feature_maps(
    model: nn.Module,
    image: Tensor,
    out_path: str | os.PathLike,
    channels: int = 8,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
    title: str | None = None,
    dpi: int = 110,
) -> float:
    """Show the input crop and, per convolution layer, its `channels` most active maps.

    model: a CNNClassifier; image: (3, S, S) normalised. Rows: conv1, conv2, conv3 (after
    ReLU); "most active" = largest mean activation on this crop. Returns the face probability.
    """
    model.eval()
    device = next(model.parameters()).device
    maps = model.feature_maps(image.to(device))
    prob = torch.sigmoid(maps["logit"][0]).item()
    layers = ["conv1", "conv2", "conv3"]
    fig = Figure(figsize=(1.6 * (channels + 1), 1.8 * len(layers)), layout="constrained")
    axes = fig.subplots(len(layers), channels + 1)
    for row, name in enumerate(layers):
        activations = maps[name][0].cpu()                                             # (C, h, w)
        strongest = activations.mean(dim=(1, 2)).argsort(descending=True)[:channels]
        axes[row, 0].imshow(_denormalise(image, mean, std).numpy())
        axes[row, 0].set_title("input" if row == 0 else "", fontsize=8)
        axes[row, 0].set_ylabel(f"{name}\n{tuple(activations.shape)}", fontsize=8)
        for col, channel in enumerate(strongest.tolist(), start=1):
            # "nearest": one flat block per activation, as the map really is (and a smaller PNG)
            axes[row, col].imshow(activations[channel].numpy(), cmap="viridis", interpolation="nearest")
            axes[row, col].set_title(f"#{channel}", fontsize=7)
        for ax in axes[row]:
            ax.set_xticks([])
            ax.set_yticks([])
        for ax in axes[row, len(strongest) + 1 :]:
            ax.axis("off")
    fig.suptitle(title or f"feature maps, face probability {prob:.3f}")
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=dpi, bbox_inches="tight")  # nothing cut at the edges
    return prob


@torch.no_grad()
def plot_framing(
    models: Mapping[str, nn.Module] | nn.Module,
    image: Tensor,
    box: Sequence[float],
    out_path: str | os.PathLike,
    factors: Sequence[float] = (0.7, 0.85, 1.0, 1.3, 1.6, 2.0),
    size: int = 128,
    mean: Sequence[float] = IMAGENET_MEAN,
    std: Sequence[float] = IMAGENET_STD,
) -> Tensor:
    """The framing experiment: one face cut from tight to large, scored by each classifier.

    models: {name: classifier} (e.g. trained on "tight", "large", "both" crops) or one model;
    image: (3, H, W) uint8 photo; box: the face, "xyxy" pixels. Each factor cuts a square of
    factor x the box's longer side around its centre (as facedet.data.crops does).
    Columns = factors, rows = models; each crop is titled with its face probability
    (green >= 0.5, red below). Returns probabilities (n_models, n_factors).
    """
    if isinstance(models, nn.Module):
        models = {"classifier": models}
    box_t = torch.tensor([list(box)], dtype=torch.float32)
    squares = torch.cat([square_boxes(box_t, f) for f in factors])                   # (F, 4)
    fill = torch.tensor([round(255 * m) for m in mean], dtype=torch.uint8)
    crops = crop_and_resize(image, squares, size, fill)                                # (F, 3, size, size) uint8
    mean_t, std_t = torch.tensor(mean).view(1, 3, 1, 1), torch.tensor(std).view(1, 3, 1, 1)
    inputs = (crops.float() / 255 - mean_t) / std_t
    probs = torch.zeros(len(models), len(factors))
    for row, model in enumerate(models.values()):
        model.eval()
        device = next(model.parameters()).device
        probs[row] = torch.sigmoid(model(inputs.to(device)).reshape(-1)).cpu()
    fig = Figure(figsize=(1.9 * len(factors), 2.2 * len(models) + 0.4), layout="constrained")
    axes = fig.subplots(len(models), len(factors), squeeze=False)
    for row, name in enumerate(models):
        for col, factor in enumerate(factors):
            ax = axes[row, col]
            ax.imshow(crops[col].permute(1, 2, 0).numpy())
            p = probs[row, col].item()
            ax.set_title(f"x{factor:g}: {p:.2f}", fontsize=9, color="tab:green" if p >= 0.5 else "tab:red")
            ax.set_xticks([])
            ax.set_yticks([])
        axes[row, 0].set_ylabel(name, fontsize=9)
    fig.suptitle("framing: square side / face box side, and the face probability")
    Path(out_path).parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out_path, dpi=110, bbox_inches="tight")  # nothing cut at the edges
    return probs


# --------------------------------------------------------------------------- every figure of one checkpoint


def draw_classifier_figures(
    detector: Any,
    records: Sequence[Any],
    nonfaces: Sequence[str | os.PathLike],
    out: str | os.PathLike,
    num_crops: int = 60,
    feature_maps: int = 2,
    compare: Mapping[str, nn.Module] | None = None,
    framing: bool = True,
    seed: int = 0,
    source: str = "the data",
    feature_map_dpi: int = 110,
    name: str = "checkpoint",
) -> list[str]:
    """Every classifier figure from one classifier Detector and a detection data set.

    records: facedet.data.readers records (their boxes are the faces); nonfaces: face-free
    photos for extra negatives. Writes embeddings_<D>.png, face_<i>_featuremaps.png and
    nonface_<i>_featuremaps.png (feature_maps of each) and, with framing, framing.png scored
    by the checkpoint (its row labelled `name`, e.g. its training framing) and every model of
    `compare`. Returns one line per file written.
    """
    model = detector.model
    crops = FaceCropDataset(records, nonfaces, framing="tight", neg_ratio=1.0, seed=seed,
                            size=model.image_size, mean=detector.mean, std=detector.std)
    faces = (crops.labels == 1).nonzero().flatten()
    negatives = (crops.labels == 0).nonzero().flatten()
    if len(faces) == 0:
        raise DataError(f"{source}: no face of at least 24 pixels in the first {len(records)} photos")
    generator = torch.Generator().manual_seed(seed)
    half = num_crops // 2
    chosen = torch.cat([faces[torch.randperm(len(faces), generator=generator)[:half]],
                        negatives[torch.randperm(len(negatives), generator=generator)[: num_crops - half]]])
    images = torch.stack([crops[i][0] for i in chosen.tolist()])
    out = Path(out)
    written = []

    path = out / f"embeddings_{model.embedding_dim}.png"
    counts = plot_embedding_strip(model, images, crops.labels[chosen], path)
    written.append(f"{path}  {counts}")
    for kind, pool in (("face", faces), ("nonface", negatives)):
        for i, index in enumerate(pool[:feature_maps].tolist()):
            path = out / f"{kind}_{i}_featuremaps.png"
            prob = plot_feature_maps(model, crops[index][0], path, mean=detector.mean, std=detector.std,
                                     dpi=feature_map_dpi)
            written.append(f"{path}  p(face)={prob:.3f}")

    if framing:
        # the framing experiment on the first face of the first photo that has one
        face_index = int(faces[0])
        photo = load_image_tensor(crops.paths[int(crops.sources[face_index])])
        tight = crops.boxes[face_index]  # the tight square equals the face box's centre and longer side
        path = out / "framing.png"
        plot_framing({name: model, **(compare or {})}, photo, tight.tolist(), path,
                     size=model.image_size, mean=detector.mean, std=detector.std)
        written.append(str(path))
    return written
