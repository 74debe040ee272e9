"""RetinaNet's focal loss (rung 6): its curve against cross-entropy, and who pays the loss.

A one-stage detector scores every anchor; nearly all of them are easy background. The
figures here measure, on one set of anchors and one set of scores, how much of the
classification loss comes from positives, hard negatives and easy negatives under

    "CE, every anchor"      binary cross-entropy summed over all anchors (no remedy)
    "CE + 3:1 mining (SSD)" the positives and the 3 x N_pos highest-loss negatives of each
                            image (facedet.models.ssd.MultiBoxLoss.hard_negatives, SSD's own code)
    "focal (RetinaNet)"     focal loss summed over all anchors (facedet.models.ssd.sigmoid_focal_loss)

For one class, SSD's softmax over (background, face) with logits (0, s) is exactly the
sigmoid of s, so both remedies see the same probabilities. An easy negative is a negative
anchor whose every class scores below 1 - EASY_PT = 0.1 (p_t >= 0.9, the notes' example).

    plot_focal_loss_curves      FL(p_t) for gamma = 0 (CE), 0.5, 1, 2, 5 (the paper's figure 1)
    loss_shares                 the share of each kind of anchor under the three losses
    plot_loss_shares            those shares as stacked bars
    cumulative_negative_loss    the paper's figure 4: how the negatives' loss is spread
    plot_cumulative_loss        that curve for several gammas
    plot_loss_shares_at_init    the shares at the first training step, with and without the
                                prior-probability init, on a synthetic scene (needs no training)
"""
from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import numpy as np
import torch
from matplotlib.figure import Figure
from torch import Tensor

from facedet.plots import save_figure
from facedet.boxes import box_convert
from facedet.config import load_config
from facedet.data.synthetic import render_scene
from facedet.models.retinanet import IGNORE, Anchors, match_anchors
from facedet.models.ssd import MultiBoxLoss, sigmoid_focal_loss

EASY_PT = 0.9  # a negative is "easy" when p_t = 1 - p >= 0.9 for every class
KINDS = ("positives", "hard negatives", "easy negatives")
COLOURS = {"positives": "tab:green", "hard negatives": "tab:orange", "easy negatives": "tab:grey"}




def plot_focal_loss_curves(path: str | os.PathLike, gammas: Sequence[float] = (0.0, 0.5, 1.0, 2.0, 5.0),
                           dpi: int = 110) -> Path:
    """FL(p_t) = -(1 - p_t)^gamma ln(p_t) against p_t, one curve per gamma (0 = cross-entropy);
    the well-classified region p_t > 0.5 shaded, and the 100x of p_t = 0.9 at gamma = 2 marked."""
    p_t = torch.linspace(0.001, 1.0, 500)
    logits = torch.log(p_t / (1 - p_t).clamp(min=1e-12))  # as a positive: p = p_t
    fig = Figure(figsize=(6.4, 4.4), layout="constrained")
    ax = fig.subplots()
    ax.axvspan(0.5, 1.0, color="tab:blue", alpha=0.07, label="well classified (p_t > 0.5)")
    for gamma in gammas:
        loss = sigmoid_focal_loss(logits, torch.ones_like(p_t), alpha=None, gamma=gamma)
        ax.plot(p_t, loss, label=f"gamma = {gamma:g}" + (" (CE)" if gamma == 0 else ""), lw=1.6)
    ce, fl = -math.log(0.9), 0.1 ** 2 * -math.log(0.9)
    ax.annotate(f"p_t = 0.9: CE {ce:.3f}, FL {fl:.5f} (/100)", (0.9, ce), xytext=(0.42, 1.6), fontsize=8,
                arrowprops={"arrowstyle": "->", "color": "grey"})
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 5)
    ax.set_xlabel("probability of the true class p_t")
    ax.set_ylabel("loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title("focal loss -(1 - p_t)^gamma ln p_t: easy examples stop counting")
    return save_figure(fig, path, dpi)


def loss_shares(logits: Tensor, labels: Tensor, alpha: float = 0.25, gamma: float = 2.0,
                neg_pos_ratio: float = 3.0) -> dict[str, dict[str, float]]:
    """The share of each kind of anchor in three classification losses, on the same scores.

    logits (B, P, C) class logits; labels (B, P) from `match_anchors` (class >= 0, BACKGROUND,
    IGNORE; ignored anchors count in no loss). Returns {loss name: {"positives": share,
    "hard negatives": share, "easy negatives": share, "total": summed loss / N_pos,
    "anchors": anchors counted}}; the three shares of a loss add up to 1.
    """
    positives = labels >= 0
    negatives = ~positives & (labels != IGNORE)
    onehot = torch.nn.functional.one_hot(labels.clamp(min=0), logits.shape[-1]).float() * positives.unsqueeze(-1)
    ce = sigmoid_focal_loss(logits, onehot, alpha=None, gamma=0.0).sum(-1)  # (B, P) per-anchor BCE
    focal = sigmoid_focal_loss(logits, onehot, alpha=alpha, gamma=gamma).sum(-1)
    easy = negatives & (logits.sigmoid().amax(-1) < 1 - EASY_PT)
    kinds = {"positives": positives, "hard negatives": negatives & ~easy, "easy negatives": easy}
    # SSD's mining on the same per-anchor losses; its priors only matter for matching, not used here
    mined = MultiBoxLoss(torch.zeros(1, 4), neg_pos_ratio=neg_pos_ratio).hard_negatives(
        ce.masked_fill(~negatives, 0.0), positives)
    counted = {"CE, every anchor": (ce, positives | negatives),
               f"CE + {neg_pos_ratio:g}:1 mining (SSD)": (ce, positives | mined),
               "focal (RetinaNet)": (focal, positives | negatives)}
    num_pos = max(1, int(positives.sum()))
    shares = {}
    for name, (loss, mask) in counted.items():
        total = float((loss * mask).sum())
        row = {kind: float((loss * (mask & where)).sum()) / max(total, 1e-30) for kind, where in kinds.items()}
        shares[name] = {**row, "total": total / num_pos, "anchors": int(mask.sum())}
    return shares


def plot_loss_shares(panels: dict[str, dict[str, dict[str, float]]], path: str | os.PathLike, title: str = "",
                     dpi: int = 110) -> Path:
    """One panel of stacked bars per entry of `panels` ({panel title: `loss_shares` result})."""
    fig = Figure(figsize=(5.2 * len(panels), 4.4), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(panels)))
    for ax, (panel, shares) in zip(axes, panels.items()):
        names = list(shares)
        bottom = np.zeros(len(names))
        for kind in KINDS:
            values = np.array([shares[n][kind] for n in names])
            ax.bar(range(len(names)), values, bottom=bottom, color=COLOURS[kind], label=kind, width=0.6)
            for i, (v, b) in enumerate(zip(values, bottom)):
                if v > 0.04:
                    ax.text(i, b + v / 2, f"{100 * v:.0f}%", ha="center", va="center", fontsize=8)
            bottom += values
        ax.set_xticks(range(len(names)))
        ax.set_xticklabels([f"{n}\n{shares[n]['anchors']:,} anchors\nloss/N_pos {shares[n]['total']:.3g}"
                            for n in names], fontsize=7)
        ax.set_ylim(0, 1)
        ax.set_ylabel("share of the classification loss")
        ax.set_title(panel, fontsize=9)
    axes[0].legend(fontsize=8, loc="upper right")
    if title:
        fig.suptitle(title, fontsize=10)
    return save_figure(fig, path, dpi)


