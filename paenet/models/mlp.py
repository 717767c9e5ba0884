"""A masked multilayer perceptron for flattened inputs (permuted-pixel task sequences, as DEN's)."""
from __future__ import annotations

import math

import keras
import tensorflow as tf

from paenet.layers import MaskedDense, TaskBatchNorm, TaskHeads
from paenet.models.base import PackableModel, given


@keras.saving.register_keras_serializable(package="paenet")
class MLP(PackableModel):
    """Inputs flattened, then ``len(widths)`` masked dense layers ``hidden1`` ... and a masked ``dense``
    feature layer of `dense_units`, each followed by per-task BatchNorm (or, with ``batch_norm=False``,
    a per-task bias) and ReLU; dropout; one head per task.

    The defaults are DEN's permuted-MNIST network, 784-312-128. The hidden layers are expandable (their
    widths are the width config), and ``dense`` with `expand_features` (a task finished narrower reads
    the leading rows of its head); off by default, as SmallCNN's, so the benchmark's sequences grow as
    they were measured.
    """

    OPTIONS = {"batch_norm": True, "expand_features": False}

    def __init__(self, widths=(312,), dense_units: int = 128, batch_norm: bool = True,
                 expand_features: bool = False, dropout: float = 0.0, bn_momentum: float = 0.9, **kwargs):
        kwargs.setdefault("input_shape", (784,))
        super().__init__(**kwargs)
        self.widths = tuple(int(w) for w in widths)
        self.dense_units = int(dense_units)
        self.batch_norm = bool(batch_norm)
        self.expand_features = bool(expand_features)
        self.dropout_rate = float(dropout)
        self.bn_momentum = float(bn_momentum)
        self.features = math.prod(self.image_shape)
        shared = dict(num_tasks=self.num_tasks, sharing=self.sharing, use_bias=not self.batch_norm)
        # One attribute per layer: tf.train.Checkpoint skips layers held in Python lists (DESIGN §9).
        for name, units in self._layer_units():
            setattr(self, name, MaskedDense(units, name=name, **shared))
            if self.batch_norm:
                setattr(self, f"{name}_bn", TaskBatchNorm(self.num_tasks, self.bn_momentum, name=f"{name}_bn"))
        self.drop = keras.layers.Dropout(self.dropout_rate, name="dropout")
        self.heads = TaskHeads([t.num_classes for t in self.task_specs], name="heads", dtype="float32")

    @classmethod
    def settings_arguments(cls, settings) -> dict:
        return {**super().settings_arguments(settings),
                **given(settings, "widths", "dense_units", "dropout", "bn_momentum")}

    def _layer_units(self) -> list[tuple[str, int]]:
        return [*((f"hidden{i}", w) for i, w in enumerate(self.widths, 1)), ("dense", self.dense_units)]

    def call(self, inputs, task=None, training=False):
        task = self.check_task(task)
        x = tf.reshape(inputs, [-1, self.features])
        for name, _ in self._layer_units():
            x = getattr(self, name)(x, task=task)
            if self.batch_norm:
                x = getattr(self, f"{name}_bn")(x, task=task, training=training)
            x = tf.nn.relu(x)
        x = self.drop(x, training=training)
        return self.heads(x, task=task)

    def width_config(self) -> dict[str, int]:
        widths = {f"hidden{i}": w for i, w in enumerate(self.widths, 1)}
        return {**widths, "dense": self.dense_units} if self.expand_features else widths

    def with_width_config(self, widths, frozen_shapes) -> "MLP":
        return self.rebuild(widths=[widths[f"hidden{i}"] for i in range(1, len(self.widths) + 1)],
                            dense_units=widths.get("dense", self.dense_units), frozen_shapes=frozen_shapes)

    def get_config(self):
        return {**super().get_config(), "widths": list(self.widths), "dense_units": self.dense_units,
                "batch_norm": self.batch_norm, "expand_features": self.expand_features,
                "dropout": self.dropout_rate, "bn_momentum": self.bn_momentum}
