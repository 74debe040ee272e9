"""The chapter notebooks: they import facedet, define no library code, and run top to bottom.

Each notebook is executed with nbclient in its own temporary working directory (its runs/
and figures/ land there), with FACEDET_CACHE pointing to one temporary cache shared by the
notebooks of this test session (they use the same tiny synthetic set, generated once) and
MPLBACKEND=Agg. A cell that raises fails the test, naming the notebook and the cell.
"""
import ast
import json
import time
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
CHAPTERS = ["00_boxes", "01_classifier", "02_sliding_window", "03_grid", "04_yolo_face", "05_ssd300", "06_viola_jones"]
TIMEOUT_S = 300  # per cell; a notebook takes about a minute on 2 CPU cores


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
def test_notebook_is_committed_without_outputs(path):
    cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
    assert all(not c.get("outputs") and c.get("execution_count") is None for c in cells), \
        f"{path.name}: clear its outputs before committing (keeps the repository small)"


@pytest.fixture(scope="session")
def shared_cache(tmp_path_factory) -> Path:
    return tmp_path_factory.mktemp("facedet_cache")


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_notebook_runs(path, tmp_path, shared_cache, monkeypatch):
    nbformat = pytest.importorskip("nbformat")
    nbclient = pytest.importorskip("nbclient")
    from nbclient.exceptions import CellExecutionError

    monkeypatch.setenv("FACEDET_CACHE", str(shared_cache))
    monkeypatch.setenv("MPLBACKEND", "Agg")
    notebook = nbformat.read(path, as_version=4)
    client = nbclient.NotebookClient(notebook, timeout=TIMEOUT_S, kernel_name="python3",
                                     resources={"metadata": {"path": str(tmp_path)}})
    start = time.perf_counter()
    try:
        client.execute()
    except CellExecutionError as err:
        pytest.fail(f"{path.name}: a cell failed\n{str(err)[-3000:]}", pytrace=False)
    print(f"{path.name}: {time.perf_counter() - start:.1f} s")
    errors = [o for c in notebook.cells if c.cell_type == "code" for o in c.outputs if o.output_type == "error"]
    assert not errors
    assert (tmp_path / "figures").is_dir() and any((tmp_path / "figures").iterdir()), "the notebook drew no figure"
