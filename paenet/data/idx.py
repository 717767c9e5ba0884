"""Reader of IDX files (LeCun's MNIST format, also Fashion-MNIST's), gzip'd or plain.

An IDX file is a 4-byte magic number (two zero bytes, a type code, the number of dimensions), one
big-endian int32 per dimension, then the values in row-major order, big-endian. Whether a file is
gzip'd is read from its first bytes, not its name. Anything that does not add up (bad magic number,
fewer or more bytes than the header says, a broken gzip stream) is refused with an ``IdxError`` whose
message is one line naming the file.

``load_fashion_mnist`` reads the four files of Fashion-MNIST (Xiao et al. 2017) as Debian's package
``dataset-fashion-mnist`` installs them, in ``/usr/share/datasets/fashion-mnist/``.
"""
from __future__ import annotations

import gzip
import zlib
from pathlib import Path

import numpy as np

FASHION_MNIST_DIR = "/usr/share/datasets/fashion-mnist/"
FASHION_MNIST_FILES = ("train-images-idx3-ubyte", "train-labels-idx1-ubyte",
                       "t10k-images-idx3-ubyte", "t10k-labels-idx1-ubyte")
FASHION_MNIST_CLASSES = ("T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot")

# IDX type code -> big-endian numpy dtype.
_TYPES = {0x08: np.dtype("u1"), 0x09: np.dtype("i1"), 0x0B: np.dtype(">i2"), 0x0C: np.dtype(">i4"),
          0x0D: np.dtype(">f4"), 0x0E: np.dtype(">f8")}


class IdxError(ValueError):
    """A file that is not a well-formed IDX file, or not the one expected (its message names it)."""


def parse_idx(data: bytes, where: str = "<bytes>") -> np.ndarray:
    """The array held by the IDX bytes `data` (already decompressed); `where` names them in errors."""
    if len(data) < 4:
        raise IdxError(f"{where}: truncated IDX file: {len(data)} bytes, not even a magic number")
    zero, code, ndim = data[:2], data[2], data[3]
    if zero != b"\0\0" or code not in _TYPES or ndim == 0:
        raise IdxError(f"{where}: bad IDX magic number 0x{data[:4].hex()} (expected 0x0000TTNN: type code TT "
                       f"in {sorted(hex(c) for c in _TYPES)}, NN >= 1 dimensions)")
    header = 4 + 4 * ndim
    if len(data) < header:
        raise IdxError(f"{where}: truncated IDX header: {len(data)} bytes, {header} expected for {ndim} dimensions")
    shape = tuple(int(d) for d in np.frombuffer(data, ">u4", ndim, offset=4))
    dtype = _TYPES[code]
    expected = header + int(np.prod(shape, dtype=np.int64)) * dtype.itemsize
    if len(data) != expected:
        what = "truncated" if len(data) < expected else "trailing bytes after the data"
        raise IdxError(f"{where}: {what}: {len(data)} bytes, but the header's shape {shape} of {dtype.name} "
                       f"needs {expected}")
    return np.frombuffer(data, dtype, offset=header).reshape(shape).astype(dtype.newbyteorder("="))


def read_idx(path) -> np.ndarray:
    """The array in IDX file `path`, gzip'd (detected by its first bytes) or plain."""
    path = Path(path)
    data = path.read_bytes()
    if data[:2] == b"\x1f\x8b":
        try:
            data = gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as e:
            raise IdxError(f"{path}: corrupt gzip stream ({e})") from None
    return parse_idx(data, str(path))


def find_idx(directory, name: str) -> Path:
    """`name` or `name`.gz in `directory`; a missing folder or file says how to get Fashion-MNIST's."""
    directory = Path(directory)
    how = (f"install Debian's package (apt-get install dataset-fashion-mnist) or put the four files "
           f"{', '.join(f + '.gz' for f in FASHION_MNIST_FILES)} (gzip'd or not) in it")
    if not directory.is_dir():
        raise FileNotFoundError(f"no Fashion-MNIST folder {directory}: {how}")
    for candidate in (directory / f"{name}.gz", directory / name):
        if candidate.is_file():
            return candidate
    raise FileNotFoundError(f"{directory}: neither {name}.gz nor {name} found: {how}")


def load_fashion_mnist(directory=FASHION_MNIST_DIR) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Fashion-MNIST's ``(x_train, y_train, x_test, y_test)``: uint8 images [N, 28, 28] and uint8 labels
    [N] in 0..9 (60,000 training and 10,000 test images in the real files)."""
    paths = {name: find_idx(directory, name) for name in FASHION_MNIST_FILES}
    out = []
    for split in ("train", "t10k"):
        image_path, label_path = paths[f"{split}-images-idx3-ubyte"], paths[f"{split}-labels-idx1-ubyte"]
        images, labels = read_idx(image_path), read_idx(label_path)
        for path, array, ndim in ((image_path, images, 3), (label_path, labels, 1)):
            if array.dtype != np.uint8 or array.ndim != ndim:
                raise IdxError(f"{path}: expected {ndim}-D unsigned bytes, got {array.ndim}-D {array.dtype.name}")
        if len(images) != len(labels):
            raise IdxError(f"{image_path} holds {len(images)} images but {label_path} {len(labels)} labels")
        if labels.size and labels.max() >= len(FASHION_MNIST_CLASSES):
            raise IdxError(f"{label_path}: label {labels.max()} out of range 0..{len(FASHION_MNIST_CLASSES) - 1}")
        out += [images, labels]
    return tuple(out)
