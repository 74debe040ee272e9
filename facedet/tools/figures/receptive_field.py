"""The receptive field calculator (seed 000, "Câmpul receptiv").

A unit of a feature map sees only part of the image: its receptive field. Three numbers per
layer describe every unit of that layer's output, along one axis (the ladder's layers are
square, so the other axis is the same):

    rf     side of the receptive field, input pixels
    jump   distance between neighbouring units, input pixels (the product of the strides)
    start  centre of the first unit's field, input pixels (pixel i spans [i, i + 1])

A layer of kernel k, stride s, padding p and dilation d (effective kernel k' = d (k - 1) + 1)
updates them as

    rf    <- rf + (k' - 1) * jump
    start <- start + ((k' - 1) / 2 - p) * jump
    jump  <- jump * s

starting from the image itself: rf = 1, jump = 1, start = 0.5. Unit i of a layer is centred
at start + i * jump and sees [centre - rf / 2, centre + rf / 2] (partly padding near the edges).

Worked by hand, the seed's classifier (3x3 convs, padding 1; 2x2 max-pools):
    conv1  rf 3   jump 1   start 0.5
    conv2  rf 5   jump 1   start 0.5
    pool   rf 6   jump 2   start 1.0
    conv3  rf 10  jump 2   start 1.0
    pool   rf 12  jump 4   start 2.0
so each of the 128 x 32 x 32 values its Linear layer reads has seen only a 12 x 12 patch; the
Linear layer is what looks at the whole crop.

    receptive_field(layers)        the pure calculation on a list of Layer
    trace_layers(model, size)      the Layer list of a real nn.Module, recorded from one forward
                                   pass on the "meta" device (no memory, no arithmetic)
    plot_receptive_field_growth    rf against depth for several networks (PNG)
    plot_receptive_field_table     the calculator's table for one network (PNG)
    format_receptive_field_table   the same table as text
    plot_receptive_field_on_image  the field of one output unit, drawn over an image
"""
from __future__ import annotations

import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from matplotlib.figure import Figure
from matplotlib.patches import Rectangle
from torch import Tensor, nn
from torch.overrides import TorchFunctionMode


@dataclass(frozen=True)
class Layer:
    """One layer's geometry along one axis: a convolution or a pooling window."""

    name: str
    kernel: int
    stride: int = 1
    padding: int = 0
    dilation: int = 1
    kind: str = "conv"  # "conv", "max_pool2d" or "avg_pool2d": for the tables only


@dataclass(frozen=True)
class Field:
    """The receptive field after one layer (see the module docstring)."""

    layer: Layer
    rf: float
    jump: float
    start: float
    size: int | None = None  # units per side of the layer's output, when traced on a real input


def receptive_field(layers: Sequence[Layer]) -> list[Field]:
    """Receptive field, jump and start after each layer, from the image (rf 1, jump 1, start 0.5).

    layers: in the order the input goes through them. Returns one Field per layer.
    """
    rf, jump, start = 1.0, 1.0, 0.5
    fields = []
    for layer in layers:
        effective = layer.dilation * (layer.kernel - 1) + 1
        rf = rf + (effective - 1) * jump
        start = start + ((effective - 1) / 2 - layer.padding) * jump
        jump = jump * layer.stride
        fields.append(Field(layer, rf, jump, start))
    return fields


# --------------------------------------------------------------------------- tracing a real network


def _first(value: Any) -> int:
    """An int or an (h, w) pair -> the value along the first (vertical) axis."""
    return int(value[0]) if isinstance(value, (tuple, list)) else int(value)


class _LayerRecorder(TorchFunctionMode):
    """Records every 2-d convolution and pooling call of a forward pass, in order."""

    POOLS = {F.max_pool2d: "max_pool2d", F.avg_pool2d: "avg_pool2d", torch.max_pool2d: "max_pool2d",
             torch._C._nn.avg_pool2d: "avg_pool2d"}

    def __init__(self, module_names: list[str], leaves: set[str]) -> None:
        super().__init__()
        self.module_names = module_names  # the stack of modules being run; the last is innermost
        self.leaves = leaves  # names of modules without children (nn.Conv2d, nn.MaxPool2d, ...)
        self.layers: list[tuple[Layer, int]] = []  # (layer, output side)

    def __torch_function__(self, func: Callable, types: Any, args: tuple = (), kwargs: dict | None = None) -> Any:
        kwargs = kwargs or {}
        out = func(*args, **kwargs)
        name = self.module_names[-1] if self.module_names else ""
        if name and name not in self.leaves:  # a functional call inside a bigger module's forward
            name = ""
        if func in (F.conv2d, torch.conv2d):
            # nn.Conv2d calls conv2d(input, weight, bias, stride, padding, dilation, groups)
            params = dict(zip(("input", "weight", "bias", "stride", "padding", "dilation", "groups"), args))
            params |= kwargs
            if isinstance(params.get("padding", 0), str):
                raise ValueError(f"{name}: padding={params['padding']!r}; the calculator needs explicit padding")
            layer = Layer(name or "conv2d", _first(params["weight"].shape[2:]), _first(params.get("stride", 1)),
                          _first(params.get("padding", 0)), _first(params.get("dilation", 1)))
            self.layers.append((layer, out.shape[-2]))
        elif func in self.POOLS:
            names = ("input", "kernel_size", "stride", "padding")
            names += ("dilation",) if self.POOLS[func] == "max_pool2d" else ()  # avg_pool2d has none
            bound = dict(zip(names, args)) | kwargs
            kernel = _first(bound["kernel_size"])
            stride = bound.get("stride") or kernel  # stride None / () means "= kernel"
            result = out[0] if isinstance(out, tuple) else out  # return_indices gives a pair
            layer = Layer(name or self.POOLS[func], kernel, _first(stride), _first(bound.get("padding", 0)),
                          _first(bound.get("dilation", 1)), kind=self.POOLS[func])
            self.layers.append((layer, result.shape[-2]))
        return out


