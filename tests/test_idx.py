"""The IDX reader on small files written here (gzip'd and plain), on broken ones, and on Debian's real
Fashion-MNIST files (package ``dataset-fashion-mnist``, which CI installs)."""
import gzip
from pathlib import Path

import numpy as np
import pytest

from paenet.data.idx import (FASHION_MNIST_DIR, FASHION_MNIST_FILES, IdxError, load_fashion_mnist, parse_idx,
                             read_idx)


def idx_bytes(array: np.ndarray, code: int = 0x08) -> bytes:
    """`array` encoded as IDX by hand: magic, big-endian int32 dimensions, big-endian values."""
    dims = np.asarray(array.shape, ">u4").tobytes()
    return bytes([0, 0, code, array.ndim]) + dims + array.astype(array.dtype.newbyteorder(">")).tobytes()


def write_fashion(directory: Path, n_train=12, n_test=5, gz=True, seed=0) -> tuple:
    rng = np.random.default_rng(seed)
    arrays = (rng.integers(0, 256, (n_train, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_train, dtype=np.uint8),
              rng.integers(0, 256, (n_test, 28, 28), dtype=np.uint8), rng.integers(0, 10, n_test, dtype=np.uint8))
    directory.mkdir(parents=True, exist_ok=True)
    for name, array in zip(FASHION_MNIST_FILES, arrays):
        data = idx_bytes(array)
        (directory / (name + ".gz" if gz else name)).write_bytes(gzip.compress(data) if gz else data)
    return arrays


@pytest.mark.parametrize("gz", [True, False])
def test_reads_generated_files(tmp_path, gz):
    expected = write_fashion(tmp_path, gz=gz)
    got = load_fashion_mnist(tmp_path)
    for e, g in zip(expected, got):
        assert g.dtype == np.uint8 and g.shape == e.shape
        np.testing.assert_array_equal(g, e)


def test_other_types_are_big_endian():
    values = np.array([[1, -2, 70000], [3, 4, -5]], np.int32)
    np.testing.assert_array_equal(parse_idx(idx_bytes(values, 0x0C)), values)
    floats = np.array([0.5, -1.25], np.float32)
    assert parse_idx(idx_bytes(floats, 0x0D)).tolist() == [0.5, -1.25]


def _one_line(error) -> str:
    message = str(error.value)
    assert "\n" not in message
    return message


@pytest.mark.parametrize("corrupt, match", [
    (lambda b: b"\x00\x01" + b[2:], "bad IDX magic number 0x00010803"),
    (lambda b: b[:2] + b"\x07" + b[3:], "bad IDX magic number 0x00000703"),
    (lambda b: b[:-1], "truncated: 9423 bytes, but the header's shape \\(12, 28, 28\\) of uint8 needs 9424"),
    (lambda b: b + b"\0", "trailing bytes after the data: 9425 bytes"),
    (lambda b: b[:10], "truncated IDX header: 10 bytes, 16 expected for 3 dimensions"),
    (lambda b: b[:3], "truncated IDX file: 3 bytes"),
])
def test_corrupt_files_are_refused_naming_them(tmp_path, corrupt, match):
    write_fashion(tmp_path, gz=False)
    path = tmp_path / "train-images-idx3-ubyte"
    path.write_bytes(corrupt(path.read_bytes()))
    with pytest.raises(IdxError, match=match) as error:
        load_fashion_mnist(tmp_path)
    assert _one_line(error).startswith(f"{path}: ")


def test_gzip_errors_are_refused_naming_the_file(tmp_path):
    write_fashion(tmp_path)
    path = tmp_path / "t10k-labels-idx1-ubyte.gz"
    whole = path.read_bytes()
    path.write_bytes(whole[: len(whole) // 2])          # cut mid-stream
    with pytest.raises(IdxError, match="corrupt gzip stream") as error:
        read_idx(path)
    assert _one_line(error).startswith(f"{path}: ")
    path.write_bytes(whole[:-8] + bytes(8))             # a wrong CRC and length
    with pytest.raises(IdxError, match=f"{path}: corrupt gzip stream"):
        read_idx(path)


def test_mismatched_files_are_refused(tmp_path):
    write_fashion(tmp_path, gz=False)
    labels = tmp_path / "train-labels-idx1-ubyte"
    labels.write_bytes(idx_bytes(np.zeros(11, np.uint8)))
    with pytest.raises(IdxError, match="holds 12 images but .*train-labels-idx1-ubyte 11 labels"):
        load_fashion_mnist(tmp_path)
    labels.write_bytes(idx_bytes(np.full(12, 10, np.uint8)))
    with pytest.raises(IdxError, match="train-labels-idx1-ubyte: label 10 out of range 0..9"):
        load_fashion_mnist(tmp_path)
    labels.write_bytes(idx_bytes(np.zeros((12, 1), np.uint8)))
    with pytest.raises(IdxError, match="train-labels-idx1-ubyte: expected 1-D unsigned bytes, got 2-D uint8"):
        load_fashion_mnist(tmp_path)


def test_missing_folder_or_file_says_how_to_get_them(tmp_path):
    with pytest.raises(FileNotFoundError, match="no Fashion-MNIST folder .*apt-get install dataset-fashion-mnist"):
        load_fashion_mnist(tmp_path / "absent")
    write_fashion(tmp_path)
    (tmp_path / "t10k-images-idx3-ubyte.gz").unlink()
    with pytest.raises(FileNotFoundError, match="neither t10k-images-idx3-ubyte.gz nor t10k-images-idx3-ubyte "
                                                "found: install .* or put the four files train-images-idx3"):
        load_fashion_mnist(tmp_path)


def test_debian_fashion_mnist_files():
    """The real files: CI installs ``dataset-fashion-mnist``, so their absence is a failure, not a skip."""
    assert Path(FASHION_MNIST_DIR).is_dir(), "apt-get install dataset-fashion-mnist"
    x_train, y_train, x_test, y_test = load_fashion_mnist()
    assert x_train.shape == (60000, 28, 28) and x_test.shape == (10000, 28, 28)
    assert x_train.dtype == y_train.dtype == np.uint8
    # Balanced classes, as published: 6,000 training and 1,000 test images each.
    assert np.bincount(y_train).tolist() == [6000] * 10 and np.bincount(y_test).tolist() == [1000] * 10
    assert x_train.min() == 0 and x_train.max() == 255
    # Dark background, bright garment: the border is mostly black, the centre is not.
    assert x_train[:, :, 0].mean() < 5 and x_train[:, 10:18, 10:18].mean() > 100
    # The published order begins with an ankle boot in both splits.
    assert y_train[:4].tolist() == [9, 0, 0, 3] and y_test[:4].tolist() == [9, 2, 1, 1]
