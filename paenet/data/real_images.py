"""The small real face-image sets that ``../shared/data/fetch`` lays out (see its README).

Each loader returns a ``LabelledImages`` of uint8 RGB arrays at a square size: the largest centred square
of each image, resized with antialiasing. Grayscale, RGBA and mislabelled formats (a PNG named .jpg) are
decoded by content and given 3 channels.
"""
from __future__ import annotations

import csv
import dataclasses
import os
from pathlib import Path

import numpy as np
import tensorflow as tf

from paenet.sources import cache_dir


def default_data_dir() -> Path:
    """``$PAENET_DATA_DIR``, else ``../shared/data`` beside the repository when it is there, else the
    images the demo cached (``lfw_subset/`` and ``ckplus/`` in ``$PAENET_CACHE/demo-data``) when they are."""
    if os.environ.get("PAENET_DATA_DIR"):
        return Path(os.environ["PAENET_DATA_DIR"])
    shared = Path(__file__).resolve().parents[3] / "shared" / "data"
    demo = cache_dir() / "demo-data"
    return demo if not shared.is_dir() and demo.is_dir() else shared


@dataclasses.dataclass
class LabelledImages:
    images: np.ndarray        # [N, size, size, 3] uint8
    labels: np.ndarray        # [N] int64
    class_names: list[str]
    paths: list[str]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def subset(self, indices) -> "LabelledImages":
        return LabelledImages(self.images[indices], self.labels[indices], self.class_names,
                              [self.paths[i] for i in indices])


def load_image(path, size: int) -> np.ndarray:
    """The largest centred square of the image at `path`, resized to `size` x `size`, uint8 RGB."""
    data = tf.io.read_file(str(path))
    try:
        image = tf.io.decode_image(data, channels=3, expand_animations=False)
    except tf.errors.InvalidArgumentError as e:
        raise ValueError(f"{path}: not a readable image ({e.message})") from e
    h, w = int(image.shape[0]), int(image.shape[1])
    side = min(h, w)
    image = image[(h - side) // 2:(h - side) // 2 + side, (w - side) // 2:(w - side) // 2 + side]
    image = tf.image.resize(image, (size, size), method="area", antialias=True)
    return np.asarray(tf.clip_by_value(tf.round(image), 0, 255), dtype=np.uint8)


def _require(path: Path) -> Path:
    if not path.exists():
        raise FileNotFoundError(f"{path} is missing: `python -m paenet.main --demo --workspace=demo_workspace` "
                                "caches lfw_subset and ckplus, ../shared/data/fetch lays out every set")
    return path


def _from_rows(root: Path, rows, size: int) -> LabelledImages:
    """`rows`: (relative path, class name) pairs; classes are numbered in sorted name order."""
    rows = sorted(rows)
    names = sorted({c for _, c in rows})
    index = {c: i for i, c in enumerate(names)}
    images = np.stack([load_image(root / p, size) for p, _ in rows])
    labels = np.array([index[c] for _, c in rows], np.int64)
    return LabelledImages(images, labels, names, [p for p, _ in rows])


def _csv_rows(path: Path) -> list[dict]:
    with open(_require(path), newline="") as f:
        return list(csv.DictReader(f))


def face_nonface(data_dir=None, size: int = 64) -> LabelledImages:
    """``lfw_subset/``: 100 LFW face crops (class ``face``) and 100 background patches (``nonface``)."""
    root = _require(Path(data_dir or default_data_dir()) / "lfw_subset")
    rows = [(f"{folder}/{p.name}", folder.rstrip("s"))
            for folder in ("faces", "nonfaces") for p in sorted((root / folder).glob("*.png"))]
    return _from_rows(root, rows, size)


def ckplus_identity(data_dir=None, size: int = 64) -> LabelledImages:
    """``ckplus/``: the 98 CK+ frames of 10 subjects, labelled by subject."""
    root = Path(data_dir or default_data_dir()) / "ckplus"
    rows = [(r["path"], r["subject"]) for r in _csv_rows(root / "labels.csv")
            if r["subject"] and not r["path"].startswith("extra/")]
    return _from_rows(root, rows, size)


def celebs_identity(data_dir=None, size: int = 64) -> LabelledImages:
    """``celebs/``: 118 unconstrained photos of 5 people, labelled by person."""
    root = Path(data_dir or default_data_dir()) / "celebs"
    return _from_rows(root, [(r["path"], r["person"]) for r in _csv_rows(root / "labels.csv")], size)
