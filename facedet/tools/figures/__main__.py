"""`python -m facedet.tools.figures`: regenerate doc_images/ (see facedet/tools/figures/all.py)."""
import sys

from facedet.cli import run_cli
from facedet.tools.figures.all import main

sys.exit(run_cli(main))
