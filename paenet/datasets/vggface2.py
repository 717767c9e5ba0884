"""VGGFace2 training identities (Cao et al. 2018): FaceNet's 2018 training set, 8631 people.

Label rule: ``label`` = index of the identity folder (``n000002`` ...) in sorted order of the identities
in the training list; ``identity`` = the person's name from ``identity_meta.csv`` when present. On the full
training set this is the class order of FaceNet 20180402-114759's ``Logits`` ([512, 8631]): its
``train_softmax.py`` numbers the class folders in sorted order too.
"""
from __future__ import annotations

import tensorflow_datasets as tfds

from paenet.datasets.common import ManualBuilder, first_dir
from paenet.data.files import image_files

MANUAL = """\
Register at the VGGFace2 site, download `vggface2_train.tar.gz` (and, optionally, the meta files), and
extract them into `manual_dir` so that it holds:

    train/n000002/0001_01.jpg ...      (vggface2_train.tar.gz)
    train_list.txt                     (optional: `n000002/0001_01.jpg` per line; else train/ is scanned)
    identity_meta.csv                  (optional, here or in meta/: names of the identities)

`manual_dir` may instead hold the output of `python -m data_prep.align --image_size=182 --margin=44` run
on `train/` (same layout, .png files).
"""


def read_identity_meta(path) -> dict[str, str]:
    """Class id -> name from ``identity_meta.csv``.

    The file's quirks: a header with a space after each comma (``Class_ID, Name, ...``), names quoted, a
    trailing comma on some lines, and a few names containing an unquoted comma. So a line is read as
    ``id, name..., Sample_Num, Flag, Gender`` with the name being everything between the first field and
    the last three non-empty ones.
    """
    names = {}
    lines = path.read_text(encoding="utf-8", errors="replace").splitlines()
    for line in lines[1:]:
        fields = line.split(",")
        while fields and not fields[-1].strip():
            fields.pop()
        if len(fields) >= 5:
            names[fields[0].strip()] = ",".join(fields[1:-3]).strip().strip('"')
    return names


class PaenetVggface2(ManualBuilder):
    """VGGFace2 train identities, from the manually downloaded archive."""

    name = "paenet_vggface2"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL

    def _info(self):
        return self.dataset_info({"label": tfds.features.ClassLabel(), "identity": tfds.features.Text(),
                                  "file_name": tfds.features.Text()}, supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        root = self.manual_root(dl_manager)
        images = first_dir(root, "train")
        listing = next((p for p in (root / "train_list.txt", root / "meta" / "train_list.txt") if p.is_file()),
                       None)
        if listing:
            files = [l.strip() for l in listing.read_text().splitlines() if l.strip()]
        else:
            files = [p.relative_to(images).as_posix() for p in image_files(images)]
        classes = sorted({f.split("/")[0] for f in files})
        if not classes:
            raise FileNotFoundError(f"{images}: no identity folders found. {MANUAL}")
        self.info.features["label"].names = classes
        meta = next((p for p in (root / "identity_meta.csv", root / "meta" / "identity_meta.csv")
                     if p.is_file()), None)
        names = read_identity_meta(meta) if meta else {}
        index = {c: i for i, c in enumerate(classes)}
        rows = ((f, images, f, {"label": index[f.split("/")[0]], "identity": names.get(f.split("/")[0], ""),
                                "file_name": f}) for f in files)
        return {"train": self._generate_examples(rows, "train")}
