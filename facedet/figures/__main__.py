"""`python -m facedet.figures`: regenerate doc_images/ (see facedet/figures/all.py)."""
import sys

from facedet.cli import run_cli
from facedet.figures.all import main

sys.exit(run_cli(main))
