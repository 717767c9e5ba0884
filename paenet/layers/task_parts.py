"""Per-task parts: BatchNorm in FaceNet's form and classifier heads.

Each task t owns its own copies (``beta_t{t}``, ``moving_mean_t{t}``, ``kernel_t{t}`` ...). They are plain
attributes, one per task, because ``tf.train.Checkpoint`` silently skips variables held in lists or dicts
(DESIGN §9). The number of tasks is part of the layer's config: a model gains a task by being rebuilt with
one more (``paenet.models.base.PackableModel.with_tasks``), which keeps every existing value.
"""
from __future__ import annotations

import keras
import tensorflow as tf

from paenet.layers.masked import check_num_tasks, check_task


@keras.saving.register_keras_serializable(package="paenet")
class TaskBatchNorm(keras.layers.Layer):
    """BatchNorm with one set of parameters and moving statistics per task.

    Defaults are FaceNet's: no gamma (``scale=False``), epsilon 1e-3, moving-average decay 0.995. In
    training mode the active task normalises with batch statistics and updates its own moving averages;
    no other task's variables are read or written. A finished task (``frozen_tasks``, which the model
    sets) always normalises in inference mode: its moving statistics never change.
    """

    def __init__(self, num_tasks: int = 1, momentum: float = 0.995, epsilon: float = 1e-3,
                 scale: bool = False, **kwargs):
        super().__init__(**kwargs)
        self.num_tasks = check_num_tasks(num_tasks)
        self.momentum = float(momentum)
        self.epsilon = float(epsilon)
        self.scale = bool(scale)
        self.frozen_tasks = 0       # tasks 1..frozen_tasks are finished (PackableModel.frozen_tasks)

    def build(self, input_shape):
        if input_shape[-1] is None:
            raise ValueError(f"{self.name}: the channel dimension must be known, got {input_shape}")
        # Parameters stay float32 under mixed precision (autocast off): the fused kernel wants them so.
        channels = dict(shape=(int(input_shape[-1]),), autocast=False)
        for t in range(1, self.num_tasks + 1):
            if self.scale:
                setattr(self, f"gamma_t{t}", self.add_weight(name=f"gamma_t{t}", initializer="ones", **channels))
            setattr(self, f"beta_t{t}", self.add_weight(name=f"beta_t{t}", initializer="zeros", **channels))
            setattr(self, f"moving_mean_t{t}", self.add_weight(
                name=f"moving_mean_t{t}", initializer="zeros", trainable=False, **channels))
            setattr(self, f"moving_variance_t{t}", self.add_weight(
                name=f"moving_variance_t{t}", initializer="ones", trainable=False, **channels))

    def task_variables(self, task: int) -> list:
        check_task(task, self.num_tasks)
        names = (["gamma"] if self.scale else []) + ["beta", "moving_mean", "moving_variance"]
        return [getattr(self, f"{n}_t{task}") for n in names]

    def call(self, inputs, task: int, training: bool = False):
        check_task(task, self.num_tasks)
        training = training and task > self.frozen_tasks
        gamma, beta, mean, variance = self._parameters(task, inputs.shape[-1])
        if training and mean.shape[0] != self.moving_mean_t1.shape[0]:
            raise ValueError(f"{self.name}: task {task} is frozen at {mean.shape[0]} channels; only the "
                             "active, full-width task trains")
        if training and len(inputs.shape) == 2:
            # Dense features: moments and an affine map cost less than the fused kernel on [N, 1, 1, C]
            # (0.3 ms of a 4 ms MLP step on CPU). Its moving variance is unbiased, as the fused kernel's.
            x = tf.cast(inputs, tf.float32)     # statistics in float32 under mixed precision, as the fused kernel's
            batch_mean, batch_variance = tf.nn.moments(x, [0])
            count = tf.cast(tf.shape(x)[0], tf.float32)
            self._update_moving(mean, variance, batch_mean, batch_variance * count / tf.maximum(count - 1, 1))
            y = tf.nn.batch_normalization(x, batch_mean, batch_variance, beta, gamma, self.epsilon)
            return tf.cast(y, inputs.dtype)
        x = inputs
        if len(inputs.shape) != 4:  # The fused kernel takes NHWC; dense features become [N, 1, 1, C].
            x = tf.reshape(inputs, [-1, 1, 1, inputs.shape[-1]])
        if training:
            y, batch_mean, batch_variance = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, epsilon=self.epsilon, is_training=True)
            self._update_moving(mean, variance, batch_mean, batch_variance)
        else:
            y, _, _ = tf.compat.v1.nn.fused_batch_norm(
                x, gamma, beta, mean=mean, variance=variance, epsilon=self.epsilon, is_training=False)
        return y if len(inputs.shape) == 4 else tf.reshape(y, tf.shape(inputs))

    def _update_moving(self, mean, variance, batch_mean, batch_variance):
        for moving, batch in ((mean, batch_mean), (variance, batch_variance)):
            moving.assign(moving * self.momentum + batch * (1.0 - self.momentum))

    def _parameters(self, task: int, channels: int):
        """Task `task`'s gamma, beta, mean and variance for the leading `channels` (a task finished
        before an expansion computes at its own, smaller width)."""
        names = ["beta", "moving_mean", "moving_variance"]
        params = [getattr(self, f"{n}_t{task}") for n in names]
        if channels != params[0].shape[0]:
            params = [tf.convert_to_tensor(p)[:channels] for p in params]
        gamma = getattr(self, f"gamma_t{task}")[:channels] if self.scale else tf.ones((channels,))
        return (gamma, *params)

    def compute_output_shape(self, input_shape):
        return input_shape

    def get_config(self):
        return {**super().get_config(), "num_tasks": self.num_tasks, "momentum": self.momentum,
                "epsilon": self.epsilon, "scale": self.scale}


