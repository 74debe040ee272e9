"""Real photographs that ship with facedet: free of copyright, so the chapters, the examples and
the tests can show detectors on real faces without any download.

    from facedet.photos import PHOTOS, photo_path
    det = facedet.load()
    det(photo_path("astronaut"))

Each entry says where the photo comes from, its licence, and the face boxes marked by hand
(x1, y1, x2, y2 in pixels, brow to chin, the way faces-caltech's boxes are drawn).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from facedet.errors import DataError

FOLDER = Path(__file__).resolve().parent


@dataclass(frozen=True)
class Photo:
    file: str
    what: str
    source: str
    licence: str
    faces: tuple[tuple[int, int, int, int], ...]


PHOTOS: dict[str, Photo] = {
    "astronaut": Photo(
        file="astronaut.jpg",
        what="Eileen Collins, NASA astronaut, official portrait (512 x 512)",
        source="NASA Great Images database (https://flic.kr/p/r9qvLn), as shipped by scikit-image "
               "(skimage.data.astronaut); saved here as JPEG",
        licence="public domain (NASA: no known copyright restrictions)",
        faces=((170, 60, 285, 185),),
    ),
    "grace_hopper": Photo(
        file="grace_hopper.jpg",
        what="Commodore Grace M. Hopper, U.S. Navy official portrait, 1984 (512 x 600)",
        source="U.S. Navy photograph by James S. Davis, as shipped by Matplotlib "
               "(mpl-data/sample_data/grace_hopper.jpg); saved here as JPEG",
        licence="public domain (a work of the U.S. federal government)",
        faces=((158, 125, 372, 345),),
    ),
}


def photo_path(name: str) -> Path:
    """The file of a shipped photo (see PHOTOS)."""
    if name not in PHOTOS:
        raise DataError(f"no shipped photo named {name!r}; expected one of {', '.join(PHOTOS)}")
    return FOLDER / PHOTOS[name].file
