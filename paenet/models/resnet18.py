"""A masked ResNet-18 in its CIFAR form (He et al., CVPR 2016; the variant CIFAR continual-learning
papers train): a 3x3 stem, no max-pool, four stages of two basic blocks."""
from __future__ import annotations

import keras
import tensorflow as tf

from paenet.layers import MaskedConv2D, TaskBatchNorm, TaskHeads
from paenet.models.base import PackableModel, given

RESNET18_WIDTHS = (64, 128, 256, 512)
STRIDES = (1, 2, 2, 2)
BLOCKS = 2          # basic blocks per stage


@keras.saving.register_keras_serializable(package="paenet")
class ResNet18(PackableModel):
    """Stem ``conv1`` (3x3, ``widths[0]`` filters, stride 1) → per-task BN → ReLU; four stages
    ``layer1`` ... ``layer4`` of `widths` filters, strides 1, 2, 2, 2, each two basic blocks (3x3 conv →
    BN → ReLU → 3x3 conv → BN, added to the block's input, ReLU), the first block of stages 2-4
    reaching its input through a 1x1 ``shortcut`` conv with BN; global average pool, dropout, one head
    per task. Every conv is masked, BN and heads are per task.

    Expandable (``width_config``): each block's inner width (``layerS_B_conv1``) and the residual
    stream of stages 1-3, keyed by the layer that opens it (``conv1``, ``layer2_0_shortcut``,
    ``layer3_0_shortcut``; every conv writing into that stream follows), and with `expand_features`
    stage 4's (``layer4_0_shortcut``), which the heads read (a task finished narrower reads the leading
    rows of its head). `inner_widths` (eight, one per block) default to their stage's.
    """

    OPTIONS = {"expand_features": False}

    def __init__(self, widths=RESNET18_WIDTHS, inner_widths=None, expand_features: bool = False,
                 dropout: float = 0.0, bn_momentum: float = 0.9, **kwargs):
        kwargs.setdefault("input_shape", (32, 32, 3))
        super().__init__(**kwargs)
        self.widths = tuple(int(w) for w in widths)
        if len(self.widths) != len(STRIDES):
            raise ValueError(f"ResNet-18 has {len(STRIDES)} stages; got {len(self.widths)} widths {list(self.widths)}")
        inner = inner_widths or [w for w in self.widths for _ in range(BLOCKS)]
        self.inner_widths = tuple(int(w) for w in inner)
        self.expand_features = bool(expand_features)
        if len(self.inner_widths) != len(STRIDES) * BLOCKS:
            raise ValueError(f"ResNet-18 has {len(STRIDES) * BLOCKS} blocks; got {len(self.inner_widths)} inner "
                             f"widths {list(self.inner_widths)}")
        self.dropout_rate = float(dropout)
        self.bn_momentum = float(bn_momentum)
        # One attribute per layer: tf.train.Checkpoint skips layers held in Python lists (DESIGN §9).
        self._conv_bn("conv1", self.widths[0], 3, 1)
        stream = self.widths[0]
        for stage, (width, stride) in enumerate(zip(self.widths, STRIDES), 1):
            for block in range(BLOCKS):
                name, step = f"layer{stage}_{block}", stride if block == 0 else 1
                self._conv_bn(f"{name}_conv1", self.inner_widths[(stage - 1) * BLOCKS + block], 3, step)
                self._conv_bn(f"{name}_conv2", width, 3, 1)
                if step != 1 or stream != width:
                    self._conv_bn(f"{name}_shortcut", width, 1, step)
                stream = width
        self.drop = keras.layers.Dropout(self.dropout_rate, name="dropout")
        self.heads = TaskHeads([t.num_classes for t in self.task_specs], name="heads", dtype="float32")

    @classmethod
    def settings_arguments(cls, settings) -> dict:
        return {**super().settings_arguments(settings), **given(settings, "widths", "dropout", "bn_momentum")}

    def _conv_bn(self, name: str, filters: int, size: int, strides: int):
        setattr(self, name, MaskedConv2D(filters, size, strides, num_tasks=self.num_tasks, sharing=self.sharing,
                                         name=name))
        setattr(self, f"{name}_bn", TaskBatchNorm(self.num_tasks, self.bn_momentum, name=f"{name}_bn"))

    def _apply(self, name, x, task, training):
        return getattr(self, f"{name}_bn")(getattr(self, name)(x, task=task), task=task, training=training)

    def call(self, inputs, task=None, training=False):
        task = self.check_task(task)
        x = tf.nn.relu(self._apply("conv1", inputs, task, training))
        for stage in range(1, len(STRIDES) + 1):
            for block in range(BLOCKS):
                name = f"layer{stage}_{block}"
                y = tf.nn.relu(self._apply(f"{name}_conv1", x, task, training))
                y = self._apply(f"{name}_conv2", y, task, training)
                if hasattr(self, f"{name}_shortcut"):
                    x = self._apply(f"{name}_shortcut", x, task, training)
                x = tf.nn.relu(x + y)
        x = tf.reduce_mean(x, axis=(1, 2))
        x = self.drop(x, training=training)
        return self.heads(x, task=task)

    def _inner_keys(self) -> list[str]:
        return [f"layer{s}_{b}_conv1" for s in range(1, len(STRIDES) + 1) for b in range(BLOCKS)]

    def _stream_keys(self) -> list[str]:
        keys = ["conv1", "layer2_0_shortcut", "layer3_0_shortcut", "layer4_0_shortcut"]
        return keys if self.expand_features else keys[:3]

    def width_config(self) -> dict[str, int]:
        return {**dict(zip(self._stream_keys(), self.widths)), **dict(zip(self._inner_keys(), self.inner_widths))}

    def with_width_config(self, widths, frozen_shapes) -> "ResNet18":
        streams = [widths[k] for k in self._stream_keys()]
        return self.rebuild(widths=[*streams, *self.widths[len(streams):]],
                            inner_widths=[widths[k] for k in self._inner_keys()], frozen_shapes=frozen_shapes)

    def get_config(self):
        return {**super().get_config(), "widths": list(self.widths), "inner_widths": list(self.inner_widths),
                "expand_features": self.expand_features,
                "dropout": self.dropout_rate, "bn_momentum": self.bn_momentum}
