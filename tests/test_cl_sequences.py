"""Task sequences: stratified seeded validation splits disjoint from training, fixed distinct permutations,
correct labels, the input pipeline and its augmentation, and the backbones they name, on small IDX files
and a small CIFAR-100 archive whose every image carries its index, and on Debian's real Fashion-MNIST."""
import gzip
import pickle

import numpy as np
import pytest

from data_prep.build import build
from paenet.cl.sequences import TaskData, load_sequence, split_fashion_mnist
from paenet.cl.sequences import QUICK_TEST_PER_CLASS, QUICK_TRAIN_PER_CLASS, permutations
from paenet.data.idx import FASHION_MNIST_FILES
from paenet.models import MLP, SmallCNN, VGG16BN, create_backbone
from test_builders_cl import ARCHIVE, COARSE, FINE, cifar_members, write_archive
from test_idx import idx_bytes

PER_CLASS_TRAIN, PER_CLASS_TEST = 30, 4
BACKBONES = {"small_cnn": SmallCNN, "mlp": MLP}


def image_ids(images) -> np.ndarray:
    """The index each generated image carries in its first two pixels (test images: + 10,000)."""
    return images[:, 0, 0].astype(np.int64) + 256 * images[:, 0, 1].astype(np.int64)


@pytest.fixture(scope="module")
def generated(tmp_path_factory):
    """Fashion-MNIST-shaped IDX files: shuffled balanced labels, every image unique and random beyond its
    index pixels. Returns the folder and the label of every image id."""
    directory = tmp_path_factory.mktemp("fashion")
    rng = np.random.default_rng(3)
    labels = {}
    arrays = []
    for split, per_class, offset in (("train", PER_CLASS_TRAIN, 0), ("t10k", PER_CLASS_TEST, 10_000)):
        y = rng.permutation(np.repeat(np.arange(10, dtype=np.uint8), per_class))
        x = rng.integers(0, 256, (len(y), 28, 28), dtype=np.uint8)
        ids = np.arange(len(y)) + offset
        x[:, 0, 0], x[:, 0, 1] = ids % 256, ids // 256
        labels.update(zip(ids.tolist(), y.tolist()))
        arrays += [x, y]
    for name, array in zip(FASHION_MNIST_FILES, arrays):
        (directory / f"{name}.gz").write_bytes(gzip.compress(idx_bytes(array)))
    return directory, labels


def test_validation_split_is_stratified_seeded_and_disjoint(generated):
    directory, labels = generated
    data = split_fashion_mnist(directory, seed=4, val_fraction=0.2)
    images, y = data.images, data.labels
    train, val, test = (image_ids(images[s]) for s in ("train", "val", "test"))
    assert not set(train) & set(val) and sorted([*train, *val]) == list(range(10 * PER_CLASS_TRAIN))
    assert sorted(test) == list(range(10_000, 10_000 + 10 * PER_CLASS_TEST))
    for split, ids in (("train", train), ("val", val), ("test", test)):
        assert y[split].tolist() == [labels[i] for i in ids]
    assert np.bincount(y["val"]).tolist() == [6] * 10 and np.bincount(y["train"]).tolist() == [24] * 10
    assert image_ids(split_fashion_mnist(directory, seed=4, val_fraction=0.2).images["val"]).tolist() == val.tolist()
    assert image_ids(split_fashion_mnist(directory, seed=5, val_fraction=0.2).images["val"]).tolist() != val.tolist()


def test_split5_tasks_hold_their_two_classes_labelled_in_order(generated):
    directory, labels = generated
    sequence = load_sequence("split5", directory, seed=1)
    assert [t.name for t in sequence.tasks] == [f"classes_{a}_{a + 1}" for a in range(0, 10, 2)]
    assert sequence.tasks[2].class_names == ("Coat", "Sandal")
    seen = {s: [] for s in ("train", "val", "test")}
    for k, task in enumerate(sequence.tasks):
        assert task.num_classes == 2 and task.permutation is None
        for split in seen:
            ids = image_ids(task.images[split])
            original = np.array([labels[i] for i in ids])
            assert set(original) == {2 * k, 2 * k + 1}
            np.testing.assert_array_equal(task.labels[split], original - 2 * k)
            seen[split] += ids.tolist()
        assert task.size("val") == 2 * 3 and task.size("test") == 2 * PER_CLASS_TEST     # 10% of 30 per class
    # Together the tasks cover every image exactly once; validation never meets training.
    assert sorted(seen["train"] + seen["val"]) == list(range(10 * PER_CLASS_TRAIN))
    assert len(seen["test"]) == len(set(seen["test"])) == 10 * PER_CLASS_TEST