def trace_layers(
    model: nn.Module, image_size: int, forward: Callable[[Tensor], Any] | None = None
) -> list[tuple[Layer, int]]:
    """The convolutions and poolings an image goes through, in order, with each output's side.

    model: any nn.Module, run once on the device of its parameters; build it under
    `with torch.device("meta"):` and tracing costs nothing (shapes only, no memory, no
    arithmetic), even for the seed's 413M-parameter models. forward: what to call instead of
    model(images), e.g. `lambda m, x: m.aux(m.base(x)[1])` to follow one branch of SSD300.
    Functional calls (F.max_pool2d inside a forward) are recorded too, named by the module that
    ran them. Returns [(Layer, output side), ...]; the layers form a chain only if the network
    is one (SSD's prediction convs are not).
    """
    parameter = next(model.parameters(), None)
    device = parameter.device if parameter is not None else torch.device("cpu")
    names: list[str] = []
    hooks = []
    for name, module in model.named_modules():
        if name:
            # hooks must return None: a returned value would replace the module's input or output
            hooks.append(module.register_forward_pre_hook(lambda m, a, n=name: names.append(n) and None))
            hooks.append(module.register_forward_hook(lambda m, a, o: names.pop() and None))
    recorder = _LayerRecorder(names, {name for name, m in model.named_modules() if not any(m.children())})
    images = torch.zeros(1, 3, image_size, image_size, device=device)
    was_training = model.training
    model.eval()  # BatchNorm1d refuses a batch of one image in training mode
    try:
        with torch.no_grad(), recorder:
            (forward or (lambda m, x: m(x)))(model, images)
    finally:
        model.train(was_training)
        for hook in hooks:
            hook.remove()
    return recorder.layers


def traced_fields(model: nn.Module, image_size: int, forward: Callable[..., Any] | None = None) -> list[Field]:
    """receptive_field of trace_layers, with each layer's output side filled in."""
    traced = trace_layers(model, image_size, forward)
    fields = receptive_field([layer for layer, _ in traced])
    return [Field(f.layer, f.rf, f.jump, f.start, size) for f, (_, size) in zip(fields, traced)]


# --------------------------------------------------------------------------- figures


def format_receptive_field_table(fields: Sequence[Field], title: str = "") -> str:
    """The calculator's table as text: one row per layer."""
    header = f"{'layer':<20}{'kind':<12}{'k':>4}{'s':>4}{'p':>4}{'d':>4}{'out':>6}{'jump':>7}{'rf':>7}{'start':>8}"
    rows = [f"{f.layer.name:<20}{f.layer.kind:<12}{f.layer.kernel:>4}{f.layer.stride:>4}{f.layer.padding:>4}{f.layer.dilation:>4}"
            f"{'' if f.size is None else f.size:>6}{f.jump:>7g}{f.rf:>7g}{f.start:>8g}" for f in fields]
    return "\n".join(([title] if title else []) + [header, "-" * len(header), *rows])


def plot_receptive_field_table(
    fields: Sequence[Field], path: str | os.PathLike, image_size: int, title: str, note: str = "", dpi: int = 110
) -> Path:
    """The calculator's table as a PNG, with a bar per layer showing rf against the image side."""
    fig = Figure(figsize=(10, 0.34 * len(fields) + 1.9), layout="constrained")
    table_ax, bar_ax = fig.subplots(1, 2, gridspec_kw={"width_ratios": [3, 1.3]})
    table_ax.axis("off")
    columns = ["layer", "kind", "kernel", "stride", "pad", "dil.", "out side", "jump", "rf", "start"]
    cells = [[f.layer.name, f.layer.kind, f.layer.kernel, f.layer.stride, f.layer.padding, f.layer.dilation,
              "" if f.size is None else f.size, f"{f.jump:g}", f"{f.rf:g}", f"{f.start:g}"] for f in fields]
    table = table_ax.table(cellText=cells, colLabels=columns, loc="upper center", cellLoc="center")
    table.auto_set_font_size(False)
    table.set_fontsize(8)
    table.auto_set_column_width(list(range(len(columns))))
    table.scale(1, 1.25)
    depth = range(len(fields))
    bar_ax.barh(list(depth), [f.rf for f in fields], color="tab:blue")
    bar_ax.axvline(image_size, color="black", linestyle="--", linewidth=1)
    bar_ax.text(image_size, -0.9, f" image {image_size} px", fontsize=8, va="bottom")
    bar_ax.invert_yaxis()
    bar_ax.set_yticks(list(depth), [f.layer.name for f in fields], fontsize=7)
    bar_ax.set_xlabel("receptive field (px)")
    fig.suptitle(title)
    if note:
        fig.supxlabel(note, fontsize=9)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")  # nothing cut at the edges
    return path


