"""The package's layers, checked from the source: who may import whom, and no import cycles.

    boxes, errors, files, config          (no facedet imports beyond errors)
    data/                                 may use boxes, errors, files, config - never models or checkpoints
    models/                               may use data/ (images, transforms) and the above
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