def cumulative_negative_loss(probs: Tensor, gamma: float) -> Tensor:
    """The paper's figure 4 for the negatives: probs (N,) of negative anchors ->
    (N,) cumulative loss of the negatives sorted by increasing loss, normalised to end at 1.
    At gamma = 2 the curve stays near 0 until the last few percent: the hardest negatives
    carry nearly all of the loss."""
    logits = torch.logit(probs.double().clamp(1e-12, 1 - 1e-12))
    loss = sigmoid_focal_loss(logits, torch.zeros_like(logits), alpha=None, gamma=gamma).sort().values
    cumulative = loss.cumsum(0)
    return (cumulative / cumulative[-1].clamp(min=1e-300)).float()


def plot_cumulative_loss(negative_probs: Tensor, path: str | os.PathLike,
                         gammas: Sequence[float] = (0.0, 0.5, 1.0, 2.0), title: str = "", dpi: int = 110) -> Path:
    """`cumulative_negative_loss` for each gamma against the fraction of negatives."""
    fig = Figure(figsize=(6.0, 4.2), layout="constrained")
    ax = fig.subplots()
    fraction = torch.linspace(0, 1, len(negative_probs))
    for gamma in gammas:
        ax.plot(fraction, cumulative_negative_loss(negative_probs, gamma), label=f"gamma = {gamma:g}")
    ax.set_xlabel("fraction of negative anchors (sorted by increasing loss)")
    ax.set_ylabel("cumulative share of their loss")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(title or f"where the loss of {len(negative_probs):,} negatives comes from", fontsize=10)
    return save_figure(fig, path, dpi)


def plot_loss_shares_at_init(path: str | os.PathLike, size: int = 320, seed: int = 0, dpi: int = 110) -> Path:
    """The loss shares at the first training step of retinanet_face.yaml's anchors on one
    synthetic scene, for a network whose every face score is 0.5 (bias 0) or 0.01 (the
    prior-probability init). Needs no training: every anchor has the same score."""
    m = load_config("retinanet_face.yaml").model
    anchors = Anchors(m.min_level, m.max_level, tuple(m.anchor_sizes), m.scales_per_octave, tuple(m.anchor_ratios))(size, size)
    _, faces = render_scene(np.random.default_rng([seed, 3, 4]), size, min_faces=3, max_faces=5)
    labels, _ = match_anchors((faces / size)[None], torch.zeros(1, len(faces), dtype=torch.int64),
                              torch.ones(1, len(faces), dtype=torch.bool), box_convert(anchors, "cxcywh", "xyxy"))
    panels = {}
    for p in (0.5, 0.01):
        logits = torch.full((1, len(anchors), 1), math.log(p / (1 - p)))
        panels[f"every score p = {p:g}" + (" (prior init)" if p == 0.01 else " (bias 0)")] = loss_shares(logits, labels)
    title = (f"first step on {len(anchors):,} anchors, {int((labels >= 0).sum())} positive "
             f"({len(faces)} faces): who pays the classification loss")
    return plot_loss_shares(panels, path, title, dpi)