def test_permutations_are_fixed_distinct_and_shared_by_the_sequences(generated):
    directory, _ = generated
    perms = permutations(20, seed=0)
    assert all(sorted(p) == list(range(784)) for p in perms)
    assert len({p.tobytes() for p in perms} | {np.arange(784).tobytes()}) == 21    # distinct, none identity
    assert all(np.array_equal(a, b) for a, b in zip(permutations(20, seed=0), perms))
    assert not np.array_equal(permutations(1, seed=1)[0], perms[0])
    ten = load_sequence("permuted10", directory)
    twenty = load_sequence("permuted20_small", directory)
    assert len(ten.tasks) == 10 and len(twenty.tasks) == 20
    for task, p in zip(twenty.tasks, perms):
        np.testing.assert_array_equal(task.permutation, p)
        assert task.num_classes == 10 and task.input_shape == (784,)
        assert task.images["train"] is twenty.tasks[0].images["train"]     # one copy of the images
    np.testing.assert_array_equal(ten.tasks[9].permutation, perms[9])


def test_pipeline_scales_and_permutes_every_sample_once(generated):
    directory, _ = generated
    task = load_sequence("permuted10", directory).tasks[3]
    batches = list(task.dataset("val", batch_size=7))
    assert [len(y) for _, y in batches] == [7, 7, 7, 7, 2]     # 30 images, the short batch kept
    x = np.concatenate([b[0].numpy() for b in batches])
    expected = task.images["val"].reshape(-1, 784)[:, task.permutation].astype(np.float32) / 255.0
    np.testing.assert_array_equal(x, expected)
    np.testing.assert_array_equal(np.concatenate([b[1].numpy() for b in batches]), task.labels["val"])

    def first_epoch(seed):
        stream = iter(task.dataset("train", batch_size=30, training=True, seed=seed))
        return [image_ids((next(stream)[0].numpy()[:, np.argsort(task.permutation)] * 255).round()
                          .astype(np.uint8).reshape(-1, 28, 28)) for _ in range(9)]

    epoch = first_epoch(2)
    assert sorted(np.concatenate(epoch)) == sorted(image_ids(task.images["train"]))      # 270 = 9 x 30
    assert [e.tolist() for e in first_epoch(2)] == [e.tolist() for e in epoch]
    assert [e.tolist() for e in first_epoch(3)] != [e.tolist() for e in epoch]


