"""Compiled training and inference steps for one task of a packed model, and top-1 evaluation."""
from __future__ import annotations

import keras
import numpy as np
import tensorflow as tf


def classification_loss():
    """The default task loss: softmax cross-entropy on integer labels, from logits."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def make_train_step(model, optimizer, task: int, loss_fn=None, jit_compile: bool = False):
    """A ``tf.function`` ``step(x, y) -> loss`` that trains task `task` through an
    ``ExactFreezingOptimizer`` started for that task. A loss with an ``outputs`` attribute gets those
    outputs of the model (``model(x, outputs=loss_fn.outputs)``) instead of its default one."""
    if optimizer.task != task:
        raise ValueError(f"the optimizer was started for task {optimizer.task}, not task {task}")
    loss_fn = loss_fn or classification_loss()
    variables = optimizer.trainable_variables
    outputs = {"outputs": loss_fn.outputs} if hasattr(loss_fn, "outputs") else {}

    @tf.function(jit_compile=jit_compile)
    def step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, task=task, training=True, **outputs))
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    return step


def make_predict_fn(model, task: int, jit_compile: bool = False):
    """A ``tf.function`` giving task `task`'s outputs in inference mode."""
    task = model.check_task(task)
    return tf.function(lambda x: model(x, task=task, training=False), jit_compile=jit_compile)


def predict(model, task: int, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Outputs and labels for every sample of `dataset` (batches of (x, y)), none dropped."""
    fn = make_predict_fn(model, task)
    outputs, labels = [], []
    for x, y in dataset:
        outputs.append(np.asarray(fn(x)))
        labels.append(np.asarray(y))
    return np.concatenate(outputs), np.concatenate(labels)


def top1_accuracy(model, task: int, dataset) -> float:
    """Top-1 accuracy over every sample of `dataset`."""
    logits, labels = predict(model, task, dataset)
    return float(np.mean(np.argmax(logits, axis=-1) == labels))


def weighted_classification_loss(class_weights):
    """Softmax cross-entropy from logits with each sample weighted by its class's weight (AffectNet's
    (N - n_c) / n_c), averaged over the batch."""
    weights = tf.constant(np.asarray(class_weights, np.float32))
    per_sample = keras.losses.SparseCategoricalCrossentropy(from_logits=True, reduction=None)

    def loss(y, logits):
        return tf.reduce_mean(per_sample(y, logits) * tf.gather(weights, tf.cast(y, tf.int32)))

    return loss
