"""An optimizer wrapper that moves only the weights the active task owns, bit-exactly.

Masking gradients is not enough (DESIGN §2, §9): Keras optimizers move entries whose gradient is zero
(AdamW's decoupled weight decay acts on every entry; Adam, SGD with momentum and RMSprop keep moving an
entry from slot state carried over from earlier steps). So after the inner optimizer's step, every
masked-kernel entry that the active task does not own (older tasks' weights, pruned weights) is restored
to its value from before the step. Weight decay therefore acts only on owned entries. Gradients are masked
too only where an entry's gradient can reach an owned entry's step, which is when the inner optimizer clips
them (by norm or value); otherwise a non-owned entry's gradient moves only its own slots, whose steps are
undone.

The wrapper holds the inner optimizer's config, not its state: ``start_task`` builds a fresh inner
optimizer, so slots never carry over from one task to the next, and one wrapper can serve many tasks.

Fine-tuning, the forgetting baseline, is the one user that freezes nothing (``start_task(every_weight=True)``,
``paenet.packing.FineTuningPacker``): refused on a model with a finished task, so no finished task moves.

A picking task's picking masks (CPG) train with an optimizer of their own (``pick_optimizer``, Adam at
5e-4 as in ivclab/CPG): they are never weight-decayed, and ``freeze_picks`` takes them out of training
(CPG keeps them fixed while the task is pruned). ``set_learning_rates`` scales either optimizer's rate
from its configured value (CPG's pick schedule and its retraining after pruning).
"""
from __future__ import annotations

import keras
import tensorflow as tf

from paenet.layers.masked import owned_condition


DEFAULT_PICK_LEARNING_RATE = 5e-4


