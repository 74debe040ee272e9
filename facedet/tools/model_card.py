"""`python -m facedet.tools.model_card`: the table of every shipped detector, read from the
checkpoints themselves, so facedet/weights/MODEL_CARD.md can never quote another number.

    python -m facedet.tools.model_card          # the markdown table MODEL_CARD.md holds
    python -m facedet.tools.model_card --write  # ... written into MODEL_CARD.md between its markers

Per detector: the model it builds, its parameters and file size, the images its training saw,
its validation AP50 when it was saved (the trainer's evaluator on the run's validation photos),
and its operating point (`python -m facedet.calibrate`): the min score and the precision /
recall it gives on each validation set it was calibrated on.
"""
from __future__ import annotations

import argparse

from facedet.checkpoint import SHIPPED_WEIGHTS, list_detectors, load_checkpoint
from facedet.errors import ConfigError

CARD = SHIPPED_WEIGHTS / "MODEL_CARD.md"
START, END = "<!-- model-card-table -->", "<!-- /model-card-table -->"
from facedet.cli import run_cli


def card_row(name: str) -> dict:
    """The facts of one shipped detector, from its checkpoint."""
    path = SHIPPED_WEIGHTS / f"{name}.pt"
    state = load_checkpoint(path)
    point = state.get("operating_point") or {}
    return {
        "name": name,
        "model": state["config"]["model"]["name"],
        # learned numbers only: BatchNorm's running statistics are buffers, not parameters
        "parameters": sum(t.numel() for key, t in state["model"].items()
                          if t.is_floating_point() and ".running_" not in key),
        "megabytes": path.stat().st_size / 1e6,
        "images_seen": state.get("images_seen"),
        "val_ap50": (state.get("metrics") or {}).get("mAP50"),
        "min_score": point.get("min_score"),
        "per_set": {s: (p["precision"], p["recall"], p.get("images")) for s, p in point.get("per_set", {}).items()},
    }


def _num(value, fmt: str) -> str:
    return "—" if value is None else format(value, fmt)


def card_table(names: list[str] | None = None) -> str:
    """The markdown table of the shipped detectors (all of them by default)."""
    lines = ["| name | model | parameters | MB | images seen | val AP50 | min score | precision / recall at it |",
             "|---|---|---|---|---|---|---|---|"]
    for name in names or list_detectors():
        row = card_row(name)
        sets = "; ".join(f"{s} {p:.3f} / {r:.3f}" + (f" ({n} photos)" if n else "")
                         for s, (p, r, n) in row["per_set"].items()) or "—"
        lines.append(f"| `{name}` | `{row['model']}` | {row['parameters']:,} | {row['megabytes']:.2f} | "
                     f"{_num(row['images_seen'], ',')} | {_num(row['val_ap50'], '.3f')} | "
                     f"{_num(row['min_score'], '.3f')} | {sets} |")
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m facedet.tools.model_card",
                                     description="Print the table of every shipped detector (facedet/weights/*.pt), "
                                     "read from the checkpoints: what MODEL_CARD.md quotes.")
    parser.add_argument("--write", action="store_true", help=f"also write the table into {CARD.name} between its "
                        f"markers {START} and {END}")
    args = parser.parse_args(argv)
    table = card_table()
    print(table)
    if args.write:
        card = CARD.read_text()
        if START not in card or END not in card:
            raise ConfigError(f"{CARD}: the markers {START} and {END} are missing; add them where the table goes")
        head, rest = card.split(START, 1)
        CARD.write_text(f"{head}{START}\n{table}\n{END}{rest.split(END, 1)[1]}")
        print(f"wrote the table into {CARD}")
    return 0


if __name__ == "__main__":
    raise SystemExit(run_cli(main))
