"""The continual-learning data sets' TFDS builders (Fashion-MNIST, CIFAR-100), built offline from small
files written here in the real formats: IDX files, and CIFAR-100's python archive of pickled dicts."""
import io
import pickle
import tarfile

import numpy as np
import pytest
import tensorflow_datasets as tfds

from data_prep.build import build
from paenet.datasets.cifar100 import ARCHIVE, FOLDER, CifarError, read_members
from paenet.data.idx import FASHION_MNIST_CLASSES
from test_idx import write_fashion

FINE = [f"fine_{i:02d}" for i in range(100)]
COARSE = [f"coarse_{i:02d}" for i in range(20)]


def examples(builder, split):
    return sorted(tfds.as_numpy(builder.as_dataset(split=split)), key=lambda e: int(e.get("index", 0)))


def test_fashion_mnist(tmp_path):
    x_train, y_train, x_test, y_test = write_fashion(tmp_path / "manual", n_train=9, n_test=4)
    builder = build("fashion_mnist", str(tmp_path / "manual"), str(tmp_path / "tfds"))
    assert builder.info.features["label"].names == list(FASHION_MNIST_CLASSES)
    for split, x, y in (("train", x_train, y_train), ("test", x_test, y_test)):
        got = examples(builder, split)
        assert [int(e["index"]) for e in got] == list(range(len(y)))
        np.testing.assert_array_equal(np.stack([e["image"] for e in got]), x[..., None])
        assert [int(e["label"]) for e in got] == y.tolist()


def test_fashion_mnist_refuses_a_corrupt_file(tmp_path):
    write_fashion(tmp_path / "manual", gz=False)
    path = tmp_path / "manual" / "t10k-labels-idx1-ubyte"
    path.write_bytes(path.read_bytes()[:-2])
    with pytest.raises(ValueError, match=f"{path}: truncated"):
        build("fashion_mnist", str(tmp_path / "manual"), str(tmp_path / "tfds"))


def cifar_split(n: int, seed: int) -> tuple[dict, np.ndarray]:
    """A split as CIFAR pickles it, and its images as [N, 32, 32, 3]."""
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 256, (n, 32, 32, 3), dtype=np.uint8)
    fine = rng.integers(0, 100, n)
    part = {b"batch_label": b"generated", b"data": images.transpose(0, 3, 1, 2).reshape(n, 3072),
            b"fine_labels": fine.tolist(), b"coarse_labels": (fine // 5).tolist(),
            b"filenames": [f"img_{seed}_{i}.png".encode() for i in range(n)]}
    return part, images


def cifar_members(n_train=6, n_test=3):
    train, train_images = cifar_split(n_train, 1)
    test, test_images = cifar_split(n_test, 2)
    meta = {b"fine_label_names": [n.encode() for n in FINE], b"coarse_label_names": [n.encode() for n in COARSE]}
    members = {name: pickle.dumps(d, protocol=2) for name, d in (("train", train), ("test", test), ("meta", meta))}
    return members, {"train": (train, train_images), "test": (test, test_images)}


def write_archive(path, members):
    path.parent.mkdir(parents=True, exist_ok=True)
    with tarfile.open(path, "w:gz") as tar:
        for name, data in members.items():
            info = tarfile.TarInfo(f"{FOLDER}/{name}")
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))


@pytest.mark.parametrize("layout", ["archive", "folder"])
def test_cifar100(tmp_path, layout):
    members, expected = cifar_members()
    manual = tmp_path / "manual"
    if layout == "archive":
        write_archive(manual / ARCHIVE, members)
    else:
        (manual / FOLDER).mkdir(parents=True)
        for name, data in members.items():
            (manual / FOLDER / name).write_bytes(data)
    builder = build("cifar100", str(manual), str(tmp_path / "tfds"))
    assert builder.info.features["label"].names == FINE and builder.info.features["coarse_label"].names == COARSE
    for split, (part, images) in expected.items():
        got = sorted(tfds.as_numpy(builder.as_dataset(split=split)), key=lambda e: e["file_name"])
        order = np.argsort([f.decode() for f in part[b"filenames"]])
        np.testing.assert_array_equal(np.stack([e["image"] for e in got]), images[order])
        assert [int(e["label"]) for e in got] == [part[b"fine_labels"][i] for i in order]
        assert [int(e["coarse_label"]) for e in got] == [part[b"coarse_labels"][i] for i in order]
    # CIFAR's row layout: the red plane first, row-major; pixel (row 3, column 5) of image 0.
    part, images = expected["train"]
    assert [part[b"data"][0, c * 1024 + 3 * 32 + 5] for c in range(3)] == images[0, 3, 5].tolist()


def test_cifar100_refuses_broken_archives_naming_them(tmp_path):
    with pytest.raises(FileNotFoundError, match=f"neither {ARCHIVE} nor {FOLDER}/ found"):
        read_members(tmp_path)
    members, _ = cifar_members()
    archive = tmp_path / ARCHIVE
    write_archive(archive, members)
    whole = archive.read_bytes()
    archive.write_bytes(whole[: len(whole) // 2])
    with pytest.raises(CifarError, match=f"{archive}: corrupt archive"):
        read_members(tmp_path)
    write_archive(archive, {k: v for k, v in members.items() if k != "meta"})
    with pytest.raises(CifarError, match=f"{archive}: no {FOLDER}/meta in the archive"):
        read_members(tmp_path)
    write_archive(archive, {**members, "test": members["test"][:40]})
    with pytest.raises(CifarError, match=f"{archive}:{FOLDER}/test: not a readable CIFAR pickle"):
        read_members(tmp_path)
    # A pickle that would call anything but numpy's array constructors is refused, not run.
    write_archive(archive, {**members, "meta": pickle.dumps(print, protocol=2)})
    with pytest.raises(CifarError, match="refusing to load __builtin__.print"):
        read_members(tmp_path)


def test_cifar100_refuses_a_split_not_in_cifar_format(tmp_path):
    members, expected = cifar_members()
    part = dict(expected["train"][0])
    part[b"fine_labels"] = part[b"fine_labels"][:-1]
    write_archive(tmp_path / "manual" / ARCHIVE, {**members, "train": pickle.dumps(part, protocol=2)})
    with pytest.raises(CifarError, match="train: 6 images but 5 fine labels, 6 coarse labels, 6 file names"):
        build("cifar100", str(tmp_path / "manual"), str(tmp_path / "tfds"))
