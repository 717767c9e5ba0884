"""CIFAR-100 (Krizhevsky 2009): 32x32 colour images in 100 fine classes grouped in 20 coarse ones.

Splits ``train`` (50,000) and ``test`` (10,000) from the python version's archive
``cifar-100-python.tar.gz`` (or its extracted folder ``cifar-100-python/``): the pickled dicts ``train``
and ``test`` (``data``: [N, 3072] uint8 rows, the red, green and blue 32x32 planes one after another;
``fine_labels``; ``coarse_labels``; ``filenames``) and ``meta`` (the class names). ``label`` = the fine
class, ``coarse_label`` its superclass, ``file_name`` CIFAR's name of the image. The pickles are read
with an unpickler that builds nothing but numpy arrays and plain containers; one that does not hold
what CIFAR's do is refused, naming the file.
"""
from __future__ import annotations

import io
import pickle
import tarfile
from pathlib import Path

import numpy as np
import tensorflow_datasets as tfds

from paenet.datasets.common import ManualBuilder

ARCHIVE = "cifar-100-python.tar.gz"
FOLDER = "cifar-100-python"

MANUAL = f"""\
Download the CIFAR-100 python version (`{ARCHIVE}`, from Alex Krizhevsky's CIFAR page) and put the
archive, or the folder `{FOLDER}/` extracted from it, in `manual_dir`.
"""

# What CIFAR's pickles reference (Python 2 numpy arrays; bytes re-encoded by protocol 2 from Python 3).
_ALLOWED = {("numpy.core.multiarray", "_reconstruct"), ("numpy._core.multiarray", "_reconstruct"),
            ("numpy", "ndarray"), ("numpy", "dtype"), ("_codecs", "encode")}


class CifarError(ValueError):
    """A CIFAR-100 file that is missing, unreadable or not in CIFAR's format (the message names it)."""


class _ArraysOnly(pickle.Unpickler):
    def find_class(self, module, name):
        if (module, name) not in _ALLOWED:
            raise pickle.UnpicklingError(f"refusing to load {module}.{name}")
        return super().find_class(module, name)


def read_pickle(data: bytes, where: str) -> dict:
    """The dict pickled in `data` (keys as bytes, CIFAR's Python 2 form)."""
    try:
        loaded = _ArraysOnly(io.BytesIO(data), encoding="bytes").load()
    except Exception as e:    # a corrupt pickle can raise almost anything
        raise CifarError(f"{where}: not a readable CIFAR pickle ({type(e).__name__}: {e})") from None
    if not isinstance(loaded, dict):
        raise CifarError(f"{where}: expected a pickled dict, got {type(loaded).__name__}")
    return loaded


def read_members(root: Path) -> dict[str, dict]:
    """The ``train``, ``test`` and ``meta`` dicts from the archive or the extracted folder in `root`."""
    names = ("train", "test", "meta")
    folder = root / FOLDER
    if folder.is_dir():
        missing = [n for n in names if not (folder / n).is_file()]
        if missing:
            raise CifarError(f"{folder}: missing {', '.join(missing)}. {MANUAL}")
        return {n: read_pickle((folder / n).read_bytes(), str(folder / n)) for n in names}
    archive = root / ARCHIVE
    if not archive.is_file():
        raise FileNotFoundError(f"{root}: neither {ARCHIVE} nor {FOLDER}/ found. {MANUAL}")
    try:
        with tarfile.open(archive, "r:gz") as tar:
            members = {m.name: m for m in tar.getmembers()}
            missing = [n for n in names if f"{FOLDER}/{n}" not in members]
            if missing:
                raise CifarError(f"{archive}: no {', '.join(f'{FOLDER}/{n}' for n in missing)} in the archive")
            return {n: read_pickle(tar.extractfile(members[f"{FOLDER}/{n}"]).read(), f"{archive}:{FOLDER}/{n}")
                    for n in names}
    except (tarfile.TarError, OSError, EOFError) as e:
        raise CifarError(f"{archive}: corrupt archive ({e})") from None


def class_names(meta: dict, where: str) -> tuple[list[str], list[str]]:
    """(fine, coarse) class names from the ``meta`` dict."""
    try:
        return ([n.decode() for n in meta[b"fine_label_names"]], [n.decode() for n in meta[b"coarse_label_names"]])
    except (KeyError, AttributeError, TypeError) as e:
        raise CifarError(f"{where}: no fine_label_names/coarse_label_names of bytes ({e})") from None


def split_arrays(part: dict, where: str, fine: int, coarse: int):
    """(images [N, 32, 32, 3] uint8, fine labels, coarse labels, file names) of one pickled split,
    checked against CIFAR's format and the `fine` and `coarse` class counts."""
    try:
        data = np.asarray(part[b"data"])
        labels = np.asarray(part[b"fine_labels"], np.int64), np.asarray(part[b"coarse_labels"], np.int64)
        files = [f.decode() for f in part[b"filenames"]]
    except (KeyError, AttributeError, TypeError, ValueError) as e:
        raise CifarError(f"{where}: not a CIFAR-100 split: needs data, fine_labels, coarse_labels, filenames "
                         f"({type(e).__name__}: {e})") from None
    n = len(data)
    if data.dtype != np.uint8 or data.shape != (n, 3072):
        raise CifarError(f"{where}: data must be [N, 3072] uint8, got {list(data.shape)} {data.dtype}")
    if any(len(x) != n for x in (*labels, files)):
        raise CifarError(f"{where}: {n} images but {len(labels[0])} fine labels, {len(labels[1])} coarse labels, "
                         f"{len(files)} file names")
    for values, count, what in ((labels[0], fine, "fine"), (labels[1], coarse, "coarse")):
        if n and (values.min() < 0 or values.max() >= count):
            raise CifarError(f"{where}: {what} labels outside 0..{count - 1}")
    return data.reshape(n, 3, 32, 32).transpose(0, 2, 3, 1), *labels, files


class PaenetCifar100(ManualBuilder):
    """CIFAR-100 from the python version's archive."""

    name = "paenet_cifar100"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(32, 32, 3)),
                "label": tfds.features.ClassLabel(num_classes=100),
                "coarse_label": tfds.features.ClassLabel(num_classes=20),
                "file_name": tfds.features.Text(),
            }),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        root = self.manual_root(dl_manager)
        parts = read_members(root)
        fine, coarse = class_names(parts["meta"], f"{root}: meta")
        if len(fine) != 100 or len(coarse) != 20:
            raise CifarError(f"{root}: meta names {len(fine)} fine and {len(coarse)} coarse classes, not 100 and 20")
        self.info.features["label"].names = fine
        self.info.features["coarse_label"].names = coarse
        return {split: self._examples(*split_arrays(parts[split], f"{root}: {split}", 100, 20))
                for split in ("train", "test")}

    @staticmethod
    def _examples(images, fine, coarse, files):
        for i in range(len(images)):
            yield i, {"image": images[i], "label": int(fine[i]), "coarse_label": int(coarse[i]),
                      "file_name": files[i]}
