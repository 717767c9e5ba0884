"""Inception-ResNet-v1 rows: the masked model vs the same graph from plain Keras layers (forward and train
step, batch 32 at 160 px, in fp32 and in mixed_bfloat16), and a pruning update of the whole model.

Quick mode uses one block of each kind, a tiny width, input and batch: it checks that every row runs.
"""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf

from paenet.benchmarks.core import masked_vs_plain_rows, prune_update_row
from paenet.models import InceptionResnetV1, TaskSpec, plain_inception_resnet_v1
from paenet.models.inception_resnet_v1 import FACENET_BLOCKS
from paenet.packing import claim_free_weights

CLASSES = 10
POLICIES = (("float32", "fp32"), ("mixed_bfloat16", "bf16"))


def settings(quick: bool) -> dict:
    if quick:
        return dict(batch=2, size=80, width=0.0625, blocks=(1, 1, 1),
                    timing=dict(repeats=1, calls=1, warmup=1))
    return dict(batch=32, size=160, width=1.0, blocks=FACENET_BLOCKS,
                timing=dict(repeats=5, calls=1, warmup=2))


def _model(s: dict, classes: int) -> InceptionResnetV1:
    model = InceptionResnetV1(input_size=s["size"], width_multiplier=s["width"], block_counts=s["blocks"],
                              tasks=[TaskSpec("bench", classes)], name="bench_inception_resnet_v1")
    model.build_variables()
    claim_free_weights(model, 1)
    return model


def rows(quick: bool = False):
    s = settings(quick)
    rng = np.random.default_rng(0)
    x = tf.constant(rng.uniform(-1, 1, (s["batch"], s["size"], s["size"], 3)).astype(np.float32))
    y = tf.constant(rng.integers(0, CLASSES, s["batch"]))
    for policy, tag in POLICIES:
        previous = keras.mixed_precision.global_policy()
        keras.mixed_precision.set_global_policy(policy)
        try:
            model = _model(s, CLASSES)
            plain = plain_inception_resnet_v1(model, CLASSES)
            yield from masked_vs_plain_rows(
                model, plain, x, y, s["timing"],
                names=(f"forward_inception_resnet_v1_{tag}", f"train_step_inception_resnet_v1_{tag}"),
                config=f"{describe(s)} {s['size']}px batch {s['batch']}, {policy}")
        finally:
            keras.mixed_precision.set_global_policy(previous)
    prune_timing = dict(repeats=1, calls=1, warmup=1) if quick else dict(repeats=3, calls=1, warmup=1)
    yield prune_update_row("prune_update_inception_resnet_v1", _model(s, 0), prune_timing,
                           config=f"{describe(s)}: ")


def describe(s: dict) -> str:
    return f"Inception-ResNet-v1 blocks {list(s['blocks'])} width {s['width']}"
