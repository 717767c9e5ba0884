"""AffectNet (Mollahosseini et al. 2017), manually annotated part: the 7 basic expressions.

Splits: ``train`` (``training.csv``) and ``validation`` (``validation.csv``, the official validation set of
500 images per class, which the paper reports on). Label rule: ``label`` = the file's ``expression`` code
for 0-6 (neutral, happy, sad, surprise, fear, disgust, anger); codes 7 (contempt), 8 (none),
9 (uncertain) and 10 (non-face) are dropped and counted in the build log. Any other code, a row cut
short, or a blank or non-numeric field among those read (path, expression, valence, arousal) skips the
row; the split's warning names the file and each such line. Class weights (N - n_c) / n_c for training
come from the data (``paenet.data.pipeline.class_weights``).
"""
from __future__ import annotations

import csv

import numpy as np
import tensorflow_datasets as tfds

from paenet.datasets.common import ManualBuilder, first_dir, require_file

from paenet.datasets.labels import AFFECTNET_EXPRESSIONS as EXPRESSIONS
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
    """``(line number, fields)`` per data row of an AffectNet list, fields a dict in the official column
    order (fewer keys when the row is cut short); a header line is recognised rather than assumed, so a
    list saved without one reads the same."""
    with open(path, newline="", encoding="utf-8") as f:
        reader = csv.reader(f)
        for fields in reader:
            if not fields or (reader.line_num == 1 and fields[0].strip() == COLUMNS[0]):
                continue
            yield reader.line_num, dict(zip(COLUMNS, (v.strip() for v in fields)))


def parse_row(fields: dict) -> tuple[str, int, float, float] | None:
    """(image path, expression code, valence, arousal), or ``None`` when one of them is blank or not a
    number (a damaged row)."""
    try:
        path, code = fields["subDirectory_filePath"], int(fields["expression"])
        valence, arousal = float(fields["valence"]), float(fields["arousal"])
    except (KeyError, ValueError):
        return None
    return (path, code, valence, arousal) if path else None


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
        for line_no, fields in read_rows(path):
            row = parse_row(fields)
            if row is None:
                log.skip("rows cut short or with a blank field", f"{path.name} line {line_no}")
                continue
            relative, code, valence, arousal = row
            if code in DROPPED:
                log.drop(DROPPED[code])
                continue
            if code not in range(len(EXPRESSIONS)):
                log.skip("rows with an unknown expression code", f"{path.name} line {line_no} (code {code})")
                continue
            yield (f"{line_no}:{relative}", images, relative,
                   {"label": code, "valence": valence, "arousal": arousal, "file_name": relative})
