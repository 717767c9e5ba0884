"""Faces of the World gender (ChaLearn LAP 2016, track 3): male / female / other.

Splits ``train``, ``validation`` and, when its labels are present, ``test``; the paper adds IMDB-WIKI to the
training data (``paenet_imdb_wiki``, whose gender uses the same class order).

**The layout this builder reads is its own, not ChaLearn's release format**: that release (FotW track 3,
smile and gender, 2016) is no longer distributed openly and its file layout could not be confirmed from
public sources. It reads, per split, a csv with a header line plus a folder of images:

    train.csv + train/<image>,  val.csv + val/<image>,  test.csv + test/<image> (optional)

The csv's image column is found by name (one of ``IMAGE_COLUMNS``: the image's path relative to the
split's folder) and so is its ``gender`` column; other columns (boxes, smile) are ignored. Gender values
are 0 / 1 / 2 (male / female / other, the order in which the challenge lists them) or words (``male``/``m``,
``female``/``f``, ``other``/``not sure``/``unsure``); rows with another value or no image are skipped and
named (file and line) in a warning.

To convert ChaLearn's files: put each split's images in ``train/``, ``val/``, ``test/``; for each split write
one csv with a header line, one row per face, holding the image's file name (column ``image``) and its
gender label (column ``gender``); if a label file has no header, adding one line that names its columns
(e.g. ``image,x,y,w,h,smile,gender``) is enough. If a label file holds several faces of one photo by
their boxes, crop each face into its own image first (``python -m data_prep.align`` keeps only the
largest, most central face of an image).
"""
from __future__ import annotations

import csv

import tensorflow_datasets as tfds

from paenet.datasets.common import ManualBuilder, first_dir

from paenet.datasets.labels import FOTW_GENDERS as GENDERS
GENDER_WORDS = {"0": 0, "male": 0, "m": 0, "1": 1, "female": 1, "f": 1,
                "2": 2, "other": 2, "not sure": 2, "unsure": 2}
IMAGE_COLUMNS = ("image", "image_name", "filename", "file_name", "file", "img", "name", "path")
SPLITS = {"train": "train", "validation": "val", "test": "test"}

MANUAL = """\
Put the FotW track-3 (smile and gender) data in `manual_dir`, one label csv and one image folder per split:

    train.csv, train/<image> ...
    val.csv,   val/<image> ...
    test.csv,  test/<image> ...   (optional)

Each csv needs a header; its image column may be called image, image_name, filename, file, img, name or
path, and its gender column gender. Image folders may be replaced by their `python -m data_prep.align`
output (same layout, .png).
"""


def column(header, candidates, path) -> str:
    """The header entry (compared without case and spaces) that is one of `candidates`."""
    by_name = {h.strip().lower(): h for h in header}
    for candidate in candidates:
        if candidate in by_name:
            return by_name[candidate]
    raise ValueError(f"{path}: no column named {' or '.join(candidates)} in its header {list(header)}")


class PaenetFotwGender(ManualBuilder):
    """FotW gender (3 classes)."""

    name = "paenet_fotw_gender"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL

    def _info(self):
        return self.dataset_info({"gender": tfds.features.ClassLabel(names=GENDERS),
                                  "file_name": tfds.features.Text()}, supervised_keys=("image", "gender"))

    def _split_generators(self, dl_manager):
        root = self.manual_root(dl_manager)
        present = {split: root / f"{stem}.csv" for split, stem in SPLITS.items()
                   if (root / f"{stem}.csv").is_file()}
        missing = [f"{SPLITS[s]}.csv" for s in ("train", "validation") if s not in present]
        if missing:
            raise FileNotFoundError(f"{root}: {', '.join(missing)} not found. {MANUAL}")
        return {split: self.labelled_split(split, self._rows, first_dir(root, SPLITS[split]), path)
                for split, path in present.items()}

    @staticmethod
    def _rows(images, path, log):
        with open(path, newline="", encoding="utf-8") as f:
            reader = csv.DictReader(f)
            image_key = column(reader.fieldnames or [], IMAGE_COLUMNS, path)
            gender_key = column(reader.fieldnames or [], ("gender",), path)
            for line_no, row in enumerate(reader, start=2):
                relative = (row[image_key] or "").strip()
                gender = GENDER_WORDS.get((row[gender_key] or "").strip().lower())
                if gender is None or not relative:
                    log.skip("rows with no image or an unknown gender", f"{path.name} line {line_no}")
                    continue
                yield f"{line_no}:{relative}", images, relative, {"gender": gender, "file_name": relative}