@keras.saving.register_keras_serializable(package="paenet")
class TaskHeads(keras.layers.Layer):
    """One dense classifier head per task: ``num_classes[t - 1]`` logits for task t.

    A task with 0 classes has no head (a feature task such as face verification): its inputs pass
    through unchanged. A task finished before an expansion widened the feature layer gets its features
    at its own, smaller width and reads the leading rows of its kernel: the shape it was trained with.
    """

    def __init__(self, num_classes=(), kernel_initializer="glorot_uniform", **kwargs):
        super().__init__(**kwargs)
        self.num_classes = tuple(int(c) for c in num_classes)
        check_num_tasks(len(self.num_classes))
        if any(c < 0 for c in self.num_classes):
            raise ValueError(f"{self.name}: class counts must be >= 0, got {self.num_classes}")
        self.kernel_initializer = keras.initializers.get(kernel_initializer)

    @property
    def num_tasks(self) -> int:
        return len(self.num_classes)

    def build(self, input_shape):
        features = int(input_shape[-1])
        for t, classes in enumerate(self.num_classes, start=1):
            if classes:
                setattr(self, f"kernel_t{t}", self.add_weight(
                    name=f"kernel_t{t}", shape=(features, classes), initializer=self.kernel_initializer))
                setattr(self, f"bias_t{t}", self.add_weight(
                    name=f"bias_t{t}", shape=(classes,), initializer="zeros"))

    def task_variables(self, task: int) -> list:
        check_task(task, self.num_tasks)
        if not self.num_classes[task - 1]:
            return []
        return [getattr(self, f"kernel_t{task}"), getattr(self, f"bias_t{task}")]

    def call(self, inputs, task: int):
        check_task(task, self.num_tasks)
        if not self.num_classes[task - 1]:
            return inputs
        kernel = getattr(self, f"kernel_t{task}")
        if inputs.shape[-1] != kernel.shape[0]:
            kernel = tf.convert_to_tensor(kernel)[: inputs.shape[-1]]
        return tf.matmul(inputs, kernel) + getattr(self, f"bias_t{task}")

    def get_config(self):
        return {**super().get_config(), "num_classes": list(self.num_classes),
                "kernel_initializer": keras.initializers.serialize(self.kernel_initializer)}
