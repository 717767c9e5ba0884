"""Labeled Faces in the Wild (Huang et al. 2007) with its verification pairs, or any set in LFW's layout.

Two configs. ``pairs`` (default): split ``test`` holds the pairs of ``pairs.txt`` in file order, each with
both images, its fold (0-based) and whether it shows one person; pairs whose image is missing (for example
where alignment found no face) are skipped and counted, as FaceNet's evaluation does. ``images``: split
``images`` holds every ``Name/Name_NNNN.<ext>`` image with ``label`` = the person in sorted name order.
The same builder reads ``../shared/data/celebs`` and ``ckplus``, which follow this layout.
"""
from __future__ import annotations

import functools
import re

import numpy as np
import tensorflow_datasets as tfds

from paenet.datasets.common import ManualBuilder, SplitLog, first_dir, image_payload, require_file
from paenet.data.pairs import read_pairs, resolve_pairs

MANUAL = """\
Download LFW (`lfw.tgz`, or the deep-funneled `lfw-deepfunneled.tgz`) and `pairs.txt` (View 2) and put
them in `manual_dir`:

    lfw/Aaron_Eckhart/Aaron_Eckhart_0001.jpg ...   (or lfw-deepfunneled/..., or the person folders directly)
    pairs.txt

For FaceNet's protocol align first (`python -m data_prep.align --input=lfw --output=lfw_160
--image_size=160 --margin=32`) and use the aligned folder in place of `lfw/`.
"""


class PaenetLfw(ManualBuilder):
    """LFW pairs or images from the manually downloaded archive."""

    name = "paenet_lfw"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL
    BUILDER_CONFIGS = [tfds.core.BuilderConfig(name="pairs", description="pairs.txt, split `test`"),
                       tfds.core.BuilderConfig(name="images", description="every image, split `images`")]

    def _info(self):
        image = tfds.features.Image(shape=(None, None, 3))
        if self.builder_config.name == "images":
            features = {"image": image, "label": tfds.features.ClassLabel(), "file_name": tfds.features.Text()}
        else:
            features = {"image1": image, "image2": image, "same": tfds.features.Scalar(np.bool_),
                        "fold": tfds.features.Scalar(np.int32), "file_name1": tfds.features.Text(),
                        "file_name2": tfds.features.Text()}
        return tfds.core.DatasetInfo(builder=self, description=__doc__,
                                     features=tfds.features.FeaturesDict(features))

    def _split_generators(self, dl_manager):
        root = self.manual_root(dl_manager)
        images = first_dir(root, "lfw", "lfw-deepfunneled", "lfw_funneled")
        if self.builder_config.name == "pairs":
            return {"test": self._pairs(images, read_pairs(require_file(root, "pairs.txt")))}
        files = sorted(p.relative_to(images).as_posix() for p in images.glob("*/*")
                       if re.fullmatch(rf"{re.escape(p.parent.name)}_\d+\.\w+", p.name))
        people = sorted({f.split("/")[0] for f in files})
        if not people:
            raise FileNotFoundError(f"{images}: no Name/Name_NNNN images found. {MANUAL}")
        self.info.features["label"].names = people
        index = {name: i for i, name in enumerate(people)}
        rows = ((f, images, f, {"label": index[f.split("/")[0]], "file_name": f}) for f in files)
        return {"images": self._generate_examples(rows, "images")}

    def _pairs(self, images, pairs):
        log = SplitLog(self.name, "test")
        found, missing = resolve_pairs(pairs, images)
        for pair in missing:
            log.skip("pairs with a missing image", " & ".join(pair.stems))
        payload = functools.lru_cache(maxsize=None)(image_payload)  # an image is in many pairs
        for n, (pair, first, second) in enumerate(found):
            payloads = payload(first), payload(second)
            if None in payloads:
                log.skip("pairs with an unreadable image", " & ".join(pair.stems))
                continue
            yield n, {"image1": payloads[0], "image2": payloads[1], "same": pair.same, "fold": pair.fold,
                      "file_name1": first.relative_to(images).as_posix(),
                      "file_name2": second.relative_to(images).as_posix()}
        log.report()
