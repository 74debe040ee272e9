"""The chapter notebooks: they import facedet, define no library code, run top to bottom, and
are stored executed with outputs that a fresh run still prints, and their prose (and the
README's sentences about them) quotes only numbers that their code prints.

Each notebook is executed by notebooks/execute.py's `execute` (nbclient) in its own temporary
working directory (its runs/ and figures/ land there), with FACEDET_CACHE pointing to one
temporary cache shared by the notebooks of this test session (they use the same tiny synthetic
set, generated once) and MPLBACKEND=Agg. A cell that raises fails the test, naming the notebook
and the cell; stored outputs that differ from the fresh run's are named too.
"""
import ast
import importlib.util
import json
import re
import time
from pathlib import Path

import pytest

NOTEBOOK_DIR = Path(__file__).resolve().parent.parent / "notebooks"
README = NOTEBOOK_DIR.parent / "README.md"
NOTEBOOKS = sorted(NOTEBOOK_DIR.glob("*.ipynb"))
# Numbered in reading order once for the whole course: the gaps (04 localization, 06 two-stage,
# 10 augmentation, 13 capstone) are chapters still to be written, which slot in without renaming.
CHAPTERS = ["00_boxes", "01_measuring", "02_viola_jones", "03_classifier", "05_sliding_window", "07_grid", "08_yolo_face",
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


def test_chapter_titles_carry_their_reading_order_number():
    """`NN_name.ipynb` opens with `# NN · ...`: file, title and the README's tour share one numbering."""
    for path in NOTEBOOKS:
        first = json.loads(path.read_text())["cells"][0]
        assert first["cell_type"] == "markdown" and "".join(first["source"]).startswith(f"# {path.stem[:2]} · "), \
            f"{path.name}: its first cell should be the title '# {path.stem[:2]} · ...'"


def test_links_to_chapters_lead_to_chapters():
    """Every `NN_name.ipynb` that the README or a chapter names exists (a renumbering left none behind)."""
    named = re.compile(r"\b\d\d_\w+\.ipynb")
    texts = {"README.md": README.read_text()} | {p.name: p.read_text() for p in NOTEBOOKS}
    for where, text in texts.items():
        missing = sorted({m for m in named.findall(text) if not (NOTEBOOK_DIR / m).exists()})
        assert not missing, f"{where} names {missing}, which are not in notebooks/"


# --------------------------------------------------------------------------- prose against outputs
#
# Prose drifts from the outputs beside it (a parameter count quoted before a model changed, a
# share quoted from an earlier run). So a number quoted in a chapter's markdown - a decimal
# (0.4004, 71.0 %) or an integer with thousands separators (67,203,137) - must be one that the
# chapter's code prints or writes (an assert's constant counts: it is checked when the chapter
# runs), to the digits quoted; a percentage may be printed as a fraction. Numbers the chapter
# quotes from elsewhere (papers, configs, other measurements) are listed here with their source.
# Integers without separators (7 x 7, 24 px) are mostly settings and are not checked.

QUOTED = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+\.\d+)(?![.,]?\d)(\s?%|[kM]\b)?")
PRINTED = re.compile(r"\d+(?:,\d{3})+(?![\d])|\d+(?:\.\d+)?(?:e[-+]?\d+)?")

QUOTED_FROM_ELSEWHERE: dict[str, dict[str, str]] = {
    "00_boxes": {"1.8": "a side of the worked IoU (the IoU, 0.818, is printed)",
                 "3.6": "an area of the worked IoU (the IoU, 0.818, is printed)"},
    "01_measuring": {"77.2": "SSD300's VOC2007 mAP, published (Liu et al. 2016)"},
    "02_viola_jones": {"99.5": "viola_jones.yaml's model.detection_rate, 0.995",
                       "1.25": "the scan's scale step, model.scale_factor (the paper's 1.25)"},
    "03_classifier": {"0.7": "the framing figure's tightest crop, a setting of facedet/figures/classifier.py"},
    "05_sliding_window": {},
    "07_grid": {"0.2231": "a term of the worked BCE; their mean, 0.4004, is asserted",
                "0.9163": "a term of the worked BCE; their mean, 0.4004, is asserted",
                "0.1054": "a term of the worked BCE; their mean, 0.4004, is asserted",
                "0.3567": "a term of the worked BCE; their mean, 0.4004, is asserted"},
    "08_yolo_face": {},
    "09_ssd300": {},
    "11_retinanet": {"0.4": "RetinaNet's background IoU (the paper; RetinaNetLoss's bg_iou)",
                     "0.75": "1 - alpha for alpha = 0.25 (the paper)",
                     "0.85": "face boxes' h/w range, measured for retinanet_face.yaml (its comment)",
                     "1.2": "retinanet_face.yaml's one anchor ratio"},
    "12_centernet": {"0.0625": "a factor of the worked focal loss; the sum, 0.04679, is asserted",
                     "0.015625": "a factor of the worked focal loss; the sum, 0.04679, is asserted"},
}


def quoted_numbers(markdown: str) -> list[tuple[str, str]]:
    """The numbers quoted in prose, each with what follows it: "%", "k", "M" or ""."""
    return [(m.group(1), (m.group(2) or "").strip()) for m in QUOTED.finditer(markdown)]


def printed_numbers(text: str) -> list[float]:
    return [float(m.group().replace(",", "")) for m in PRINTED.finditer(text)]


