"""tf.data pipelines over in-memory image arrays (the small real-image sets)."""
from __future__ import annotations

import tensorflow as tf

from paenet.data.pipeline import element_seeds, epochs
from paenet.data.preprocessing import fixed_standardization


def array_dataset(images, labels, batch_size: int, training: bool = False, seed: int = 0) -> tf.data.Dataset:
    """Batches of (standardised float32 images, int labels).

    Training: reshuffled every epoch and randomly flipped, both from `seed` (stateless per-element
    seeds, so the stream is the same on every run). Evaluation: in order, every sample, the last batch
    kept even if short.
    """
    ds = tf.data.Dataset.from_tensor_slices((images, labels))
    if not training:
        return ds.batch(batch_size).map(lambda x, y: (fixed_standardization(x), y))

    def augment(example, element_seed):
        x, y = example
        x = tf.image.stateless_random_flip_left_right(x, element_seed)
        return fixed_standardization(x), y

    ds = epochs(ds, len(images), seed)
    return (tf.data.Dataset.zip((ds, element_seeds(seed))).map(augment, num_parallel_calls=tf.data.AUTOTUNE)
            .batch(batch_size).prefetch(tf.data.AUTOTUNE))
