"""tf.data pipelines: crop geometry, flips, standardisation, determinism, every sample, class weights."""
import numpy as np
import pytest
import tensorflow as tf
from PIL import Image

import archives
from data_prep.build import build
from paenet.cl.sequences import TaskData
from paenet.data.arrays import array_dataset
from paenet.data.pipeline import (class_counts, class_weights, evaluation_dataset, files, tfds_split,
                                  training_dataset, with_sample_weights)


def coordinate_image(path, size=182):
    """R = row, G = column, B = 7: a crop tells where it came from and whether it was flipped."""
    rows, cols = np.meshgrid(np.arange(size), np.arange(size), indexing="ij")
    Image.fromarray(np.stack([rows, cols, np.full_like(rows, 7)], -1).astype(np.uint8)).save(path)
    return path


def pixels(batch) -> np.ndarray:
    """Undo fixed standardisation: back to 0..255 values."""
    return np.rint(np.asarray(batch) * 128.0 + 127.5).astype(np.int64)


@pytest.fixture
def coordinates(tmp_path):
    return [coordinate_image(tmp_path / f"c{i}.png") for i in range(5)]


def test_training_crops_are_random_160_windows_of_182_some_flipped(coordinates):
    (x, y), = training_dataset(files(coordinates, [0, 1, 2, 3, 4]), 32, seed=0).take(1)
    assert x.shape == (32, 160, 160, 3) and x.dtype.name == "float32"
    images, flipped, origins = pixels(x), 0, set()
    for image in images:
        top, left = image[0, 0, 0], min(image[0, 0, 1], image[0, -1, 1])
        assert 0 <= top <= 22 and 0 <= left <= 22
        np.testing.assert_array_equal(image[:, 0, 0], np.arange(top, top + 160))
        cols = image[0, :, 1]
        flipped += cols[0] > cols[-1]
        np.testing.assert_array_equal(np.sort(cols), np.arange(left, left + 160))
        assert (image[..., 2] == 7).all()
        origins.add((top, left))
    assert 0 < flipped < 32 and len(origins) > 16
    assert sorted(set(y.numpy())) == [0, 1, 2, 3, 4]


def test_deterministic_with_a_seed(coordinates):
    def first_batches(seed):
        ds = training_dataset(files(coordinates, [0, 1, 2, 3, 4]), 8, seed=seed)
        return [(x.numpy(), y.numpy()) for x, y in ds.take(3)]

    a, b, c = first_batches(3), first_batches(3), first_batches(4)
    for (xa, ya), (xb, yb) in zip(a, b):
        np.testing.assert_array_equal(xa, xb)
        np.testing.assert_array_equal(ya, yb)
    assert any(not np.array_equal(xa, xc) for (xa, _), (xc, _) in zip(a, c))
    (x, _), = training_dataset(files(coordinates, [0] * 5), 4, seed=None).take(1)   # fast, unrepeatable mode
    assert x.shape == (4, 160, 160, 3)


@pytest.fixture(params=["training_dataset", "array_dataset", "task_sequence"])
def seeded_training_stream(request, coordinates):
    """A seeded, endless training dataset of 5 samples in batches of 4, from each maker that shuffles
    through ``paenet.data.pipeline.epochs``."""
    images = np.random.default_rng(0).integers(0, 256, (5, 8, 8, 3), dtype=np.uint8)
    labels = np.arange(5)
    if request.param == "training_dataset":
        return training_dataset(files(coordinates, labels), 4, seed=3)
    if request.param == "array_dataset":
        return array_dataset(images, labels, 4, training=True, seed=3)
    task = TaskData("t", tuple("abcde"), (8, 8, 3), {s: images for s in ("train", "val", "test")},
                    {s: labels for s in ("train", "val", "test")})
    return task.dataset("train", 4, training=True, seed=3)


