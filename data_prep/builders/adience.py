"""Adience (Eidinger, Enbar & Hassner 2014): age group and gender in the 5 official folds.

Splits ``fold_0`` ... ``fold_4`` hold the rows of ``fold_{i}_data.txt``; cross-validation tests on one fold
and trains on the other four (``paenet.evaluation.cross_validation``). Folds are subject-disjoint.

Label rules (the fold files' ``age`` column holds more than the 8 official groups):

* ``age`` = index into ``AGE_GROUPS`` (0-2, 4-6, 8-13, 15-20, 25-32, 38-43, 48-53, 60-100), or -1.
  A single age maps to the group nearest to it (distance 0 inside a group); an interval ``(a, b)`` maps
  to a group only when both ends map to that same group. Ages equally near two groups, and intervals
  whose ends fall in different groups, are ambiguous and get -1. So ``(8, 12)`` (the files' spelling of
  8-13) -> 8-13, ``(38, 42)`` -> 38-43, ``(27, 32)`` -> 25-32, ``22`` -> 15-20, ``23`` -> 25-32,
  ``57`` -> 60-100; ``(8, 23)``, ``(38, 48)``, ``3`` and ``35`` (equally near two groups) and ``None``
  -> -1. ``age_label`` keeps the original text for other rules.
* ``gender`` = 0 for ``m``, 1 for ``f``, -1 for ``u`` and blank.
* A row with neither an age group nor a gender is dropped (counted in the build log); a task reads only
  the rows whose label for it is >= 0.
"""
from __future__ import annotations

import csv
import re

import numpy as np
import tensorflow_datasets as tfds

from data_prep.builders.common import ManualBuilder, require_file

AGE_GROUPS = ((0, 2), (4, 6), (8, 13), (15, 20), (25, 32), (38, 43), (48, 53), (60, 100))
AGE_GROUP_NAMES = tuple(f"{lo}-{hi}" for lo, hi in AGE_GROUPS)
GENDER_NAMES = ("male", "female")
NUM_FOLDS = 5

MANUAL = """\
Register at the Adience site and download the face images and the fold files; extract them into
`manual_dir` so that it holds:

    fold_0_data.txt ... fold_4_data.txt
    aligned/<user_id>/landmark_aligned_face.<face_id>.<original_image>   (config `aligned`, aligned.tar.gz)
    faces/<user_id>/coarse_tilt_aligned_face.<face_id>.<original_image>  (config `faces`, faces.tar.gz)

Either image folder may be replaced by its output of `python -m data_prep.align` (same layout, .png).
"""

# config name -> (image folder, file name prefix)
_IMAGE_LAYOUTS = {"aligned": ("aligned", "landmark_aligned_face"),
                  "faces": ("faces", "coarse_tilt_aligned_face")}


def nearest_group(age: float) -> int | None:
    """Index of the age group nearest to `age` (0 inside a group); ``None`` if two are equally near."""
    distance = np.array([max(lo - age, 0, age - hi) for lo, hi in AGE_GROUPS], dtype=np.float64)
    best = np.flatnonzero(distance == distance.min())
    return int(best[0]) if len(best) == 1 else None


def age_group(label: str) -> int:
    """The group index of a fold file's age text (see the module docstring), -1 when none applies."""
    ends = [float(v) for v in re.findall(r"\d+(?:\.\d+)?", label or "")]
    if len(ends) not in (1, 2):
        return -1
    groups = {nearest_group(v) for v in ends}
    return groups.pop() if len(groups) == 1 and None not in groups else -1


def gender_label(text: str) -> int:
    return {"m": 0, "f": 1}.get((text or "").strip().lower(), -1)


class PaenetAdience(ManualBuilder):
    """Adience age groups and gender in the official 5 folds."""

    name = "paenet_adience"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n, description=f"images from {_IMAGE_LAYOUTS[n][0]}/")
                       for n in _IMAGE_LAYOUTS]

    def _info(self):
        return self.dataset_info({
            "age": tfds.features.Scalar(np.int64, doc=f"index into {AGE_GROUP_NAMES}, -1: none"),
            "gender": tfds.features.Scalar(np.int64, doc=f"index into {GENDER_NAMES}, -1: unknown"),
            "age_label": tfds.features.Text(), "user_id": tfds.features.Text()})

    def _split_generators(self, dl_manager):
        root = self.manual_root(dl_manager)
        folder, prefix = _IMAGE_LAYOUTS[self.builder_config.name]
        folds = [require_file(root, f"fold_{i}_data.txt") for i in range(NUM_FOLDS)]
        return {f"fold_{i}": self.labelled_split(f"fold_{i}", self._rows, root / folder, prefix, path)
                for i, path in enumerate(folds)}

    @staticmethod
    def _rows(images, prefix, path, log):
        with open(path, newline="", encoding="utf-8") as f:
            for line_no, row in enumerate(csv.DictReader(f, delimiter="\t"), start=2):
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                age, gender = age_group(row["age"]), gender_label(row["gender"])
                if age < 0 and gender < 0:
                    log.drop("no age group and no gender")
                    continue
                relative = f"{row['user_id']}/{prefix}.{row['face_id']}.{row['original_image']}"
                yield (f"{path.stem}:{line_no}", images, relative,
                       {"age": age, "gender": gender, "age_label": row["age"], "user_id": row["user_id"]})
