"""A masked VGG16-BN: CPG's backbone for CIFAR-100 in 20 tasks (Hung et al., NeurIPS 2019)."""
from __future__ import annotations

import keras
import tensorflow as tf

from paenet.layers import MaskedConv2D, MaskedDense, TaskBatchNorm, TaskHeads
from paenet.models.base import PackableModel, given

# VGG16's 13 convolutions ("configuration D"); a 2x2 max-pool follows each block's last one.
VGG16_WIDTHS = (64, 64, 128, 128, 256, 256, 256, 512, 512, 512, 512, 512, 512)
POOL_AFTER = (2, 4, 7, 10, 13)


@keras.saving.register_keras_serializable(package="paenet")
class VGG16BN(PackableModel):
    """13 blocks of 3x3 conv → per-task BN → ReLU with a 2x2 max-pool after convs 2, 4, 7, 10 and 13,
    global average pooling, two masked dense layers ``fc1``, ``fc2`` of `dense_units` (one int for both,
    or a pair) with per-task biases and ReLU (no BN, as CPG's classifier), dropout, one head per task.

    For CPG's 32x32 inputs the last pool leaves 1x1, so the average pool is CPG's flatten; for larger
    inputs it keeps ``fc1``'s rows tied to channels, which expansion needs. `widths` (13 filter counts,
    VGG16's by default), ``fc1`` and, with `expand_features` (the default, as CPG grows it), ``fc2`` are
    expandable; a task finished narrower reads the leading rows of its head.
    """

    OPTIONS = {"expand_features": True}

    def __init__(self, widths=VGG16_WIDTHS, dense_units: int = 4096, expand_features: bool = True,
                 dropout: float = 0.0, bn_momentum: float = 0.9, **kwargs):
        kwargs.setdefault("input_shape", (32, 32, 3))
        super().__init__(**kwargs)
        self.widths = tuple(int(w) for w in widths)
        if len(self.widths) != len(VGG16_WIDTHS):
            raise ValueError(f"VGG16 has {len(VGG16_WIDTHS)} convolutions; got {len(self.widths)} widths "
                             f"{list(self.widths)}")
        pair = (dense_units, dense_units) if isinstance(dense_units, int) else tuple(dense_units)
        if len(pair) != 2:
            raise ValueError(f"dense_units must be an int or a pair (fc1, fc2), got {dense_units!r}")
        self.dense_units = tuple(int(u) for u in pair)
        self.expand_features = bool(expand_features)
        self.dropout_rate = float(dropout)
        self.bn_momentum = float(bn_momentum)
        shared = dict(num_tasks=self.num_tasks, sharing=self.sharing)
        # One attribute per layer: tf.train.Checkpoint skips layers held in Python lists (DESIGN §9).
        for i, w in enumerate(self.widths, 1):
            setattr(self, f"conv{i}", MaskedConv2D(w, 3, name=f"conv{i}", **shared))
            setattr(self, f"conv{i}_bn", TaskBatchNorm(self.num_tasks, self.bn_momentum, name=f"conv{i}_bn"))
        self.fc1 = MaskedDense(self.dense_units[0], use_bias=True, name="fc1", **shared)
        self.fc2 = MaskedDense(self.dense_units[1], use_bias=True, name="fc2", **shared)
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
            if i in POOL_AFTER:
                x = tf.nn.max_pool2d(x, 2, 2, "VALID")
        x = tf.reduce_mean(x, axis=(1, 2))
        x = tf.nn.relu(self.fc1(x, task=task))
        x = tf.nn.relu(self.fc2(x, task=task))
        x = self.drop(x, training=training)
        return self.heads(x, task=task)

    def width_config(self) -> dict[str, int]:
        widths = {**{f"conv{i}": w for i, w in enumerate(self.widths, 1)}, "fc1": self.dense_units[0]}
        return {**widths, "fc2": self.dense_units[1]} if self.expand_features else widths

    def with_width_config(self, widths, frozen_shapes) -> "VGG16BN":
        return self.rebuild(widths=[widths[f"conv{i}"] for i in range(1, len(self.widths) + 1)],
                            dense_units=[widths["fc1"], widths.get("fc2", self.dense_units[1])],
                            frozen_shapes=frozen_shapes)

    def get_config(self):
        return {**super().get_config(), "widths": list(self.widths), "dense_units": list(self.dense_units),
                "expand_features": self.expand_features,
                "dropout": self.dropout_rate, "bn_momentum": self.bn_momentum}
