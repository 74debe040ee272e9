"""Run the chapter notebooks and store them with their outputs, so they read as they ran.

    python notebooks/execute.py                  # every chapter, written back in place
    python notebooks/execute.py 07_grid          # one chapter

Each notebook runs in a fresh temporary folder (its runs/ and figures/ land there and are
thrown away) with FACEDET_CACHE shared between the chapters of one call, MPLBACKEND=Agg and
the figures' resolution capped, so the stored images stay small. Progress bars (standard
error) are dropped from the stored outputs: they hold timings and carriage returns, not
content. tests/test_notebooks.py uses the same functions to re-execute each chapter and to
check that what is stored is what the code prints now (`stale_outputs`).
"""
from __future__ import annotations

import argparse
import base64
import copy
import io
import os
import re
import sys
import tempfile
from pathlib import Path

import nbclient
import nbformat
from PIL import Image

NOTEBOOK_DIR = Path(__file__).resolve().parent
TIMEOUT_S = 300  # per cell; a chapter takes about a minute on 2 CPU cores
FIGURE_DPI = 60  # figures drawn inline
MAX_IMAGE_WIDTH = 800  # stored PNGs are shrunk to this width and a 256-colour palette (~50-150 kB)
# A number and what may follow it; durations and speeds vary from machine to machine
NUMBER = re.compile(r"-?\d+(?:[.,]\d+)*(?:e[-+]?\d+)?")
TIMED = re.compile(r"^\s*(ms|s|sec|min|it/s|img/s|images/s|s/it)\b")
RELATIVE_TOLERANCE, ABSOLUTE_TOLERANCE = 0.05, 0.02


def execute(path: Path, workdir: Path, cache: Path) -> nbformat.NotebookNode:
    """The notebook at `path`, executed in `workdir`; raises nbclient's CellExecutionError."""
    notebook = nbformat.read(path, as_version=4)
    os.environ.update(FACEDET_CACHE=str(cache), MPLBACKEND="Agg")
    notebook.cells.insert(0, nbformat.v4.new_code_cell(
        f"import matplotlib\nmatplotlib.rcParams['figure.dpi'] = {FIGURE_DPI}\n"
        "%config InlineBackend.figure_formats = ['png']"))
    client = nbclient.NotebookClient(notebook, timeout=TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(workdir)}})
    client.execute()
    notebook.cells.pop(0)
    return shrink_images(strip_progress(notebook))


def strip_progress(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Drop standard-error streams (tqdm bars, warnings) and the kernel's run-time metadata."""
    notebook = copy.deepcopy(notebook)
    for cell in notebook.cells:
        if cell.cell_type != "code":
            continue
        cell.outputs = [o for o in cell.outputs if not (o.output_type == "stream" and o.name == "stderr")]
        cell.metadata.pop("execution", None)
    return notebook


def shrink_images(notebook: nbformat.NotebookNode) -> nbformat.NotebookNode:
    """Every PNG output at most MAX_IMAGE_WIDTH wide, as a 256-colour palette PNG."""
    for cell in notebook.cells:
        for output in cell.get("outputs", []):
            data = output.get("data", {})
            if "image/png" not in data:
                continue
            image = Image.open(io.BytesIO(base64.b64decode(data["image/png"]))).convert("RGB")
            if image.width > MAX_IMAGE_WIDTH:
                image = image.resize((MAX_IMAGE_WIDTH, round(image.height * MAX_IMAGE_WIDTH / image.width)),
                                     Image.Resampling.LANCZOS)
            buffer = io.BytesIO()
            image.quantize(256).save(buffer, format="PNG", optimize=True)
            data["image/png"] = base64.b64encode(buffer.getvalue()).decode("ascii")
            output.get("metadata", {}).pop("image/png", None)  # a stored width/height would be stale
    return notebook


def texts(cell: nbformat.NotebookNode) -> list[str]:
    """A code cell's outputs as comparable strings: text as printed, images as their kind only."""
    out: list[str] = []
    previous = None
    for output in cell.get("outputs", []):
        if output.output_type == "stream":
            # one print can arrive as several stream chunks, depending on timing: join them
            if previous is not None and previous.output_type == "stream" and previous.name == output.name:
                out[-1] += output.text
            else:
                out.append(output.text)
        elif output.output_type in ("execute_result", "display_data"):
            data = output.get("data", {})
            image = next((k for k in data if k.startswith("image/")), None)
            out.append(f"<{image}>" if image else data.get("text/plain", ""))
        elif output.output_type == "error":
            out.append(f"error {output.ename}")
        previous = output
    return out


def _numbers_agree(stored: str, now: str) -> str | None:
    """None when the two texts match with their numbers within tolerance (durations free);
    otherwise the first difference."""
    if NUMBER.sub("#", stored) != NUMBER.sub("#", now):
        return f"text differs: {stored[:200]!r} vs {now[:200]!r}"
    for a, b in zip(NUMBER.finditer(stored), NUMBER.finditer(now)):
        if TIMED.match(stored[a.end():]):
            continue
        x, y = (float(m.group().replace(",", "")) for m in (a, b))
        if abs(x - y) > max(ABSOLUTE_TOLERANCE, RELATIVE_TOLERANCE * max(abs(x), abs(y))):
            return f"{a.group()} stored, {b.group()} now, in {stored[max(0, a.start() - 60):a.end() + 20]!r}"
    return None


def stale_outputs(stored: nbformat.NotebookNode, now: nbformat.NotebookNode) -> list[str]:
    """Where the stored outputs no longer match a fresh run: same cells (sources), same kinds of
    output, the same text with numbers within 5% (or 0.02), durations and speeds excepted."""
    problems = []
    code = [(c, d) for c, d in zip(stored.cells, now.cells) if c.cell_type == "code"]
    if len(stored.cells) != len(now.cells):
        return [f"{len(stored.cells)} cells stored, {len(now.cells)} now"]
    for index, (old, new) in enumerate(code):
        if old.source != new.source:
            problems.append(f"code cell {index}: source changed")
            continue
        a, b = texts(old), texts(new)
        if len(a) != len(b):
            problems.append(f"code cell {index}: {len(a)} outputs stored, {len(b)} now")
            continue
        for x, y in zip(a, b):
            difference = _numbers_agree(x, y)
            if difference:
                problems.append(f"code cell {index}: {difference}")
    return problems


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python notebooks/execute.py", description=__doc__.split("\n\n")[0])
    parser.add_argument("chapters", nargs="*", help="chapter names, e.g. 07_grid (default: all)")
    args = parser.parse_args(argv)
    paths = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
    if args.chapters:
        paths = [p for p in paths if p.stem in args.chapters]
    with tempfile.TemporaryDirectory() as cache:
        for path in paths:
            with tempfile.TemporaryDirectory() as workdir:
                print(f"{path.name} ...", flush=True)
                notebook = execute(path, Path(workdir), Path(cache))
            nbformat.write(notebook, path)
            print(f"  wrote {path} ({path.stat().st_size / 1e3:.0f} kB)")
    return 0


if __name__ == "__main__":
    sys.exit(main())
