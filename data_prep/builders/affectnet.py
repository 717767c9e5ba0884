"""AffectNet (Mollahosseini et al. 2017), manually annotated part: the 7 basic expressions.

Splits: ``train`` (``training.csv``) and ``validation`` (``validation.csv``, the official validation set of
500 images per class, which the paper reports on). Label rule: ``label`` = the file's ``expression`` code
for 0-6 (neutral, happy, sad, surprise, fear, disgust, anger); codes 7 (contempt), 8 (none),
9 (uncertain) and 10 (non-face) are dropped and counted in the build log. Class weights
(N - n_c) / n_c for training come from the data (``paenet.data.pipeline.class_weights``).
"""
from __future__ import annotations

import csv

import numpy as np
import tensorflow_datasets as tfds

from data_prep.builders.common import ManualBuilder, first_dir, require_file

EXPRESSIONS = ("neutral", "happy", "sad", "surprise", "fear", "disgust", "anger")
DROPPED = {7: "contempt", 8: "none", 9: "uncertain", 10: "non-face"}
COLUMNS = ("subDirectory_filePath", "face_x", "face_y", "face_width", "face_height", "facial_landmarks",
           "expression", "valence", "arousal")

MANUAL = """\
Request AffectNet from its authors, then extract the manually annotated images and file lists into
`manual_dir`:

    Manually_Annotated_file_lists/training.csv
    Manually_Annotated_file_lists/validation.csv
    Manually_Annotated_Images/<n>/<hash>.jpg      (or Manually_Annotated/Manually_Annotated_Images/...)

The image folder may be replaced by its output of `python -m data_prep.align` (same layout, .png).
"""


def read_rows(path):
    """Rows of an AffectNet list as dicts, in the official column order; a header line is recognised
    rather than assumed, so a list saved without one reads the same."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        first = next(reader, None)
        if first is None:
            return
        if [c.strip() for c in first[:1]] != [COLUMNS[0]]:
            yield dict(zip(COLUMNS, first))
        for fields in reader:
            if fields:
                yield dict(zip(COLUMNS, fields))


class PaenetAffectnet(ManualBuilder):
    """AffectNet's 7 basic expressions."""

    name = "paenet_affectnet"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL

    def _info(self):
        return self.dataset_info({"label": tfds.features.ClassLabel(names=EXPRESSIONS),
                                  "valence": tfds.features.Scalar(np.float32),
                                  "arousal": tfds.features.Scalar(np.float32),
                                  "file_name": tfds.features.Text()}, supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        root = self.manual_root(dl_manager)
        images = first_dir(root, "Manually_Annotated_Images", "Manually_Annotated/Manually_Annotated_Images",
                           "Manually_Annotated_compressed/Manually_Annotated_Images")
        lists = {split: require_file(root, f"Manually_Annotated_file_lists/{name}", name)
                 for split, name in (("train", "training.csv"), ("validation", "validation.csv"))}
        return {split: self.labelled_split(split, self._rows, images, path) for split, path in lists.items()}

    @staticmethod
    def _rows(images, path, log):
        for n, row in enumerate(read_rows(path)):
            code = int(row["expression"])
            if code not in range(len(EXPRESSIONS)):
                log.drop(DROPPED.get(code, f"unknown code {code}"))
                continue
            relative = row["subDirectory_filePath"].strip()
            yield (f"{n}:{relative}", images, relative,
                   {"label": code, "valence": float(row["valence"]), "arousal": float(row["arousal"]),
                    "file_name": relative})
