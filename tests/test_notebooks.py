"""Notebooks import facedet and define no library code; their cells must stay valid Python."""
import ast
import json
from pathlib import Path

NOTEBOOKS = sorted((Path(__file__).resolve().parent.parent / "notebooks").glob("*.ipynb"))


def test_notebooks_parse_and_import_facedet():
    assert NOTEBOOKS
    for path in NOTEBOOKS:
        cells = [c for c in json.loads(path.read_text())["cells"] if c["cell_type"] == "code"]
        source = "\n".join("".join(c["source"]) for c in cells)
        tree = ast.parse(source, filename=str(path))
        assert "facedet" in source
        defined = [n.name for n in ast.walk(tree) if isinstance(n, (ast.FunctionDef, ast.ClassDef))]
        assert not defined, f"{path.name} defines {defined}: library code belongs in facedet/"