def plot_receptive_field_growth(
    networks: Mapping[str, tuple[Sequence[Field], int]], path: str | os.PathLike, dpi: int = 110
) -> Path:
    """Receptive field (px) after each layer, one line per network.

    networks: name -> (fields, input side in px). Each line ends with its final rf; a dotted
    line of the same colour marks the network's input side, the field needed to see it whole.
    """
    fig = Figure(figsize=(8, 4.8), layout="constrained")
    ax = fig.subplots()
    colours = ["tab:blue", "tab:orange", "tab:green", "tab:red", "tab:purple", "tab:brown"]
    for (name, (fields, image_size)), colour in zip(networks.items(), colours):
        depth = list(range(1, len(fields) + 1))
        rfs = [f.rf for f in fields]
        ax.plot(depth, rfs, marker="o", ms=3, color=colour, label=f"{name} (input {image_size} px)")
        ax.annotate(f"{rfs[-1]:g}", (depth[-1], rfs[-1]), textcoords="offset points", xytext=(4, 0),
                    fontsize=8, color=colour, va="center")
        ax.axhline(image_size, color=colour, linestyle=":", linewidth=1)
    ax.set_xlabel("layer (convolutions and poolings, in order)")
    ax.set_ylabel("receptive field side (px)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8, loc="upper left")
    ax.set_title("receptive field growth: kernels add, strides multiply")
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")  # nothing cut at the edges
    return path


def plot_receptive_field_on_image(
    image: Any,
    networks: Mapping[str, Sequence[Field]],
    path: str | os.PathLike,
    image_size: int = 224,
    griddim: int = 7,
    dpi: int = 110,
) -> Path:
    """What one output unit sees: the receptive field of the centre unit of each network's
    last layer, drawn over an image_size x image_size image with the S x S output grid.

    image: a PIL image (resized to image_size); networks: name -> fields (their last layer
    must be traced at image_size). The field is drawn where it really is: unit i is centred
    at start + i * jump, which stride-2 convolutions with padding 1 shift up-left of the
    cell's centre. The cell itself is shaded.
    """
    pixels = image.convert("RGB").resize((image_size, image_size))
    fig = Figure(figsize=(6.8, 5.4), layout="constrained")
    ax = fig.subplots()
    ax.imshow(pixels, extent=(0, image_size, image_size, 0))
    for k in range(1, griddim):
        ax.plot([k * image_size / griddim] * 2, [0, image_size], color="white", linewidth=0.6)
        ax.plot([0, image_size], [k * image_size / griddim] * 2, color="white", linewidth=0.6)
    cell = image_size / griddim
    centre_cell = griddim // 2
    ax.add_patch(Rectangle((centre_cell * cell, centre_cell * cell), cell, cell, facecolor="white", alpha=0.4))
    colours = ["tab:red", "tab:orange", "tab:cyan", "tab:green", "tab:purple"]
    reach = 0.0  # how far the fields reach past the image, for the axes' limits
    for (name, fields), colour in zip(networks.items(), colours):
        last = fields[-1]
        side = last.size or round(image_size / last.jump)
        unit = side // 2                                    # the centre unit of the last map
        centre = last.start + unit * last.jump
        low, high = centre - last.rf / 2, centre + last.rf / 2
        reach = max(reach, -low, high - image_size)
        ax.add_patch(Rectangle((low, low), last.rf, last.rf, fill=False, edgecolor=colour, linewidth=2,
                               label=f"{name}: {last.rf:g} px, unit {unit} of {side}, centre {centre:g}"))
    pad = max(reach, 0.0) + 0.03 * image_size
    ax.set_xlim(-pad, image_size + pad)
    ax.set_ylim(image_size + pad, -pad)
    ax.add_patch(Rectangle((0, 0), image_size, image_size, fill=False, edgecolor="black"))
    ax.set_xticks([])
    ax.set_yticks([])
    ax.legend(loc="upper center", bbox_to_anchor=(0.5, -0.01), fontsize=8, frameon=False)
    ax.set_title(f"what the centre unit sees ({image_size} px input, {griddim} x {griddim} cells)", fontsize=10)
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=dpi, bbox_inches="tight")  # nothing cut at the edges
    return path
