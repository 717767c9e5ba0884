"""Finding image files by name, whatever their extension.

Data sets name their images ``…/Name_0001.jpg``; after ``python -m data_prep.align`` the same image is
``…/Name_0001.png`` in the same layout. Readers therefore look an image up by its path *stem* and accept
any image extension, so that one reader works on the archive as extracted and on its aligned copy.
"""
from __future__ import annotations

from pathlib import Path

IMAGE_EXTENSIONS = (".png", ".jpg", ".jpeg", ".bmp", ".gif", ".webp", ".tif", ".tiff")


def is_image_file(path) -> bool:
    """True for a file whose extension names an image format (case-insensitive)."""
    return Path(path).suffix.lower() in IMAGE_EXTENSIONS


def find_image(root, relative) -> Path | None:
    """The image at `root`/`relative`, or the image with the same stem and another image extension.

    `relative` may carry an extension (``a/b.jpg``) or not (``a/b``); ``None`` when no such file exists.
    A name whose extension is not an image extension (``x.jpg.chip``) is treated as a stem.
    """
    path = Path(root) / relative
    if path.is_file():
        return path
    stem = path.with_suffix("") if is_image_file(path) else path
    for ext in IMAGE_EXTENSIONS + tuple(e.upper() for e in IMAGE_EXTENSIONS):
        candidate = stem.parent / (stem.name + ext)
        if candidate.is_file():
            return candidate
    return None


def image_files(root) -> list[Path]:
    """Every image file under `root` (recursively), sorted by relative path."""
    root = Path(root)
    return sorted(p for p in root.rglob("*") if p.is_file() and is_image_file(p))
