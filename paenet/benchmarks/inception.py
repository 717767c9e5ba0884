"""Inception-ResNet-v1 rows: the masked model vs the same graph from plain Keras layers (forward and train
step, batch 32 at 160 px, in fp32, in mixed_bfloat16 and in fp32 through XLA), and a pruning update of the
whole model.

Quick mode uses one block of each kind, a tiny width, input and batch: it checks that every row runs.
"""
from __future__ import annotations

import functools

import keras
import numpy as np
import tensorflow as tf

from paenet.benchmarks.core import masked_vs_plain_rows, prune_update_row
from paenet.benchmarks.timing import Rows
from paenet.models import InceptionResnetV1, TaskSpec, plain_inception_resnet_v1
from paenet.models.inception_resnet_v1 import FACENET_BLOCKS
from paenet.packing import claim_free_weights

CLASSES = 10
VARIANTS = (("float32", "fp32", False), ("mixed_bfloat16", "bf16", False), ("float32", "xla", True))  # (policy, tag, XLA)


def settings(quick: bool) -> dict:
    if quick:
        return dict(batch=2, size=80, width=0.0625, blocks=(1, 1, 1),
                    timing=dict(repeats=1, calls=1, warmup=1))
    return dict(batch=32, size=160, width=1.0, blocks=FACENET_BLOCKS,
                timing=dict(repeats=7, calls=1, warmup=2))


def packed_model(s: dict, classes: int, tasks: int = 1, widths: dict | None = None) -> InceptionResnetV1:
    """An Inception-ResNet-v1 of `s`'s size and width (or FaceNet scope widths `widths`) with `tasks`
    tasks of `classes` classes, task 1 owning every weight."""
    model = InceptionResnetV1(input_size=s["size"], width_multiplier=s["width"], widths=widths,
                              block_counts=s["blocks"], name="bench_inception_resnet_v1",
                              tasks=[TaskSpec(f"task{t}", classes) for t in range(1, tasks + 1)])
    model.build_variables()
    claim_free_weights(model, 1)
    return model


def batch(s: dict, classes: int = CLASSES):
    """A fixed random batch (images in [-1, 1], integer labels) of the size `s` asks for."""
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(-1, 1, (s["batch"], s["size"], s["size"], 3)).astype(np.float32))
    return x, tf.constant(rng.integers(0, classes, s["batch"]))


def _variant_rows(policy: str, tag: str, jit_compile: bool, quick: bool, wanted):
    s = settings(quick)
    x, y = batch(s)
    previous = keras.mixed_precision.global_policy()
    keras.mixed_precision.set_global_policy(policy)
    try:
        model = packed_model(s, CLASSES)
        plain = plain_inception_resnet_v1(model, CLASSES)
        yield from masked_vs_plain_rows(
            model, plain, x, y, s["timing"], wanted=wanted, jit_compile=jit_compile,
            names=(f"forward_inception_resnet_v1_{tag}", f"train_step_inception_resnet_v1_{tag}"),
            config=f"{describe(s)} {s['size']}px batch {s['batch']}, {policy}{', XLA' if jit_compile else ''}")
    finally:
        keras.mixed_precision.set_global_policy(previous)


def _prune_rows(quick: bool, wanted):
    s = settings(quick)
    timing = dict(repeats=1, calls=1, warmup=1) if quick else dict(repeats=3, calls=1, warmup=1)
    yield prune_update_row("prune_update_inception_resnet_v1", packed_model(s, 0), timing,
                           config=f"{describe(s)}: ")


GROUPS = (*(Rows((f"forward_inception_resnet_v1_{tag}", f"train_step_inception_resnet_v1_{tag}"),
                 functools.partial(_variant_rows, policy, tag, jit)) for policy, tag, jit in VARIANTS),
          Rows(("prune_update_inception_resnet_v1",), _prune_rows))


def describe(s: dict) -> str:
    return f"Inception-ResNet-v1 blocks {list(s['blocks'])} width {s['width']}"
