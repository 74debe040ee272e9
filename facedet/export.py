"""Export a trained checkpoint: its weights alone, or the network as ONNX.

    python -m facedet.export --checkpoint runs/yolo_face/best.pt --format weights
    python -m facedet.export --checkpoint runs/yolo_face/best.pt --format onnx

weights  the same checkpoint without its training state (optimizer, scheduler, history):
         what inference needs, a third of the size for an Adam-trained model. It still
         rebuilds its model from the stored config, so infer and evaluate take it as usual.
onnx     the NETWORK ONLY: "images" (N, 3, S, S), resized to S = model.image_size and
         normalised with the model's mean/std, -> its raw outputs, named as in the model's
         forward ("output" for one tensor; "output0", "output1" = pred_locs, pred_scores for
         the SSD rungs). The batch axis is dynamic. Post-processing (decode, score filter,
         NMS) is NOT exported: it is data-dependent control flow whose result size varies
         per image, and every runtime brings its own NMS. <out>.json, written beside the
         .onnx, holds the input/output names, mean/std, class names and the full config,
         from which `onnx_postprocess` rebuilds the PyTorch post-processing (no weights needed):

    import onnxruntime, torch
    from facedet.export import onnx_postprocess
    session = onnxruntime.InferenceSession("best.onnx")
    outputs = session.run(None, {"images": images.numpy()})       # images (N, 3, S, S) normalised
    detections = onnx_postprocess("best.json")(outputs, min_score=0.3, nms_iou=0.45, top_k=100)
    # one dict per image: "boxes" (K, 4) fractional "xyxy", "scores" (K,), "labels" (K,)
"""
from __future__ import annotations

import argparse
import inspect
import json
import warnings
from collections.abc import Callable
from pathlib import Path

import torch

from facedet.checkpoint import load_checkpoint, load_detector
from facedet.files import atomic_save
from facedet.cli import run_cli
from facedet.config import from_dict, to_dict
from facedet.errors import ConfigError, FacedetError
from facedet.models import build_model

# What inference needs; everything else in a checkpoint is training state.
INFERENCE_KEYS = ("model", "config", "class_names", "epoch", "iteration", "images_seen", "metrics", "train_time_s",
                  "operating_point")


def export_weights(checkpoint: str | Path, out: str | Path) -> Path:
    """Write `checkpoint` without its training state to `out` (which may be the same file)."""
    state = load_checkpoint(checkpoint)
    atomic_save({k: state[k] for k in INFERENCE_KEYS if k in state}, out)
    return Path(out)


def _output_names(outputs) -> list[str]:
    if isinstance(outputs, torch.Tensor):
        return ["output"]
    return [f"output{i}" for i in range(len(outputs))]


def _export_kwargs() -> dict:
    """The TorchScript-based exporter works in every torch this package supports (2.2-2.13);
    the newer torch.export-based one (the default from torch 2.9) needs onnxscript as well."""
    return {"dynamo": False} if "dynamo" in inspect.signature(torch.onnx.export).parameters else {}


