"""The chapter notebooks: they import facedet, define no library code, run top to bottom, and
are stored executed with outputs that a fresh run still prints.

Each notebook is executed by notebooks/execute.py's `execute` (nbclient) in its own temporary
working directory (its runs/ and figures/ land there), with FACEDET_CACHE pointing to one
temporary cache shared by the notebooks of this test session (they use the same tiny synthetic
set, generated once) and MPLBACKEND=Agg. A cell that raises fails the test, naming the notebook
and the cell; stored outputs that differ from the fresh run's are named too.
"""
import ast
import importlib.util
import json
import time
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
# Numbered in reading order once for the whole course: the gaps (04 localization, 06 two-stage,
# 10 augmentation, 13 capstone) are chapters still to be written, which slot in without renaming.
CHAPTERS = ["00_boxes", "02_viola_jones", "03_classifier", "05_sliding_window", "07_grid", "08_yolo_face",
            "09_ssd300", "11_retinanet", "12_centernet"]
MAX_NOTEBOOK_BYTES = 1_500_000


def _load_chapters():
    """notebooks/execute.py, the tool that stores the chapters executed (not part of the package)."""
    spec = importlib.util.spec_from_file_location("chapters", NOTEBOOK_DIR / "execute.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


chapters = _load_chapters()


def code_cells(path: Path) -> list[str]:
    return ["".join(c["source"]) for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]


def test_every_chapter_is_there():
    assert [p.stem for p in NOTEBOOKS] == CHAPTERS


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_imports_facedet_and_defines_no_library_code(path):
    source = "\n".join(code_cells(path))
    tree = ast.parse(source, filename=str(path))
    assert "facedet" in source
    defined = [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.AsyncFunctionDef, ast.ClassDef))]
    assert not defined, f"{path.name} defines {defined}: library code belongs in facedet/"
    assert not any(isinstance(n, ast.Lambda) for n in ast.walk(tree)), f"{path.name} defines a lambda"


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_is_stored_executed_and_small(path):
    """Stored with outputs (python notebooks/execute.py), so it reads on a code-hosting site as it ran."""
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert all(c.get("execution_count") for c in cells), \
        f"{path.name}: store it executed: python notebooks/execute.py {path.stem}"
    assert any(o.get("output_type") == "display_data" for c in cells for o in c.get("outputs", [])), \
        f"{path.name} shows no figure"
    assert path.stat().st_size < MAX_NOTEBOOK_BYTES, f"{path.name}: {path.stat().st_size} bytes; images too large?"


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("facedet_cache")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs_and_its_stored_outputs_are_current(path, tmp_path, shared_cache, monkeypatch):
    """Executed afresh, the chapter runs without error, draws its figures, and prints what is
    stored (numbers within 5%, durations free): an edit that changes a result needs
    `python notebooks/execute.py <chapter>`."""
    pytest.importorskip("nbformat")
    pytest.importorskip("nbclient")
    import nbformat
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("FACEDET_CACHE", str(shared_cache))
    start = time.perf_counter()
    try:
        fresh = chapters.execute(path, tmp_path, shared_cache)
    except CellExecutionError as err:
        pytest.fail(f"{path.name}: a cell failed\n{str(err)[-3000:]}", pytrace=False)
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")
    assert (tmp_path / "figures").is_dir() and any((tmp_path / "figures").iterdir()), "the notebook drew no figure"
    stale = chapters.stale_outputs(nbformat.read(path, as_version=4), fresh)
    assert not stale, (f"{path.name}: stored outputs are stale (python notebooks/execute.py {path.stem}):\n"
                       + "\n".join(stale[:5]))
