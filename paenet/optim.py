"""An optimizer wrapper that moves only the weights the active task owns, bit-exactly.

Masking gradients is not enough (DESIGN §2, §9): Keras optimizers move entries whose gradient is zero
(AdamW's decoupled weight decay acts on every entry; Adam, SGD with momentum and RMSprop keep moving an
entry from slot state carried over from earlier steps). So after the inner optimizer's step, every
masked-kernel entry that the active task does not own (older tasks' weights, pruned weights) is restored
to its value from before the step. Weight decay therefore acts only on owned entries.

The wrapper holds the inner optimizer's config, not its state: ``start_task`` builds a fresh inner
optimizer, so slots never carry over from one task to the next, and one wrapper can serve many tasks.
"""
from __future__ import annotations

import keras
import tensorflow as tf


class ExactFreezingOptimizer:
    """Wraps any Keras optimizer (or ``LossScaleOptimizer``) for training one task of a packed model.

    Usage::

        opt = ExactFreezingOptimizer(keras.optimizers.AdamW(1e-3, weight_decay=1e-4))
        opt.start_task(model, task=2)
        grads = tape.gradient(loss, opt.trainable_variables)
        opt.apply_gradients(zip(grads, opt.trainable_variables))   # inside tf.function too
    """

    def __init__(self, optimizer="adam"):
        self._config = keras.optimizers.serialize(keras.optimizers.get(optimizer))
        self.inner = None
        self.task = None
        self.trainable_variables = []
        self._masks = {}

    @property
    def learning_rate(self):
        self._check_started()
        inner = getattr(self.inner, "inner_optimizer", self.inner)
        return inner.learning_rate

    @property
    def iterations(self):
        self._check_started()
        return self.inner.iterations

    def start_task(self, model, task: int):
        """Prepares a fresh inner optimizer for `task`: the model's masked kernels plus the task's own
        trainable variables (no other task's BatchNorm, biases or head is ever passed to it)."""
        task = model.check_task(task)
        layers = model.masked_layers()
        self.task = task
        self.inner = keras.optimizers.deserialize(self._config)
        self._masks = {id(layer.kernel): layer.mask for layer in layers}
        self.trainable_variables = [l.kernel for l in layers] + model.task_variables(task, trainable_only=True)
        self.inner.build(self.trainable_variables)
        return self

    def scale_loss(self, loss):
        """The loss to differentiate: scaled when the inner optimizer is a ``LossScaleOptimizer``."""
        self._check_started()
        return self.inner.scale_loss(loss) if hasattr(self.inner, "scale_loss") else loss

    def apply_gradients(self, grads_and_vars):
        """One step of the inner optimizer, then every entry not owned by the active task restored."""
        self._check_started()
        known = {id(v) for v in self.trainable_variables}
        pairs, frozen = [], []
        for grad, var in grads_and_vars:
            if id(var) not in known:
                raise ValueError(f"variable {var.path} is not trainable for task {self.task}; pass only "
                                 "the wrapper's trainable_variables")
            if grad is None:
                continue
            mask = self._masks.get(id(var))
            if mask is not None:
                owned = tf.equal(mask, tf.constant(self.task, tf.uint8))
                grad = tf.where(owned, grad, tf.zeros([], grad.dtype))
                frozen.append((var, owned, tf.identity(var.value)))
            pairs.append((grad, var))
        self.inner.apply_gradients(pairs)
        for var, owned, before in frozen:
            var.assign(tf.where(owned, var.value, before))

    def _check_started(self):
        if self.inner is None:
            raise RuntimeError("call start_task(model, task) before using the optimizer")