def export_onnx(checkpoint: str | Path, out: str | Path, batch_size: int = 1, opset: int = 17) -> Path:
    """Trace the checkpoint's network to ONNX with a dynamic batch axis; returns `out`.

    Also writes <out>.json (see the module docstring). Neither file appears unless both
    the export and the write succeeded.
    """
    try:
        import onnx  # noqa: F401  (torch.onnx needs it to write the file)
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install 'facedet[extras]' (or pip install onnx)") from None
    detector = load_detector(checkpoint)
    cfg, names = detector.config, detector.class_names
    if detector.input_policy == "whole":
        raise ConfigError(f"{checkpoint}: model '{cfg.model.name}' scans whole photos itself; export its classifier")
    size = cfg.model.image_size
    # a fully convolutional model takes any height and width (multiples of size_multiple);
    # its post-processing then needs input_hw=(H, W) to build the priors of that grid
    dynamic = {0: "batch", 2: "height", 3: "width"} if detector.input_policy == "scalable" else {0: "batch"}
    images = torch.zeros(batch_size, 3, size, size)
    model = detector.model.eval()
    with torch.no_grad():
        outputs = model(images)
    output_names = _output_names(outputs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    meta = {"checkpoint": str(checkpoint), "model": cfg.model.name, "input": "images",
            "input_shape": ["batch", 3, *(["height", "width"] if len(dynamic) > 1 else [size, size])],
            "input_policy": detector.input_policy, "size_multiple": detector.size_multiple, "mean": list(detector.mean), "std": list(detector.std),
            "outputs": output_names, "class_names": names, "config": to_dict(cfg),
            "postprocess": "facedet.export.onnx_postprocess(<this file>)(outputs, min_score=, nms_iou=, top_k=)"}
    tmp, tmp_meta = out.with_name(out.name + ".tmp"), out.with_name(out.stem + ".json.tmp")
    try:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", DeprecationWarning)  # the TorchScript exporter's notice
            torch.onnx.export(model, (images,), str(tmp), input_names=["images"], output_names=output_names,
                              dynamic_axes={"images": dynamic, **{name: {0: "batch"} for name in output_names}},
                              opset_version=opset, **_export_kwargs())
        tmp_meta.write_text(json.dumps(meta, indent=1))
        tmp.replace(out)  # never a half-written .onnx under the real name
        tmp_meta.replace(out.with_suffix(".json"))
    finally:
        tmp.unlink(missing_ok=True)
        tmp_meta.unlink(missing_ok=True)
    return out


def onnx_postprocess(meta_path: str | Path) -> Callable[..., list[dict]]:
    """The PyTorch post-processing of an exported network, rebuilt from its <out>.json.

    Returns postprocess(outputs, min_score=, nms_iou=, top_k=): `outputs` is what
    onnxruntime's session.run returns (a list of numpy arrays, in the order of "outputs");
    the result is the model's own post-processing of them, one dict per image.
    """
    meta = json.loads(Path(meta_path).read_text())
    detector = build_model(from_dict(meta["config"], source=str(meta_path)).model)

    def postprocess(outputs: list, **settings) -> list[dict]:
        tensors = [torch.from_numpy(o) for o in outputs]
        return detector.postprocess(tensors[0] if len(tensors) == 1 else tuple(tensors), **settings)

    return postprocess


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(
        prog="python -m facedet.export",
        description="Export a facedet checkpoint: 'weights' strips the training state (optimizer, "
        "history) for inference; 'onnx' writes the network (raw outputs; post-processing stays in PyTorch).",
        epilog="Example: python -m facedet.export --checkpoint runs/quickstart/best.pt --format onnx",
    )
    parser.add_argument("--checkpoint", required=True, help="a facedet checkpoint (best.pt, last.pt)")
    parser.add_argument("--format", choices=("weights", "onnx"), default="onnx", help="what to write (default onnx)")
    parser.add_argument("--out", help="output file (default: beside the checkpoint, <name>.onnx or <name>_weights.pt)")
    parser.add_argument("--opset", type=int, default=17, help="ONNX opset (default 17)")
    return parser.parse_args(argv)


def main(argv: list[str] | None = None) -> int:
    args = parse_args(argv)
    checkpoint = Path(args.checkpoint)
    if args.format == "weights":
        out = export_weights(checkpoint, args.out or checkpoint.with_name(checkpoint.stem + "_weights.pt"))
    else:
        try:
            out = export_onnx(checkpoint, args.out or checkpoint.with_suffix(".onnx"), opset=args.opset)
        except FacedetError:
            raise
        except Exception as err:  # the exporter's own failures are long; one line is enough here
            first = str(err).strip().splitlines()[0] if str(err).strip() else type(err).__name__
            raise ConfigError(f"{checkpoint}: ONNX export failed ({first[:200]})") from None
    print(f"wrote {out} ({out.stat().st_size / 1e6:.1f} MB)")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
