"""tf.data input pipelines over image files or TFDS splits: FaceNet's training and evaluation inputs.

Training: images aligned at ``source_size`` (182) are randomly cropped to ``image_size`` (160), randomly
flipped and given fixed standardisation (x - 127.5) / 128. Evaluation: the centre crop, every sample, the
last batch kept even if short. An image of another size is first resized to ``source_size``.

Decoding runs in parallel (``num_parallel_calls=AUTOTUNE``) and batches are prefetched, so that the model,
not the input, is the bottleneck; the decoded images can be cached (``training_dataset(cache=...)``)
(``python -m paenet.bench --only=input_pipeline_vs_model,input_pipeline_cached_vs_model``).

Randomness is stateless: every element gets its own seed from a seeded stream. With a ``seed`` the whole
stream (order, crops, flips) is the same on every run and for every iterator, from its first batch
(deterministic mode); with ``seed=None`` it differs per run and elements may leave the parallel map out of
order, which is faster.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf

from paenet.data.preprocessing import fixed_standardization

IMAGE_SIZE = 160
SOURCE_SIZE = 182


@dataclasses.dataclass
class ImageSource:
    """Elements ``(item, label)`` and how to turn an item into encoded image bytes (``read``)."""

    dataset: tf.data.Dataset
    read: Callable = tf.identity

    @property
    def labels(self) -> tf.data.Dataset:
        return self.dataset.map(lambda item, label: label)


def files(paths, labels) -> ImageSource:
    """Image files (read in the parallel map, after shuffling) with their integer labels."""
    paths = [str(p) for p in paths]
    if len(paths) != len(labels):
        raise ValueError(f"{len(paths)} paths but {len(labels)} labels")
    dataset = tf.data.Dataset.from_tensor_slices((paths, np.asarray(labels, np.int64)))
    return ImageSource(dataset, tf.io.read_file)


def tfds_split(builder, split: str, label: str, shuffle_files: bool = False, seed: int | None = None,
               image: str = "image", where: Callable | None = None) -> ImageSource:
    """Split `split` of a prepared TFDS builder, images left encoded (decoded in the pipeline's parallel
    map), labelled by feature `label`; examples whose label is negative (unknown, as Adience's) are left
    out, and so are those for which `where(example)` (a tf predicate on the features) is false."""
    import tensorflow_datasets as tfds
    ds = builder.as_dataset(split=split, shuffle_files=shuffle_files,
                            decoders={image: tfds.decode.SkipDecoding()},
                            read_config=tfds.ReadConfig(shuffle_seed=seed))
    if where is not None:
        ds = ds.filter(where)
    ds = ds.map(lambda ex: (ex[image], tf.cast(ex[label], tf.int64))).filter(lambda item, y: y >= 0)
    return ImageSource(ds)


def decode(encoded) -> tf.Tensor:
    """uint8 RGB [H, W, 3] from JPEG/PNG/BMP/GIF bytes (format from the content; gray and RGBA converted)."""
    image = tf.io.decode_image(encoded, channels=3, expand_animations=False)
    image.set_shape([None, None, 3])
    return image


def _at_size(image, size: int):
    """`image` as `size` x `size`: unchanged when it already is, else resized (bilinear)."""
    shape = tf.shape(image)
    return tf.cond(tf.reduce_all(shape[:2] == size), lambda: tf.cast(image, tf.float32),
                   lambda: tf.image.resize(image, (size, size)))


def train_image(image, seed, image_size: int = IMAGE_SIZE, source_size: int = SOURCE_SIZE):
    """Random `image_size` crop of the `source_size` image, random flip, fixed standardisation; `seed`
    ([2] int) makes both random choices."""
    crop_seed, flip_seed = tf.unstack(tf.random.experimental.stateless_split(seed, 2))
    image = tf.image.stateless_random_crop(_at_size(image, source_size), (image_size, image_size, 3), crop_seed)
    return fixed_standardization(tf.image.stateless_random_flip_left_right(image, flip_seed))


def eval_image(image, image_size: int = IMAGE_SIZE, source_size: int = SOURCE_SIZE):
    """Centre `image_size` crop of the `source_size` image, fixed standardisation."""
    offset = (source_size - image_size) // 2
    image = _at_size(image, source_size)[offset:offset + image_size, offset:offset + image_size]
    return fixed_standardization(tf.ensure_shape(image, (image_size, image_size, 3)))


def element_seeds(seed: int | None) -> tf.data.Dataset:
    """An endless stream of [2] int64 seeds for stateless random ops, one per element."""
    return tf.data.Dataset.random(seed=seed).batch(2)


def epochs(dataset: tf.data.Dataset, buffer_size: int, seed: int | None) -> tf.data.Dataset:
    """`dataset` repeated endlessly, reshuffled every epoch (a shuffle buffer of `buffer_size`) from `seed`.

    The shuffle is made anew for each iterator, so that each draws its epochs' orders from its own seed
    stream: with one stream per dataset, an abandoned iterator's read-ahead changed the next iterator's
    order (a task's batches after an expansion). Every iterator yields the same stream from its start, and
    its checkpoint holds the stream's position and the buffer; the only state outside it, the stream's
    handle, is made anew on restore, so the checkpoint ignores it.
    """
    options = tf.data.Options()
    options.experimental_external_state_policy = tf.data.experimental.ExternalStatePolicy.IGNORE
    return tf.data.Dataset.range(1).flat_map(
        lambda _: dataset.shuffle(buffer_size, seed=seed, reshuffle_each_iteration=True).repeat()
    ).with_options(options)


def training_dataset(source: ImageSource, batch_size: int, seed: int | None = None,
                     image_size: int = IMAGE_SIZE, source_size: int = SOURCE_SIZE,
                     shuffle_buffer: int = 10_000, cache: str | None = None) -> tf.data.Dataset:
    """Endless batches of (standardised float32 [B, image_size, image_size, 3], int64 labels), reshuffled
    every epoch; deterministic when `seed` is given (see the module docstring).

    `cache`: None reads and decodes every image every epoch; ``""`` keeps the decoded images (uint8, as
    stored: 97 KiB per aligned 182 px image) in memory after the first epoch, a path keeps them in files
    there; only the random crop, flip and standardisation run afterwards. The batches are the same
    either way. The shuffle buffer then holds decoded images: size it for the memory it takes.
    """
    if image_size > source_size:
        raise ValueError(f"cannot crop {image_size} px from {source_size} px images")
    ds, read = source.dataset, source.read
    if cache is not None:
        ds = ds.map(lambda item, label: (decode(read(item)), label), num_parallel_calls=tf.data.AUTOTUNE)
        ds, read = ds.cache(cache), None
    ds = epochs(ds, shuffle_buffer, seed)

    def prepare(example, element_seed):
        item, label = example
        image = item if read is None else decode(read(item))
        return train_image(image, element_seed, image_size, source_size), label

    ds = tf.data.Dataset.zip((ds, element_seeds(seed)))
    ds = ds.map(prepare, num_parallel_calls=tf.data.AUTOTUNE, deterministic=seed is not None)
    return ds.batch(batch_size, drop_remainder=True).prefetch(tf.data.AUTOTUNE)


def evaluation_dataset(source: ImageSource, batch_size: int, image_size: int = IMAGE_SIZE,
                       source_size: int = SOURCE_SIZE) -> tf.data.Dataset:
    """Batches of (centre crops, labels) over every sample once, in order."""
    ds = source.dataset.map(lambda item, label: (eval_image(decode(source.read(item)), image_size, source_size),
                                                 label), num_parallel_calls=tf.data.AUTOTUNE)
    return ds.batch(batch_size).prefetch(tf.data.AUTOTUNE)


def class_counts(source: ImageSource, num_classes: int) -> np.ndarray:
    """Samples per class in `source` (reads the labels only)."""
    counts = np.zeros(num_classes, np.int64)
    for batch in source.labels.batch(4096):
        counts += np.bincount(batch.numpy(), minlength=num_classes)[:num_classes]
    return counts


def class_weights(counts) -> np.ndarray:
    """(N - n_c) / n_c per class from the class counts (AffectNet's weighting in PAE). A class without
    samples gets weight 0, as it never appears in a loss."""
    counts = np.asarray(counts, np.float64)
    total = counts.sum()
    with np.errstate(divide="ignore"):
        return np.where(counts > 0, (total - counts) / counts, 0.0).astype(np.float32)


def with_sample_weights(ds: tf.data.Dataset, weights) -> tf.data.Dataset:
    """(x, y) batches -> (x, y, weight of y), for a weighted loss or ``Model.fit``."""
    table = tf.constant(np.asarray(weights, np.float32))
    return ds.map(lambda x, y: (x, y, tf.gather(table, y)))
