"""IMDB-WIKI (Rothe, Timofte & Van Gool 2015/2018), face crops with gender: the extra training data of the
paper's FotW gender task. One ``train`` split holding the IMDB and the Wikipedia parts that are present.

Rows are filtered as github yu4u/age-gender-estimation's ``create_db.py`` does (the common cleaning of this
set), in its order, each drop counted in the build log by its reason:

* ``face_score`` >= 1 (``-inf``, no face detected, and weak detections are dropped);
* no second face with a score > 0 (``second_face_score`` NaN or <= 0);
* ``age`` in 0-100, where age = year the photo was taken minus year of birth, minus one more when the
  birthday falls in July-December (the photo is assumed taken mid-year); a ``dob`` that is not a date
  gives no age and is dropped;
* ``gender`` not NaN.

``gender`` uses FotW's order (0 male, 1 female; the ``.mat`` files store 1 male, 0 female).
"""
from __future__ import annotations

import datetime

import numpy as np
import tensorflow_datasets as tfds

from paenet.datasets.common import ManualBuilder

MIN_FACE_SCORE = 1.0
MAX_AGE = 100
GENDERS = ("male", "female")
PARTS = ("imdb", "wiki")

MANUAL = """\
Download the face-only archives `imdb_crop.tar` and/or `wiki_crop.tar` of IMDB-WIKI and extract them into
`manual_dir`:

    imdb_crop/imdb.mat, imdb_crop/00/nm0000100_rm..._1955-1-6_2011.jpg ...
    wiki_crop/wiki.mat, wiki_crop/00/..._1966-5-1_2009.jpg ...
"""


def read_metadata(path, part: str) -> dict[str, np.ndarray]:
    """The per-image fields of ``imdb.mat`` / ``wiki.mat`` as flat arrays (MATLAB struct of 1xN rows)."""
    from scipy.io import loadmat
    meta = loadmat(path, squeeze_me=True)[part]
    fields = ("full_path", "gender", "face_score", "second_face_score", "dob", "photo_taken")
    return {f: np.atleast_1d(meta[f].item()) for f in fields}


def birth_date(datenum: float) -> datetime.date | None:
    """The date of a MATLAB serial date number (days from year 0), ``None`` when it is not a date."""
    if not np.isfinite(datenum) or datenum < 367:
        return None
    try:
        return datetime.date.fromordinal(int(datenum) - 366)
    except (ValueError, OverflowError):
        return None


def age_at_photo(dob: float, photo_taken: float) -> int | None:
    """Age in the year `photo_taken` with the mid-year rule of the module docstring; ``None`` without a
    date of birth."""
    born = birth_date(dob)
    if born is None or not np.isfinite(photo_taken):
        return None
    return int(photo_taken) - born.year - (born.month >= 7)


def drop_reason(face_score: float, second_face_score: float, age: int | None, gender: float) -> str | None:
    """Why a row is dropped (``None``: kept), tested in ``create_db.py``'s order."""
    if np.isneginf(face_score):
        return "no face detected"
    if face_score < MIN_FACE_SCORE:
        return f"face score below {MIN_FACE_SCORE}"
    if second_face_score > 0:
        return "a second face"
    if age is None or not 0 <= age <= MAX_AGE:
        return f"age outside 0-{MAX_AGE}"
    if np.isnan(gender):
        return "unknown gender"
    return None


class PaenetImdbWiki(ManualBuilder):
    """IMDB-WIKI face crops with gender."""

    name = "paenet_imdb_wiki"
    VERSION = tfds.core.Version("2.0.0")
    RELEASE_NOTES = {"1.0.0": "Any second face dropped; age by birth year.",
                     "2.0.0": "create_db.py's filter and mid-year age rule."}
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL

    def _info(self):
        return self.dataset_info({"gender": tfds.features.ClassLabel(names=GENDERS),
                                  "age": tfds.features.Scalar(np.int64, doc=f"years, 0-{MAX_AGE}"),
                                  "source": tfds.features.Text(),
                                  "file_name": tfds.features.Text()})

    def _split_generators(self, dl_manager):
        root = self.manual_root(dl_manager)
        parts = [(part, root / f"{part}_crop") for part in PARTS
                 if (root / f"{part}_crop" / f"{part}.mat").is_file()]
        if not parts:
            raise FileNotFoundError(f"{root}: neither imdb_crop/imdb.mat nor wiki_crop/wiki.mat was found. "
                                    f"{MANUAL}")
        return {"train": self.labelled_split("train", self._rows, parts)}

    @staticmethod
    def _rows(parts, log):
        for part, folder in parts:
            meta = read_metadata(folder / f"{part}.mat", part)
            for n, relative in enumerate(meta["full_path"]):
                age = age_at_photo(meta["dob"][n], meta["photo_taken"][n])
                reason = drop_reason(meta["face_score"][n], meta["second_face_score"][n], age, meta["gender"][n])
                if reason:
                    log.drop(reason)
                    continue
                yield (f"{part}/{relative}", folder, str(relative),
                       {"gender": 1 - int(meta["gender"][n]), "age": age, "source": part,
                        "file_name": f"{part}_crop/{relative}"})