def test_every_iterator_of_a_seeded_dataset_yields_the_same_batches_however_far_another_read_ahead(
        seeded_training_stream):
    """A trainer that starts a task afresh (after an expansion) iterates its dataset again: the first
    iterator read several epochs ahead, which must not change the second one's order."""
    ds = seeded_training_stream
    first = iter(ds)
    ahead = [next(first)[1].numpy() for _ in range(10)]          # 8 epochs of 5 samples
    assert any(not np.array_equal(ahead[0], b) for b in ahead[1:])   # reshuffled between epochs
    again = [y.numpy() for _, y in ds.take(10)]
    for a, b in zip(ahead, again):
        np.testing.assert_array_equal(a, b)


def test_a_restored_iterator_goes_on_with_the_same_batches_across_epochs(seeded_training_stream, tmp_path):
    ds = seeded_training_stream
    saved = iter(ds)
    for _ in range(3):
        next(saved)
    path = tf.train.Checkpoint(iterator=saved).write(str(tmp_path / "ckpt"))
    expected = [next(saved) for _ in range(8)]                     # 32 samples: through 6 more epochs
    restored = iter(ds)
    tf.train.Checkpoint(iterator=restored).read(path).assert_consumed()
    for (xe, ye), (xr, yr) in zip(expected, [next(restored) for _ in range(8)]):
        np.testing.assert_array_equal(xe, xr)
        np.testing.assert_array_equal(ye, yr)


def test_evaluation_is_the_centre_crop_of_every_sample(coordinates):
    batches = list(evaluation_dataset(files(coordinates, [4, 3, 2, 1, 0]), 2))
    assert [len(y) for _, y in batches] == [2, 2, 1]                       # the short last batch is kept
    assert np.concatenate([y for _, y in batches]).tolist() == [4, 3, 2, 1, 0]
    image = pixels(batches[0][0])[0]
    np.testing.assert_array_equal(image[:, 0, 0], np.arange(11, 171))
    np.testing.assert_array_equal(image[0, :, 1], np.arange(11, 171))
    np.testing.assert_allclose(batches[0][0].numpy()[0, 0, 0, 2], (7 - 127.5) / 128)


def test_other_sizes_and_modes_are_resized_to_the_source_and_given_three_channels(tmp_path):
    paths = [archives.write_image(tmp_path / "gray.jpg", 1, mode="L", size=(160, 160)),
             archives.write_image(tmp_path / "rgba.png", 2, mode="RGBA", fmt="PNG", size=(250, 200))]
    (x, _), = training_dataset(files(paths, [0, 1]), 4, seed=0).take(1)
    assert x.shape == (4, 160, 160, 3)
    x, _ = next(iter(evaluation_dataset(files(paths, [0, 1]), 2)))
    gray = x.numpy()[0]
    np.testing.assert_array_equal(gray[..., 0], gray[..., 1])              # gray stays gray in RGB


def test_class_weights_from_counts():
    np.testing.assert_allclose(class_weights([10, 30, 60]), [9.0, 70 / 30, 40 / 60], rtol=1e-6)
    np.testing.assert_array_equal(class_weights([5, 0, 5]), [1.0, 0.0, 1.0])


def test_tfds_source_counts_labels_and_skips_unknown(tmp_path):
    expected = archives.make_adience(tmp_path / "manual")
    builder = build("adience", str(tmp_path / "manual"), str(tmp_path / "tfds"))
    source = tfds_split(builder, "fold_0+fold_1+fold_2+fold_3+fold_4", "gender")
    genders = [g for fold in expected["labels"] for _, g in fold if g >= 0]
    counts = class_counts(source, 2)
    np.testing.assert_array_equal(counts, np.bincount(genders, minlength=2))
    weights = class_weights(counts)
    (x, y, w), = with_sample_weights(training_dataset(source, 4, seed=0), weights).take(1)
    assert x.shape == (4, 160, 160, 3)
    np.testing.assert_allclose(w.numpy(), weights[y.numpy()])
