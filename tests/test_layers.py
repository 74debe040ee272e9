"""The package's layers, checked from the source: who may import whom, and no import cycles.

    boxes, errors, files, config          (no facedet imports beyond errors)
    data/                                 may use boxes, errors, files, config - never models or checkpoints
    models/                               may use data/ (images, transforms) and the above; a rung's
                                          file reads alone: it imports the shared modules (detector,
                                          backbone, losses) but no other rung, except the deliberate
                                          imports listed in ALLOWED_RUNG_IMPORTS
    checkpoint, trainer, predict, ...     the library
    the user commands (train, infer, evaluate, calibrate, export) and tools/ (benchmark,
    bench_speed, the OpenCV baseline, figures)
                                          may use the library; the library never imports them
"""
from __future__ import annotations

import ast
from pathlib import Path

import facedet

PACKAGE = Path(facedet.__file__).parent
COMMANDS = {"facedet.train", "facedet.infer", "facedet.evaluate", "facedet.calibrate", "facedet.export"}


def module_name(path: Path) -> str:
    parts = path.relative_to(PACKAGE.parent).with_suffix("").parts
    return ".".join(parts[:-1] if parts[-1] == "__init__" else parts)


def imports(path: Path, top_level_only: bool) -> set[str]:
    """facedet modules imported by a file (all of them, or only those at module level)."""
    tree = ast.parse(path.read_text())
    nodes = tree.body if top_level_only else list(ast.walk(tree))
    found = set()
    for node in nodes:
        if isinstance(node, ast.ImportFrom) and node.module and node.module.startswith("facedet"):
            found.add(node.module)
            found |= {f"{node.module}.{alias.name}" for alias in node.names}
        elif isinstance(node, ast.Import):
            found |= {alias.name for alias in node.names if alias.name.startswith("facedet")}
    known = {module_name(p) for p in PACKAGE.rglob("*.py")}
    return {name for name in found if name in known}


FILES = {module_name(p): p for p in PACKAGE.rglob("*.py")}
TOOLS = COMMANDS | {name for name in FILES if name.startswith("facedet.tools")}


def test_the_data_layer_imports_no_model_and_no_checkpoint():
    for name, path in FILES.items():
        if name.startswith("facedet.data"):
            bad = {m for m in imports(path, top_level_only=False)
                   if m.startswith(("facedet.models", "facedet.checkpoint", "facedet.trainer"))}
            assert not bad, f"{name} imports {bad}"


def test_the_library_never_imports_the_tools():
    for name, path in FILES.items():
        if name in TOOLS or name == "facedet":
            continue
        bad = imports(path, top_level_only=False) & TOOLS
        assert not bad, f"{name} (library) imports the tool(s) {bad}"


def test_the_package_top_holds_the_library_and_the_user_commands_only():
    """A command at the package's top is one of the user commands; every other tool lives in tools/."""
    top = {module_name(p) for p in PACKAGE.glob("*.py")}
    runnable = {name for name in top if "def main(" in FILES[name].read_text()}
    assert runnable == COMMANDS, f"commands at the top besides the user commands: {sorted(runnable - COMMANDS)}"


def test_no_import_cycles_among_module_level_imports():
    graph = {name: imports(path, top_level_only=True) - {name} for name, path in FILES.items()}
    # a package's __init__ is imported by its submodules implicitly; only explicit edges count
    state: dict[str, int] = {}

    def visit(node: str, stack: list[str]) -> None:
        state[node] = 1
        for nxt in sorted(graph.get(node, ())):
            if nxt == "facedet":  # the top-level package re-exports the API; its modules never import it
                continue
            if state.get(nxt) == 1:
                raise AssertionError("import cycle: " + " -> ".join(stack[stack.index(nxt):] + [nxt]))
            if nxt not in state:
                visit(nxt, stack + [nxt])
        state[node] = 2

    for name in sorted(graph):
        if name not in state:
            visit(name, [name])


# One file per rung of the ladder, and the modules they share (or a rung's own helper file)
RUNG_FILES = {f"facedet.models.{name}" for name in ("viola_jones", "classifier", "sliding_window", "grid",
                                                    "yolo_face", "ssd", "fastai_ssd", "face_ssd", "retinanet",
                                                    "centernet", "faster_rcnn")}
SHARED_MODEL_FILES = {"facedet.models", "facedet.models.detector", "facedet.models.backbone", "facedet.models.losses",
                      "facedet.models.haar_features", "facedet.models.vgg_weights", "facedet.models.roi_head"}
# rung -> rung imports that are deliberate; the importing file says why where it imports
ALLOWED_RUNG_IMPORTS = {
    ("facedet.models.face_ssd", "facedet.models.ssd"),  # FaceSSD IS an SSD: SSD's loss and post-processing
}


def test_every_model_file_is_a_rung_or_shared():
    assert {name for name in FILES if name.startswith("facedet.models")} == RUNG_FILES | SHARED_MODEL_FILES


def test_a_rung_file_imports_no_other_rung_except_the_deliberate_ones():
    found = {(name, other) for name in RUNG_FILES for other in imports(FILES[name], top_level_only=False) & RUNG_FILES
             if other != name}
    assert found == ALLOWED_RUNG_IMPORTS, f"unexpected: {found - ALLOWED_RUNG_IMPORTS}, gone: {ALLOWED_RUNG_IMPORTS - found}"


def test_the_shared_model_files_import_no_rung():
    for name in SHARED_MODEL_FILES - {"facedet.models"}:  # the package's __init__ lists the rungs' builders
        bad = imports(FILES[name], top_level_only=False) & RUNG_FILES
        assert not bad, f"{name} (shared) imports the rung(s) {bad}"
