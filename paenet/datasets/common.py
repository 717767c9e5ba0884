"""What every manual-download builder shares: the manual folder, image checks, and counted skips.

Each builder reads what the user downloaded and extracted into ``manual_dir`` (never the network), either
as extracted or after ``python -m data_prep.align`` wrote the same layout with ``.png`` files
(``paenet.data.files.find_image`` accepts both). An image that is missing or cannot be decoded is skipped;
a split's skips are counted and named in one warning when the split is written. Rows dropped by a
documented label rule (e.g. AffectNet's contempt) are counted in an info line, not warned about.
"""
from __future__ import annotations

import collections
import logging
import os
import sys
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds
from PIL import Image

from paenet.data.files import find_image

logger = logging.getLogger("paenet.datasets")

# Encoded bytes that ``tf.image.decode_image(channels=3)`` reads as they are: (format, PIL mode) pairs.
_PASS_THROUGH = {("JPEG", "RGB"), ("JPEG", "L"), ("PNG", "RGB"), ("PNG", "RGBA"), ("PNG", "L"),
                 ("PNG", "LA"), ("PNG", "P")}


def image_payload(path: Path):
    """What to store for the image at `path`: its bytes when TensorFlow decodes them as they are, an RGB
    array (re-encoded as PNG by TFDS) for other formats and modes (CMYK JPEG, GIF, BMP, TIFF ...), or
    ``None`` when the file cannot be decoded (truncated, not an image)."""
    try:
        with Image.open(path) as image:
            image.load()
            if (image.format, image.mode) in _PASS_THROUGH:
                return Path(path).read_bytes()
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError):
        return None


class SplitLog:
    """Counts what a split leaves out: `skip` (missing or unreadable files; warned, with their names) and
    `drop` (rows a label rule excludes; counted in an info line)."""

    def __init__(self, dataset: str, split: str):
        self.where = f"{dataset}[{split}]"
        self.skipped = collections.defaultdict(list)
        self.dropped = collections.Counter()

    def skip(self, reason: str, name: str) -> None:
        self.skipped[reason].append(str(name))

    def drop(self, reason: str) -> None:
        self.dropped[reason] += 1

    def report(self) -> None:
        for reason, names in sorted(self.skipped.items()):
            logger.warning("%s: %d %s skipped: %s", self.where, len(names), reason, ", ".join(names))
        for reason, count in sorted(self.dropped.items()):
            logger.info("%s: %d rows dropped (%s)", self.where, count, reason)


class ManualBuilder(tfds.core.GeneratorBasedBuilder):
    """A builder over files the user downloaded: subclasses list (key, image, features) rows, this class
    turns them into examples (``_generate_examples``), skipping and counting what cannot be used."""

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "First release."}

    def dataset_info(self, features: dict, supervised_keys=None) -> tfds.core.DatasetInfo:
        """The info of a data set whose examples are an RGB ``image`` plus `features`, described by the
        builder module's docstring (its label rules)."""
        features = {"image": tfds.features.Image(shape=(None, None, 3)), **features}
        return tfds.core.DatasetInfo(builder=self, description=sys.modules[type(self).__module__].__doc__,
                                     features=tfds.features.FeaturesDict(features),
                                     supervised_keys=supervised_keys)

    @staticmethod
    def manual_root(dl_manager) -> Path:
        """The manual folder (TFDS itself refuses a missing or empty one, quoting the instructions)."""
        return Path(os.fspath(dl_manager.manual_dir))

    def labelled_split(self, split: str, rows, *args):
        """Examples of `split` from the generator ``rows(*args, log)``, which may drop rows by a label
        rule into the split's log."""
        log = SplitLog(self.name, split)
        return self._generate_examples(rows(*args, log), split, log)

    def _generate_examples(self, rows, split: str, log: SplitLog | None = None):
        """Yields (key, example) for `rows`: (key, image root, image path relative to it, other
        features). Rows whose image is missing or unreadable are skipped and reported with what `log`
        already counted (label-rule drops) when the split is done."""
        log = log or SplitLog(self.name, split)
        for key, root, relative, features in rows:
            path = find_image(root, relative)
            payload = None if path is None else image_payload(path)
            if path is None:
                log.skip("missing images", relative)
            elif payload is None:
                log.skip("unreadable images", path.relative_to(root).as_posix())
            else:
                yield key, {"image": payload, **features}
        log.report()


def require_file(root: Path, *candidates: str) -> Path:
    """The first of `candidates` (paths relative to `root`) that exists; a clear error naming them all."""
    for candidate in candidates:
        if (root / candidate).is_file():
            return root / candidate
    raise FileNotFoundError(f"{root}: none of {', '.join(candidates)} was found; see the builder's manual "
                            "download instructions")


def first_dir(root: Path, *candidates: str) -> Path:
    """The first of `candidates` (folders relative to `root`) that exists, else `root` itself."""
    for candidate in candidates:
        if (root / candidate).is_dir():
            return root / candidate
    return root
