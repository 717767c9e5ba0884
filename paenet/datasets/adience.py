"""Adience (Eidinger, Enbar & Hassner 2014): age group and gender in the 5 official folds.

Splits ``fold_0`` ... ``fold_4`` hold the rows of ``fold_{i}_data.txt``; cross-validation tests on one fold
and trains on the other four (``paenet.evaluation.cross_validation``). Folds are subject-disjoint.

Label rules, exactly those of the published protocol (Levi & Hassner 2015, whose fold lists are
github GilLevi/AgeGenderDeepLearning ``Folds/``; LMTCNN uses the same):

* ``age`` = index into ``AGE_GROUPS`` when the fold file's age text is exactly one of the 8 group strings
  ``(0, 2)``, ``(4, 6)``, ``(8, 12)``, ``(15, 20)``, ``(25, 32)``, ``(38, 43)``, ``(48, 53)``, ``(60, 100)``;
  -1 (unlabelled for age) for every other text: ``(8, 23)``, ``(27, 32)``, ``(38, 42)``, ``(25, 23)``,
  single ages (``35``), ``None``. (The published script maps ``(25 23)`` to ``(25, 32)``, but the files
  spell it ``(25, 23)``, so those 72 rows of fold 0 are unlabelled there as here.) ``age_label`` keeps the
  original text.
* ``gender`` = 0 for ``m``, 1 for ``f``; -1 (unlabelled) for ``u`` and blank.
* A row with neither label is dropped (counted in the build log); a task reads only the rows whose label
  for it is >= 0. A row cut short before its gender is skipped and named (file and line) in a warning,
  as AffectNet's and FER-2013's are: its missing labels are damage, not the "unlabelled" of the rules.

Examples per fold with these rules (checked against the published ``test_fold_is_k/{age,gender}_test.txt``,
which hold the same images with the same labels):

    fold             0     1     2     3     4    all
    rows          4496  3745  3953  3459  3834  19487
    age           4316  3101  3339  2975  3693  17424
    gender        4007  3624  3191  3318  3463  17603
    kept (either) 4444  3720  3409  3427  3769  18769
    subjects        34    34    34    33    33    168
"""
from __future__ import annotations

import csv

import numpy as np
import tensorflow_datasets as tfds

from paenet.datasets.common import ManualBuilder, require_file

from paenet.datasets.labels import ADIENCE_AGE_GROUPS as AGE_GROUPS, ADIENCE_AGE_NAMES as AGE_GROUP_NAMES
from paenet.datasets.labels import ADIENCE_GENDERS as GENDER_NAMES

_AGE_TEXTS = {f"({lo}, {hi})": i for i, (lo, hi) in enumerate(AGE_GROUPS)}
NUM_FOLDS = 5

MANUAL = """\
Register at the Adience site and download the face images and the fold files; extract them into
`manual_dir` so that it holds:

    fold_0_data.txt ... fold_4_data.txt
    aligned/<user_id>/landmark_aligned_face.<face_id>.<original_image>   (config `aligned`, aligned.tar.gz)
    faces/<user_id>/coarse_tilt_aligned_face.<face_id>.<original_image>  (config `faces`, faces.tar.gz)

Either image folder may be replaced by its output of `python -m data_prep.align` (same layout, .png).
"""

_LABELLED_FIELDS = ("user_id", "original_image", "face_id", "age", "gender")   # what a row needs

# config name -> (image folder, file name prefix)
_IMAGE_LAYOUTS = {"aligned": ("aligned", "landmark_aligned_face"),
                  "faces": ("faces", "coarse_tilt_aligned_face")}


def age_group(label: str) -> int:
    """The group index of a fold file's age text when it is exactly one of the 8 group strings, else -1."""
    return _AGE_TEXTS.get(label, -1)


def gender_label(text: str) -> int:
    """0 for ``m``, 1 for ``f``, -1 for anything else."""
    return {"m": 0, "f": 1}.get(text, -1)


class PaenetAdience(ManualBuilder):
    """Adience age groups and gender in the official 5 folds."""

    name = "paenet_adience"
    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {"1.0.0": "Ages mapped to the nearest group.",
                     "2.0.0": "The published label rules: only the 8 exact group strings, gender only m/f."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name=n, description=f"images from {_IMAGE_LAYOUTS[n][0]}/")
                       for n in _IMAGE_LAYOUTS]

    def _info(self):
        return self.dataset_info({
            "age": tfds.features.Scalar(np.int64, doc=f"index into {AGE_GROUP_NAMES}, -1: unlabelled"),
            "gender": tfds.features.Scalar(np.int64, doc=f"index into {GENDER_NAMES}, -1: unlabelled"),
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
                if any(row.get(field) is None for field in _LABELLED_FIELDS):
                    log.skip("rows cut short", f"{path.name} line {line_no}")
                    continue
                row = {(k or "").strip(): (v or "").strip() for k, v in row.items()}
                age, gender = age_group(row["age"]), gender_label(row["gender"])
                if age < 0 and gender < 0:
                    log.drop("no age group and no gender")
                    continue
                relative = f"{row['user_id']}/{prefix}.{row['face_id']}.{row['original_image']}"
                yield (f"{path.stem}:{line_no}", images, relative,
                       {"age": age, "gender": gender, "age_label": row["age"], "user_id": row["user_id"]})
