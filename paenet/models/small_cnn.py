"""A small CNN of masked layers for CPU-sized experiments and tests, and its plain-Keras twin."""
from __future__ import annotations

import keras
import tensorflow as tf

from paenet.layers import MaskedConv2D, MaskedDense, TaskBatchNorm, TaskHeads
from paenet.models.base import PackableModel, given


@keras.saving.register_keras_serializable(package="paenet")
class SmallCNN(PackableModel):
    """``len(widths)`` blocks of 3x3 conv → BN → ReLU → 2x2 max-pool, global average pool, a dense
    feature layer with BN and ReLU, dropout, and one head per task.

    Every conv and the dense layer are masked; BN and heads are per task (FaceNet's BN form). The convs
    are expandable, and ``dense`` with `expand_features` (a task finished narrower reads the leading rows
    of its head); off by default, so the benchmark's sequences grow as they were measured.
    """

    OPTIONS = {"expand_features": False}

    def __init__(self, widths=(16, 32, 64), dense_units: int = 128, expand_features: bool = False,
                 dropout: float = 0.0, bn_momentum: float = 0.9, **kwargs):
        super().__init__(**kwargs)
        self.widths = tuple(int(w) for w in widths)
        if min(self.image_shape[:2]) < 2 ** len(self.widths):
            raise ValueError(f"input size {min(self.image_shape[:2])} is halved once per layer of --widths "
                             f"({len(self.widths)}), so it needs at least {2 ** len(self.widths)}")
        self.dense_units = int(dense_units)
        self.expand_features = bool(expand_features)
        self.dropout_rate = float(dropout)
        # Short CPU runs need faster-moving statistics than FaceNet's 0.995.
        self.bn_momentum = float(bn_momentum)
        shared = dict(num_tasks=self.num_tasks, sharing=self.sharing)
        # One attribute per layer: tf.train.Checkpoint skips layers held in Python lists (DESIGN §9).
        for i, w in enumerate(self.widths, 1):
            setattr(self, f"conv{i}", MaskedConv2D(w, 3, name=f"conv{i}", **shared))
            setattr(self, f"conv{i}_bn", TaskBatchNorm(self.num_tasks, self.bn_momentum, name=f"conv{i}_bn"))
        self.dense = MaskedDense(self.dense_units, name="dense", **shared)
        self.dense_bn = TaskBatchNorm(self.num_tasks, self.bn_momentum, name="dense_bn")
        self.drop = keras.layers.Dropout(self.dropout_rate, name="dropout")
        self.heads = TaskHeads([t.num_classes for t in self.task_specs], name="heads", dtype="float32")

    @classmethod
    def settings_arguments(cls, settings) -> dict:
        return {**super().settings_arguments(settings),
                **given(settings, "widths", "dense_units", "dropout", "bn_momentum")}

    def call(self, inputs, task=None, training=False):
        task = self.check_task(task)
        x = inputs
        for i in range(1, len(self.widths) + 1):
            conv, norm = getattr(self, f"conv{i}"), getattr(self, f"conv{i}_bn")
            x = tf.nn.relu(norm(conv(x, task=task), task=task, training=training))
            x = tf.nn.max_pool2d(x, 2, 2, "VALID")
        x = tf.reduce_mean(x, axis=(1, 2))
        x = tf.nn.relu(self.dense_bn(self.dense(x, task=task), task=task, training=training))
        x = self.drop(x, training=training)
        return self.heads(x, task=task)

    def width_config(self) -> dict[str, int]:
        widths = {f"conv{i}": w for i, w in enumerate(self.widths, 1)}
        return {**widths, "dense": self.dense_units} if self.expand_features else widths

    def with_width_config(self, widths, frozen_shapes) -> "SmallCNN":
        return self.rebuild(widths=[widths[f"conv{i}"] for i in range(1, len(self.widths) + 1)],
                            dense_units=widths.get("dense", self.dense_units), frozen_shapes=frozen_shapes)

    def get_config(self):
        return {**super().get_config(), "widths": list(self.widths), "dense_units": self.dense_units,
                "expand_features": self.expand_features,
                "dropout": self.dropout_rate, "bn_momentum": self.bn_momentum}


def plain_small_cnn(model: SmallCNN, num_classes: int) -> keras.Model:
    """The same graph as `model` for one task, built from stock Keras layers (a benchmark baseline)."""
    bn = dict(momentum=model.bn_momentum, epsilon=1e-3, scale=False)
    x = inputs = keras.Input(model.image_shape)
    for w in model.widths:
        x = keras.layers.Conv2D(w, 3, padding="same", use_bias=False)(x)
        x = keras.layers.ReLU()(keras.layers.BatchNormalization(**bn)(x))
        x = keras.layers.MaxPool2D(2)(x)
    x = keras.layers.GlobalAveragePooling2D()(x)
    x = keras.layers.Dense(model.dense_units, use_bias=False)(x)
    x = keras.layers.ReLU()(keras.layers.BatchNormalization(**bn)(x))
    x = keras.layers.Dropout(model.dropout_rate)(x)
    outputs = keras.layers.Dense(num_classes, dtype="float32")(x)
    return keras.Model(inputs, outputs, name=f"plain_{model.name}")