@pytest.mark.parametrize("name", ["permuted10", "permuted20_small", "split5"])
def test_quick_sequences_on_the_real_files_feed_their_backbones(name):
    sequence = load_sequence(name, quick=True)
    assert sequence.quick and sequence.backbone in BACKBONES
    task = sequence.tasks[-1]
    sizes = {s: task.size(s) for s in ("train", "val", "test")}
    per_task = 10 // task.num_classes     # split5: a fifth of the images
    assert sizes == {"train": 9 * QUICK_TRAIN_PER_CLASS // per_task, "val": QUICK_TRAIN_PER_CLASS // per_task,
                     "test": 10 * QUICK_TEST_PER_CLASS // per_task}
    assert np.bincount(task.labels["val"]).tolist() == [QUICK_TRAIN_PER_CLASS // 10] * task.num_classes
    model = BACKBONES[sequence.backbone](**sequence.backbone_kwargs, name=name,
                                         tasks=[t.spec for t in sequence.tasks])
    x, y = next(iter(task.dataset("test", batch_size=16)))
    assert x.dtype == "float32" and 0.0 <= float(x.numpy().min()) and float(x.numpy().max()) <= 1.0
    assert model(x, task=len(sequence.tasks)).shape == (16, task.num_classes)


def test_full_sequences_on_the_real_files():
    split5 = load_sequence("split5")
    assert [t.size("train") for t in split5.tasks] == [10_800] * 5
    assert [np.bincount(t.labels["val"]).tolist() for t in split5.tasks] == [[600, 600]] * 5
    assert [t.size("test") for t in split5.tasks] == [2_000] * 5
    permuted = load_sequence("permuted10")
    assert permuted.backbone_kwargs == dict(input_shape=(784,), widths=(312,), dense_units=128)    # DEN's
    assert permuted.tasks[0].size("train") == 54_000 and permuted.tasks[0].size("test") == 10_000
    with pytest.raises(ValueError, match="unknown task sequence 'split10'; choose one of"):
        load_sequence("split10")


def test_cifar100_cpg20_tasks_are_superclasses(tmp_path):
    """A CIFAR-100 archive in the real format with a shuffled fine-to-superclass map, built with the TFDS
    builder: task k holds the 5 fine classes of superclass k - 1, labelled by rank."""
    rng = np.random.default_rng(8)
    superclass_of = rng.permutation(np.repeat(np.arange(20), 5))
    members, _ = cifar_members()
    parts = {}
    for split, per_class, offset in (("train", 3, 0), ("test", 1, 1000)):
        fine = rng.permutation(np.repeat(np.arange(100), per_class))
        images = rng.integers(0, 256, (len(fine), 32, 32, 3), dtype=np.uint8)
        ids = np.arange(len(fine)) + offset
        images[:, 0, 0, 0], images[:, 0, 0, 1] = ids % 256, ids // 256
        parts[split] = fine
        members[split] = pickle.dumps({
            b"data": images.transpose(0, 3, 1, 2).reshape(len(fine), 3072), b"fine_labels": fine.tolist(),
            b"coarse_labels": superclass_of[fine].tolist(),
            b"filenames": [f"{split}_{i}.png".encode() for i in range(len(fine))]}, protocol=2)
    write_archive(tmp_path / "manual" / ARCHIVE, members)
    build("cifar100", str(tmp_path / "manual"), str(tmp_path / "tfds"))
    sequence = load_sequence("cifar100_cpg20", data_dir=str(tmp_path / "tfds"), val_fraction=0.34)
    assert sequence.backbone == "vgg16_bn" and len(sequence.tasks) == 20
    assert [t.name for t in sequence.tasks] == COARSE
    for k, task in enumerate(sequence.tasks):
        classes = np.flatnonzero(superclass_of == k)
        assert task.class_names == tuple(FINE[c] for c in classes) and task.augment
        for split, ids_offset in (("train", 0), ("val", 0), ("test", 1000)):
            pixels = task.images[split][:, 0, 0].astype(np.int64)
            ids = pixels[:, 0] + 256 * pixels[:, 1] - ids_offset
            source = parts["test" if split == "test" else "train"]
            np.testing.assert_array_equal(classes[task.labels[split]], source[ids])
        assert (task.size("train"), task.size("val"), task.size("test")) == (10, 5, 5)
    quick = load_sequence("cifar100_cpg20", data_dir=str(tmp_path / "tfds"), val_fraction=0.34, quick=True)
    model = VGG16BN(**quick.backbone_kwargs, tasks=[t.spec for t in quick.tasks])
    x, _ = next(iter(quick.tasks[19].dataset("train", 4, training=True)))
    assert model(x, task=20).shape == (4, 5)
    resnet = load_sequence("cifar100_resnet18", data_dir=str(tmp_path / "tfds"), val_fraction=0.34, quick=True)
    assert [t.name for t in resnet.tasks] == COARSE and resnet.backbone == "resnet18"
    model = create_backbone(resnet.backbone, **resnet.backbone_kwargs, tasks=[t.spec for t in resnet.tasks])
    assert model(x, task=20).shape == (4, 5)


def test_training_batches_are_flipped_and_cropped_reproducibly():
    rng = np.random.default_rng(2)
    images = rng.integers(0, 256, (40, 32, 32, 3), dtype=np.uint8)
    task = TaskData("t", ("a", "b"), (32, 32, 3), {s: images for s in ("train", "val", "test")},
                    {s: np.arange(40) % 2 for s in ("train", "val", "test")}, augment=True)
    x, y = next(iter(task.dataset("train", 8, training=True, seed=1)))
    again, _ = next(iter(task.dataset("train", 8, training=True, seed=1)))
    assert x.numpy().tobytes() == again.numpy().tobytes()
    originals = images.astype(np.float32) / 255.0
    shifted = 0
    for image in x.numpy():
        padded = {flip: np.pad(o, ((0, 0), (4, 4), (4, 4), (0, 0))) for flip, o in
                  ((False, originals), (True, originals[:, :, ::-1]))}
        found = [(flip, dy, dx) for flip in (False, True) for dy in range(9) for dx in range(9)
                 if np.any(np.all(padded[flip][:, dy:dy + 32, dx:dx + 32] == image, axis=(1, 2, 3)))]
        assert found, "an augmented image is no flip and crop of any original"
        shifted += found[0][1:] != (4, 4)
    assert shifted >= 4      # most of the 8 are moved (each stays put with probability 1/81)
    plain, _ = next(iter(task.dataset("val", 8)))
    np.testing.assert_array_equal(plain.numpy(), originals[:8])