def is_printed(quoted: str, unit: str, printed: list[float]) -> bool:
    """True when some printed value rounds to `quoted` at its number of decimals: 1.1M is any
    count from 1,050,000 to 1,150,000, and a percentage may be printed as one or as a fraction."""
    scale = {"k": 1e3, "M": 1e6}.get(unit, 1.0)
    value = float(quoted.replace(",", "")) * scale
    half_unit = 0.5 * 10.0 ** -(len(quoted.split(".")[1]) if "." in quoted else 0) * scale + 1e-9
    return any(abs(x - value) <= half_unit or (unit == "%" and abs(100 * x - value) <= half_unit) for x in printed)


def chapter_code_text(path: Path) -> str:
    """What the chapter's code writes and prints: every code cell's source and text outputs."""
    import nbformat

    notebook = nbformat.read(path, as_version=4)
    return "\n".join(cell.source + "\n" + "\n".join(chapters.texts(cell))
                     for cell in notebook.cells if cell.cell_type == "code")


def test_quote_checker_reads_numbers_as_a_reader_does():
    assert quoted_numbers("AP 0.6875 = 11/16, 71.0 % of CE, 26,285,486 parameters, 1.1M of them, torch 2.13.0, "
                          "[.5:.95], 31.40 G multiply-adds.") == \
        [("0.6875", ""), ("71.0", "%"), ("26,285,486", ""), ("1.1", "M"), ("31.40", "")]
    printed = printed_numbers("Total params: 116,540 | mAP=0.007706 | 8,120 negatives; 92.9 % | 1,141,889 parameters")
    assert is_printed("116,540", "", printed) and not is_printed("143,000", "", printed)
    assert is_printed("0.0077", "", printed) and not is_printed("0.0078", "", printed)
    assert is_printed("92.9", "%", printed) and not is_printed("73.6", "%", printed)
    assert is_printed("1.1", "M", printed) and not is_printed("1.2", "M", printed) and not is_printed("143", "k", printed)
    assert is_printed("77.1", "%", printed_numbers("0.771")) and not is_printed("77.1", "", printed_numbers("0.771"))


@pytest.mark.parametrize("path", NOTEBOOKS, ids=lambda p: p.stem)
def test_numbers_in_a_chapters_prose_are_printed_by_its_code(path):
    """Each decimal quoted in the chapter's markdown is printed (or asserted) by its code, or
    listed in QUOTED_FROM_ELSEWHERE with its source: prose cannot drift from the outputs."""
    pytest.importorskip("nbformat")
    elsewhere = QUOTED_FROM_ELSEWHERE.get(path.stem)
    assert elsewhere is not None, f"{path.stem}: add it to QUOTED_FROM_ELSEWHERE (an empty dict when it quotes nothing)"
    cells = json.loads(path.read_text())["cells"]
    prose = "\n".join("".join(c["source"]) for c in cells if c["cell_type"] == "markdown")
    printed = printed_numbers(chapter_code_text(path))
    quoted = quoted_numbers(prose)
    unprinted = sorted({q for q, unit in quoted if q not in elsewhere and not is_printed(q, unit, printed)})
    assert not unprinted, (f"{path.name} quotes {unprinted} in its prose, which its code does not print: "
                           "quote what the outputs say (or list a paper's constant in QUOTED_FROM_ELSEWHERE)")
    stale = sorted(set(elsewhere) - {q for q, _ in quoted})
    assert not stale, f"QUOTED_FROM_ELSEWHERE['{path.stem}'] lists {stale}, which its prose no longer quotes"


# The README's sentences that name a chapter (`11_retinanet.ipynb shows ...`) report what the
# chapter shows: each number in them (decimals, thousands, and integers of two or more digits)
# must be printed by that chapter.
README_NUMBER = re.compile(r"(?<![\w.,])(\d{1,3}(?:,\d{3})+|\d+\.\d+|\d{2,})(?![.,]?\d)(\s?%|[kM]\b)?")


def readme_sentences_about_chapters() -> list[tuple[str, str]]:
    """(chapter stem, sentence) for each README sentence that names one chapter file."""
    text = re.sub(r"```.*?```", "", README.read_text(), flags=re.S)  # commands are not prose
    found = []
    for paragraph in re.split(r"\n\s*\n", text):
        for sentence in re.split(r"(?<=[.!?])\s+(?=[A-Z`*(\[])", " ".join(paragraph.split())):
            stems = set(re.findall(r"\b(\d\d_\w+)\.ipynb", sentence))
            if len(stems) == 1:
                found.append((stems.pop(), re.sub(r"\S*\d\d_\w+\.ipynb\S*", "", sentence)))
    return found


def test_readme_sentences_about_a_chapter_quote_its_outputs():
    sentences = readme_sentences_about_chapters()
    assert any(stem == "11_retinanet" for stem, _ in sentences)  # the check reads the README's tour
    for stem, sentence in sentences:
        printed = printed_numbers(chapter_code_text(NOTEBOOK_DIR / f"{stem}.ipynb"))
        unprinted = [m.group(1) for m in README_NUMBER.finditer(sentence)
                     if not is_printed(m.group(1), (m.group(2) or "").strip(), printed)]
        assert not unprinted, f"README.md quotes {unprinted} about {stem}.ipynb, which it does not print: {sentence!r}"
