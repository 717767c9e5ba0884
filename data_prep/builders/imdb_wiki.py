"""IMDB-WIKI (Rothe, Timofte & Van Gool 2015/2018), face crops with gender: the extra training data of the
paper's FotW gender task. One ``train`` split holding the IMDB and the Wikipedia parts that are present.

Label rules: ``gender`` uses FotW's order (0 male, 1 female; the ``.mat`` files store 1 male, 0 female).
A row is kept only when exactly one face was detected with confidence (``face_score`` finite and >=
``MIN_FACE_SCORE``, ``second_face_score`` NaN) and its gender is known; the rest are dropped and counted in
the build log. ``age`` = year the photo was taken minus year of birth (-1 when outside 0-120).
"""
from __future__ import annotations

import datetime

import numpy as np
import tensorflow_datasets as tfds

from data_prep.builders.common import ManualBuilder

MIN_FACE_SCORE = 1.0
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


def birth_year(datenum: float) -> int | None:
    """The year of a MATLAB serial date number (days from year 0), ``None`` when it is not a date."""
    if not np.isfinite(datenum) or datenum < 367:
        return None
    try:
        return datetime.date.fromordinal(int(datenum) - 366).year
    except (ValueError, OverflowError):
        return None


def drop_reason(face_score: float, second_face_score: float, gender: float) -> str | None:
    """Why a row is dropped (``None``: kept)."""
    if not np.isfinite(face_score):
        return "no face detected"
    if face_score < MIN_FACE_SCORE:
        return f"face score below {MIN_FACE_SCORE}"
    if not np.isnan(second_face_score):
        return "a second face"
    if gender not in (0, 1):
        return "unknown gender"
    return None


class PaenetImdbWiki(ManualBuilder):
    """IMDB-WIKI face crops with gender."""

    name = "paenet_imdb_wiki"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL

    def _info(self):
        return self.dataset_info({"gender": tfds.features.ClassLabel(names=GENDERS),
                                  "age": tfds.features.Scalar(np.int64), "source": tfds.features.Text(),
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
                reason = drop_reason(meta["face_score"][n], meta["second_face_score"][n], meta["gender"][n])
                if reason:
                    log.drop(reason)
                    continue
                year = birth_year(meta["dob"][n])
                age = -1 if year is None else int(meta["photo_taken"][n]) - year
                yield (f"{part}/{relative}", folder, str(relative),
                       {"gender": 1 - int(meta["gender"][n]), "age": age if 0 <= age <= 120 else -1,
                        "source": part, "file_name": f"{part}_crop/{relative}"})
