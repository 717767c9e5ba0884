"""Input rows: images/s the training pipeline delivers vs images/s a model consumes in a train step.

The pipeline reads 182 px JPEG files (made here, smooth random images) and does FaceNet's training input:
parallel decode, random 160 crop, flip, fixed standardisation, batches of 32, prefetch; with a cache
(``input_pipeline_cached_vs_model``) the decoded images come from memory after a first epoch, and only
the crop, flip and standardisation run. The config states the pipeline's images/s per core (tf.data
uses every core of the machine). Each timed call
starts a fresh iterator over a fixed number of batches, so no batch prepared while the model ran is
counted. The consumer is a SmallCNN train step at 160 px, batch 32 (fp32, Adam, exact freezing). Target:
ratio >= 2 (DESIGN §8), i.e. the model, not the input, is the bottleneck.
"""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

import numpy as np
import tensorflow as tf
from PIL import Image

from paenet.benchmarks.timing import Rows, compare_rates, row
from paenet.data.pipeline import IMAGE_SIZE, SOURCE_SIZE, files, training_dataset

BATCH = 32


def write_jpegs(folder: Path, count: int, seed: int = 0) -> list[Path]:
    """`count` 182 px JPEGs of smooth random content (upsampled noise: compresses like a photo)."""
    rng = np.random.default_rng(seed)
    paths = []
    for i in range(count):
        coarse = rng.integers(0, 256, (12, 12, 3), dtype=np.uint8)
        image = Image.fromarray(coarse).resize((SOURCE_SIZE, SOURCE_SIZE), Image.BICUBIC)
        paths.append(folder / f"{i:05d}.jpg")
        image.save(paths[-1], quality=90)
    return paths


def _consumer(widths):
    import keras
    from paenet.models import SmallCNN, TaskSpec
    from paenet.optim import ExactFreezingOptimizer
    from paenet.packing import claim_free_weights
    from paenet.training import make_train_step
    model = SmallCNN(widths=widths, dense_units=256, input_shape=(IMAGE_SIZE, IMAGE_SIZE, 3),
                     tasks=[TaskSpec("bench", 10)]).build_variables()
    claim_free_weights(model, 1)
    return make_train_step(model, ExactFreezingOptimizer(keras.optimizers.Adam(1e-3)).start_task(model, 1), 1)


def _pipeline_rows(quick: bool, wanted):
    files_count, batches = (64, 2) if quick else (512, 4)
    widths = (8, 16) if quick else (32, 64, 128, 256)
    timing = dict(repeats=2, calls=1, warmup=1) if quick else dict(repeats=5, calls=1, warmup=1)
    cores = os.cpu_count()
    with tempfile.TemporaryDirectory() as folder:
        paths = write_jpegs(Path(folder), files_count)
        labels = np.arange(files_count) % 10
        step = _consumer(widths)
        x = tf.constant(np.random.default_rng(0).normal(size=(BATCH, IMAGE_SIZE, IMAGE_SIZE, 3)), tf.float32)
        y = tf.constant(labels[:BATCH])

        def consume():
            for _ in range(batches):
                step(x, y).numpy()

        for name, cache in (("input_pipeline_vs_model", None), ("input_pipeline_cached_vs_model", "")):
            if name not in wanted:
                continue
            pipeline = training_dataset(files(paths, labels), BATCH, seed=0, shuffle_buffer=batches * BATCH,
                                        cache=cache)
            if cache is not None:                  # one whole epoch fills the cache
                for _ in pipeline.take(files_count // BATCH + 1):
                    pass

            def deliver(pipeline=pipeline.take(batches)):
                for images, _ in pipeline:
                    images.numpy()

            ours, ref = compare_rates(deliver, consume, batches * BATCH, **timing)
            source = "decoded images cached in memory" if cache is not None else "decode"
            yield row(name, ours, ref, "images/s",
                      config=f"pipeline: {files_count} JPEG {SOURCE_SIZE} px files, {source} + random {IMAGE_SIZE} "
                             f"crop + flip + standardise, batch {BATCH}, AUTOTUNE on {cores} cores: "
                             f"{ours / cores:.1f} images/s per core, fresh iterator per call; model: "
                             f"SmallCNN{list(widths)} {IMAGE_SIZE} px batch {BATCH} train step, fp32, Adam")


GROUPS = (Rows(("input_pipeline_vs_model", "input_pipeline_cached_vs_model"), _pipeline_rows),)
