"""Align a folder of face images FaceNet-style: ``python -m data_prep.align --input=DIR --output=DIR``.

Every image under ``--input`` becomes ``<same relative path>.png`` under ``--output``: the largest, most
central MTCNN face, cropped with ``--margin`` and resized to ``--image_size``. Use 182/44 for training data
and 160/32 for LFW. Parallel over ``--workers`` processes, resumable, faceless images listed in
``<output>/no_face.txt`` (``paenet.alignment.directory`` does the work).
"""
from __future__ import annotations

from paenet import quiet  # noqa: F401  (first: before TensorFlow loads; see paenet/quiet.py)

import os

from absl import app, flags

from paenet.alignment.directory import align_directory
from paenet.cli import flags_parser, report_errors


def main(argv):
    del argv
    f = flags.FLAGS
    print(report_errors("data_prep.align", lambda: align_directory(f.input, f.output, f.image_size, f.margin,
                                                                    f.workers)))


if __name__ == "__main__":
    flags.DEFINE_string("input", None, "Folder of images (person sub-folders), as extracted.", required=True)
    flags.DEFINE_string("output", None, "Folder for the aligned crops (same layout, .png).", required=True)
    flags.DEFINE_integer("image_size", 160, "Side of the square crop: 160 for LFW, 182 for training data.")
    flags.DEFINE_integer("margin", 32, "Pixels added around the detected box in total: 32 for LFW, 44 for "
                                       "training data.")
    flags.DEFINE_integer("workers", os.cpu_count() or 1, "Processes, each with its own detector.")
    app.run(main, flags_parser=flags_parser())
