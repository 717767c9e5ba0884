"""UTKFace (Zhang, Song & Qi 2017): age, gender and race from the file names; one ``train`` split.

A file is named ``[age]_[gender]_[race]_[date&time].jpg`` (the aligned-and-cropped set
appends ``.chip.jpg``): age in years, gender 0 male / 1 female, race 0 White, 1 Black, 2 Asian, 3 Indian,
4 Others. A few released files miss a field (e.g. ``39_1_20170116174525125.jpg.chip.jpg`` has no race);
files whose name does not parse are skipped and named in a warning. There is no official split.
"""
from __future__ import annotations

import re

import numpy as np
import tensorflow_datasets as tfds

from paenet.datasets.common import ManualBuilder
from paenet.data.files import image_files

GENDERS = ("male", "female")
RACES = ("white", "black", "asian", "indian", "others")
NAME = re.compile(r"(\d{1,3})_([01])_([0-4])_(\d+)\D.*")

MANUAL = """\
Download UTKFace ("Aligned&Cropped Faces", `UTKFace.tar.gz`, or the in-the-wild `part1-3`) and extract
it into `manual_dir`; every image below `manual_dir` whose name carries the labels is used, e.g.

    UTKFace/1_0_0_20161219140623097.jpg.chip.jpg ...
"""


def parse_name(name: str) -> tuple[int, int, int] | None:
    """(age, gender, race) from a UTKFace file name, ``None`` when it does not follow the pattern."""
    match = NAME.fullmatch(name)
    return None if match is None else (int(match[1]), int(match[2]), int(match[3]))


class PaenetUtkface(ManualBuilder):
    """UTKFace with labels from the file names."""

    name = "paenet_utkface"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL

    def _info(self):
        return self.dataset_info({"age": tfds.features.Scalar(np.int64),
                                  "gender": tfds.features.ClassLabel(names=GENDERS),
                                  "race": tfds.features.ClassLabel(names=RACES),
                                  "file_name": tfds.features.Text()})

    def _split_generators(self, dl_manager):
        root = self.manual_root(dl_manager)
        return {"train": self.labelled_split("train", self._rows, root)}

    @staticmethod
    def _rows(root, log):
        for path in image_files(root):
            relative = path.relative_to(root).as_posix()
            labels = parse_name(path.name)
            if labels is None:
                log.skip("files whose name carries no labels", relative)
                continue
            age, gender, race = labels
            yield relative, root, relative, {"age": age, "gender": gender, "race": race, "file_name": relative}