class ExactFreezingOptimizer:
    """Wraps any Keras optimizer (or ``LossScaleOptimizer``) for training one task of a packed model.

    Usage::

        opt = ExactFreezingOptimizer(keras.optimizers.AdamW(1e-3, weight_decay=1e-4))
        opt.start_task(model, task=2)
        grads = tape.gradient(loss, opt.trainable_variables)
        opt.apply_gradients(zip(grads, opt.trainable_variables))   # inside tf.function too
    """

    def __init__(self, optimizer="adam", pick_optimizer=None):
        self._config = keras.optimizers.serialize(keras.optimizers.get(optimizer))
        self._pick_config = keras.optimizers.serialize(
            keras.optimizers.get(pick_optimizer or keras.optimizers.Adam(DEFAULT_PICK_LEARNING_RATE)))
        self.inner = None
        self.pick_inner = None
        self.task = None
        self.trainable_variables = []
        self._weights = []
        self._picks = []
        self._masks = {}
        self._model = None
        self._rates = None
        self._mask_gradients = True

    @property
    def config(self) -> dict:
        """The serialized configs of the weights' and the picks' optimizers (a copy makes a twin)."""
        return {"optimizer": self._config, "pick_optimizer": self._pick_config}

    @property
    def variables(self) -> list:
        """Every slot and counter of the inner optimizers (what a checkpoint must hold to resume)."""
        self._check_started()
        return list(self.inner.variables) + (list(self.pick_inner.variables) if self.pick_inner else [])

    @property
    def learning_rate(self):
        self._check_started()
        inner = getattr(self.inner, "inner_optimizer", self.inner)
        return inner.learning_rate

    @property
    def iterations(self):
        self._check_started()
        return self.inner.iterations

    def start_task(self, model, task: int, every_weight: bool = False):
        """Prepares fresh inner optimizers for `task`: the model's masked kernels plus the task's own
        trainable variables (no other task's BatchNorm, biases or head is ever passed to it), and the
        task's picking masks if it picks. A finished task is refused (FinishedTaskError). With
        `every_weight` (fine-tuning) every kernel entry moves, whoever owns it: refused
        (FinishedTaskError naming task 1) when the model has any finished task."""
        task = model.check_unfinished(task, "ExactFreezingOptimizer.start_task")
        if every_weight and model.frozen_tasks:
            model.check_unfinished(1, "ExactFreezingOptimizer.start_task(every_weight=True)")
        self._model = model
        layers = model.masked_layers()
        self.task = task
        self.inner = keras.optimizers.deserialize(self._config)
        self._masks = {} if every_weight else {id(layer.kernel): layer.mask for layer in layers}
        self._weights = [l.kernel for l in layers] + model.task_variables(task, trainable_only=True)
        self.inner.build(self._weights)
        clipping = getattr(self.inner, "inner_optimizer", self.inner)
        self._mask_gradients = any(getattr(clipping, name, None) is not None
                                   for name in ("clipnorm", "clipvalue", "global_clipnorm"))
        self._picks = model.pick_variables(task)
        self.pick_inner = None
        if self._picks:
            self.pick_inner = keras.optimizers.deserialize(self._pick_config)
            self.pick_inner.build(self._picks)
        self.trainable_variables = self._weights + self._picks
        self._rates = (float(self.learning_rate.numpy()),
                       float(self.pick_inner.learning_rate.numpy()) if self.pick_inner else None)
        return self

    def set_learning_rates(self, weights: float | None = None, picks: float | None = None) -> None:
        """Sets the weights' and the picks' learning rates to these factors of their configured rates
        (the rates of ``start_task``; None leaves a rate as it is; 0 stops that optimizer's updates)."""
        self._check_started()
        if weights is not None:
            self.learning_rate.assign(weights * self._rates[0])
        if picks is not None and self.pick_inner is not None:
            self.pick_inner.learning_rate.assign(picks * self._rates[1])

    @property
    def pick_learning_rate(self):
        """The picks' optimizer's learning rate (a variable), or None when the task does not pick."""
        self._check_started()
        return self.pick_inner.learning_rate if self.pick_inner is not None else None

    def freeze_picks(self) -> None:
        """Takes the picking masks out of ``trainable_variables`` for the rest of the task (a train step
        must be traced anew to see it)."""
        self._check_started()
        self.trainable_variables = list(self._weights)

    def scale_loss(self, loss):
        """The loss to differentiate: scaled when the inner optimizer is a ``LossScaleOptimizer``."""
        self._check_started()
        return self.inner.scale_loss(loss) if isinstance(self.inner, keras.optimizers.LossScaleOptimizer) else loss

    def apply_gradients(self, grads_and_vars):
        """One step of the inner optimizer, then every entry not owned by the active task restored (none
        when started with `every_weight`).
        Refused once the task is finished (checked eagerly, or when a ``tf.function`` traces it;
        ``paenet.training.make_train_step`` checks every call)."""
        self._check_started()
        self._model.check_unfinished(self.task, "apply_gradients")
        known = {id(v) for v in self.trainable_variables}
        picks = {id(v) for v in self._picks}
        pairs, pick_pairs, frozen = [], [], []
        for grad, var in grads_and_vars:
            if id(var) not in known:
                raise ValueError(f"variable {var.path} is not trainable for task {self.task}; pass only "
                                 "the wrapper's trainable_variables")
            if grad is None:
                continue
            if id(var) in picks:
                pick_pairs.append((grad, var))
                continue
            mask = self._masks.get(id(var))
            if mask is not None:
                owned = owned_condition(mask, self.task)
                if self._mask_gradients:
                    grad = tf.where(owned, grad, tf.zeros([], grad.dtype))
                frozen.append((var, owned, tf.identity(var.value)))
            pairs.append((grad, var))
        self.inner.apply_gradients(pairs)
        if pick_pairs:
            self.pick_inner.apply_gradients(pick_pairs)
        for var, owned, before in frozen:
            var.assign(tf.where(owned, var.value, before))

    def _check_started(self):
        if self.inner is None:
            raise RuntimeError("call start_task(model, task) before using the optimizer")

