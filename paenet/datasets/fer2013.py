"""FER-2013 (Goodfellow et al. 2013): 48x48 grayscale faces in 7 expressions, from the Kaggle csv.

Splits by the ``Usage`` column: ``train`` (Training), ``validation`` (PublicTest), ``test`` (PrivateTest);
a split with no row is left out.
``label`` = the ``emotion`` code (0 angry, 1 disgust, 2 fear, 3 happy, 4 sad, 5 surprise, 6 neutral).
Columns are found by name, so both Kaggle layouts work: ``fer2013.csv`` (``emotion,pixels,Usage``) and
``icml_face_data.csv`` (``emotion, Usage, pixels``, with spaces). Rows whose pixels are not 2304 values in
0-255, or whose emotion or Usage is unknown, are skipped and named (file and line) in a warning.
"""
from __future__ import annotations

import csv

import numpy as np
import tensorflow_datasets as tfds

from paenet.datasets.common import ManualBuilder, SplitLog

EMOTIONS = ("angry", "disgust", "fear", "happy", "sad", "surprise", "neutral")
USAGE_SPLITS = {"Training": "train", "PublicTest": "validation", "PrivateTest": "test"}
SIDE = 48

MANUAL = """\
Download the FER-2013 data from the Kaggle challenge "Challenges in Representation Learning: Facial
Expression Recognition" and put `fer2013.csv` (or `icml_face_data.csv`) anywhere in `manual_dir`.
"""


def find_csv(root):
    for name in ("fer2013.csv", "icml_face_data.csv"):
        found = sorted(root.rglob(name))
        if found:
            return found[0]
    raise FileNotFoundError(f"{root}: neither fer2013.csv nor icml_face_data.csv was found. {MANUAL}")


def parse_pixels(text: str) -> np.ndarray | None:
    """[48, 48, 1] uint8 from the space-separated pixel string, ``None`` if it is not 2304 values 0-255."""
    try:
        values = np.array(text.split(), dtype=np.int64)
    except ValueError:
        return None
    if values.size != SIDE * SIDE or values.min() < 0 or values.max() > 255:
        return None
    return values.astype(np.uint8).reshape(SIDE, SIDE, 1)


class PaenetFer2013(ManualBuilder):
    """FER-2013 from the Kaggle csv."""

    name = "paenet_fer2013"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(SIDE, SIDE, 1)),
                "label": tfds.features.ClassLabel(names=EMOTIONS),
            }),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        path = find_csv(self.manual_root(dl_manager))
        with open(path, newline="", encoding="utf-8") as f:    # TFDS refuses empty splits: only those used
            used = {(row.get("Usage") or "").strip() for row in csv.DictReader(f, skipinitialspace=True)}
        return {split: self._rows(path, usage) for usage, split in USAGE_SPLITS.items()
                if usage in used or usage == "Training"}

    def _rows(self, path, usage):
        log = SplitLog(self.name, USAGE_SPLITS[usage])
        with open(path, newline="", encoding="utf-8") as f:
            for line_no, row in enumerate(csv.DictReader(f), start=2):
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                if row.get("Usage") != usage:
                    if row.get("Usage") not in USAGE_SPLITS and usage == "Training":
                        log.skip("rows with an unknown Usage", f"{path.name} line {line_no}")
                    continue
                image = parse_pixels(row.get("pixels", ""))
                label = row.get("emotion", "")
                if image is None or label not in {str(i) for i in range(len(EMOTIONS))}:
                    log.skip("malformed rows", f"{path.name} line {line_no}")
                    continue
                yield line_no, {"image": image, "label": int(label)}
        log.report()
