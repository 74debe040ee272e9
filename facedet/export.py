"""Export a trained checkpoint: its weights alone, or the network as ONNX.

    python -m facedet.export --checkpoint runs/yolo_face/best.pt --format weights
    python -m facedet.export --checkpoint runs/yolo_face/best.pt --format onnx

weights  the same checkpoint without its training state (optimizer, scheduler, history):
         what inference needs, a third of the size for an Adam-trained model. It still
         rebuilds its model from the stored config, so infer and evaluate take it as usual.
onnx     the network alone, images (N, 3, S, S) normalised -> its raw outputs (offsets and
         logits, or per-cell values). Post-processing (decode, score filter, NMS) stays in
         PyTorch: it is data-dependent control flow, and each runtime has its own NMS. The
         input and output names and the post-processing to apply are written beside it in
         <out>.json.
"""
from __future__ import annotations

import argparse
import json
from pathlib import Path

import torch

from facedet.checkpoint import atomic_save, load_checkpoint, load_detector
from facedet.cli import run_cli
from facedet.errors import ConfigError, FacedetError

# What inference needs; everything else in a checkpoint is training state.
INFERENCE_KEYS = ("model", "config", "class_names", "epoch", "iteration", "metrics", "train_time_s")


def export_weights(checkpoint: str | Path, out: str | Path) -> Path:
    """Write `checkpoint` without its training state to `out` (which may be the same file)."""
    state = load_checkpoint(checkpoint)
    atomic_save({k: state[k] for k in INFERENCE_KEYS if k in state}, out)
    return Path(out)


def _output_names(outputs) -> list[str]:
    if isinstance(outputs, torch.Tensor):
        return ["output"]
    return [f"output{i}" for i in range(len(outputs))]


def export_onnx(checkpoint: str | Path, out: str | Path, batch_size: int = 1, opset: int = 17) -> Path:
    """Trace the checkpoint's network to ONNX with a dynamic batch axis; returns `out`."""
    try:
        import onnx  # noqa: F401  (torch.onnx needs it to write the file)
    except ImportError:
        raise ConfigError("ONNX export needs the onnx package: pip install 'facedet[extras]' (or pip install onnx)") from None
    detector, cfg, names = load_detector(checkpoint)
    if not detector.fixed_input:
        raise ConfigError(f"{checkpoint}: model '{cfg.model.name}' takes whole photos of any size; export its classifier")
    size = cfg.model.image_size
    images = torch.zeros(batch_size, 3, size, size)
    model = detector.model.eval()
    with torch.no_grad():
        outputs = model(images)
    output_names = _output_names(outputs)
    out = Path(out)
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".tmp")
    torch.onnx.export(model, (images,), str(tmp), input_names=["images"], output_names=output_names,
                      dynamic_axes={name: {0: "batch"} for name in ["images", *output_names]},
                      opset_version=opset, dynamo=False)
    tmp.replace(out)  # never a half-written .onnx under the real name
    meta = {"checkpoint": str(checkpoint), "model": cfg.model.name, "input": "images",
            "input_shape": ["batch", 3, size, size], "mean": list(detector.mean), "std": list(detector.std),
            "outputs": output_names, "class_names": names,
            "postprocess": f"facedet.models build_model(model.name={cfg.model.name!r}).postprocess on the outputs"}
    out.with_suffix(".json").write_text(json.dumps(meta, indent=1))
    return out


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
