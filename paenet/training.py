"""Compiled training and inference steps for one task of a packed model, the training loop of a
packer's active task (``Trainer``), and top-1 evaluation."""
from __future__ import annotations

import functools
import weakref

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from paenet.layers.masked import masks_read_once
from paenet.pruning import CubicSchedule, round_schedules


def classification_loss():
    """The default task loss: softmax cross-entropy on integer labels, from logits."""
    return keras.losses.SparseCategoricalCrossentropy(from_logits=True)


def owned_l2(model, task: int):
    """Sum of squares / 2 of the kernel entries task `task` owns now (``tf.nn.l2_loss`` over them): the
    weight decay of PAE's slim ``l2_regularizer``, kept off every entry the task may not change."""
    return tf.add_n([tf.nn.l2_loss(tf.where(tf.equal(l.mask, task), l.kernel, tf.zeros_like(l.kernel)))
                     for l in model.masked_layers()])


def _step_body(model, optimizer, task: int, loss_fn, l2: float, replicas: int):
    """One training step of task `task` on a batch (a replica's share of it), as a Python function to
    trace: the loss, its gradient and the optimizer's update."""
    if optimizer.task != task:
        raise ValueError(f"the optimizer was started for task {optimizer.task}, not task {task}")
    loss_fn = loss_fn or classification_loss()
    variables = optimizer.trainable_variables
    outputs = {"outputs": loss_fn.outputs} if getattr(loss_fn, "outputs", None) else {}
    divide = replicas > 1 and not isinstance(loss_fn, keras.losses.Loss)

    def replica_step(x, y):
        with tf.GradientTape() as tape:
            loss = loss_fn(y, model(x, task=task, training=True, **outputs))
            if divide:
                loss = loss / replicas
            if l2:
                loss += l2 / replicas * owned_l2(model, task)
            scaled = optimizer.scale_loss(loss)
        grads = tape.gradient(scaled, variables)
        optimizer.apply_gradients(zip(grads, variables))
        return loss

    return replica_step


def make_train_step(model, optimizer, task: int, loss_fn=None, jit_compile: bool = False, l2: float = 0.0,
                    strategy=None):
    """A ``tf.function`` ``step(x, y) -> loss`` that trains task `task` through an
    ``ExactFreezingOptimizer`` started for that task; `l2` adds ``l2 * owned_l2(model, task)`` to the
    loss. A loss with an ``outputs`` attribute gets those outputs of the model
    (``model(x, outputs=loss_fn.outputs)``) instead of its default one.

    Under a ``tf.distribute`` `strategy` (model and optimizer made in its scope), the step takes a global
    batch and replica r trains on its r-th share (so a plain ``tf.data`` iterator, which a checkpoint can
    hold, feeds it; a strategy's distributed iterator cannot be checkpointed). Each replica differentiates its
    share's loss divided by the number of replicas (a Keras ``Loss`` divides itself, as Keras's convention is;
    a plain function is divided here), so the all-reduced gradient is that of the loss over the global batch
    (equal shares: a global batch that the replicas divide); the step returns that global loss
    (``paenet.distribute``). Called after `task` finished, the step refuses (FinishedTaskError)."""
    replicas = strategy.num_replicas_in_sync if strategy is not None else 1
    replica_step = _step_body(model, optimizer, task, loss_fn, l2, replicas)
    if strategy is None:
        return _refusing_once_finished(tf.function(replica_step, jit_compile=jit_compile), model, task)

    def share_step(x, y):
        size = tf.shape(x)[0] // replicas
        start = tf.distribute.get_replica_context().replica_id_in_sync_group * size
        return replica_step(x[start:start + size], y[start:start + size])

    @tf.function(jit_compile=jit_compile)
    def step(x, y):
        return strategy.reduce(tf.distribute.ReduceOp.SUM, strategy.run(share_step, (x, y)), axis=None)

    return _refusing_once_finished(step, model, task)


def make_train_loop(model, optimizer, task: int, loss_fn=None, l2: float = 0.0):
    """A ``tf.function`` ``loop(iterator, n) -> losses`` that runs ``make_train_step``'s step on the
    iterator's next `n` batches in one call (Keras's ``steps_per_execution``): on networks this small
    the per-call overhead costs more than a step's arithmetic. Refuses once `task` finished."""
    # A partial, not a closure: TensorFlow counts the traces of every function made from one code object
    # together, and a benchmark makes one loop per task (see inference_function). No AutoGraph: the loop is
    # explicit and the layers branch on Python values only, and converting every function a step calls cost
    # a fifth of each trace (cl_bench --quick: 10.1 against 12.9 s for its 29 loops).
    step = _step_body(model, optimizer, task, loss_fn, l2, 1)
    loop = tf.function(functools.partial(_loop, step, model.masked_layers(), task), autograph=False)
    return _refusing_once_finished(loop, model, task)


def _loop(step, layers, task, iterator, n):
    # An explicit while loop: it does not depend on AutoGraph converting this function. No mask changes
    # within a call (the pruner runs between calls), so the masks are read once for all its steps.
    def body(i, losses):
        x, y = next(iterator)
        return i + 1, losses.write(i, tf.cast(step(x, y), tf.float32))

    with masks_read_once(layers, task):
        _, losses = tf.while_loop(lambda i, _: i < n, body,
                                  (tf.constant(0), tf.TensorArray(tf.float32, size=n)))
    return losses.stack()


def _refusing_once_finished(step, model, task: int):
    """`step`, refused (FinishedTaskError) once `task` is finished: a compiled step checks nothing in
    Python after its first trace."""
    def guarded(*args):
        model.check_unfinished(task, "a train step made by make_train_step")
        return step(*args)

    return guarded


class Trainer:
    """Trains the active task of a ``paenet.packing.Packer``: batches of a dataset through its compiled
    step, pruning as a schedule says.

    Args:
      packer: the packer whose active task is trained (whichever it is at each call).
      loss: the task's loss ``loss(y, outputs)`` (default: ``classification_loss()``).
      progress: show progress bars.
      l2: the factor of the penalty on the task's own kernel entries (``owned_l2``).
      steps_per_call: steps run by one call of a compiled loop (``make_train_loop``) between pruning
        steps; ``on_step`` is then called for each once its call returned, so a checkpoint taken from it
        is consistent at a call's end only (1, the default, for an observer that checkpoints).

    Made inside a ``tf.distribute`` strategy's scope (``paenet.distribute``), it trains under that
    strategy: each global batch is split over the replicas, and pruning happens between steps, once.
    """

    def __init__(self, packer, loss=None, progress: bool = True, l2: float = 0.0, steps_per_call: int = 1):
        self.packer, self.loss, self.progress, self.l2 = packer, loss, progress, l2
        self.phase_loss = [0.0, 0]      # loss sum and steps of the training phase so far (checkpointed)
        self._step = self._step_for = None
        self._batches = None
        self.strategy = tf.distribute.get_strategy() if tf.distribute.has_strategy() else None
        self.steps_per_call = 1 if self.strategy is not None else steps_per_call

    def _train_step(self):
        # Traced anew when the packer's model, optimizer or trainable variables changed (a task started,
        # expanded, resumed, or its picks frozen for pruning).
        p = self.packer
        key = (p.model, p.optimizer.inner, p.optimizer.trainable_variables)
        if self._step_for is None or any(a is not b for a, b in zip(key, self._step_for)):
            if self.steps_per_call > 1:
                self._step = make_train_loop(p.model, p.optimizer, p.active_task, self.loss, l2=self.l2)
            else:
                self._step = make_train_step(p.model, p.optimizer, p.active_task, self.loss, l2=self.l2,
                                             strategy=self.strategy)
            self._step_for = key
        return self._step

    def _run(self, batches, count: int) -> list[float]:
        """`count` training steps on the next batches of `batches`; their losses."""
        if self.steps_per_call == 1:
            return [float(self._train_step()(*next(batches)))]
        return self._train_step()(batches, tf.constant(count)).numpy().tolist()

    def batches(self, dataset):
        """The iterator the active task draws `dataset`'s batches from (kept across calls, checkpointable).
        A task (re)activated, which starts a fresh optimizer, draws its batches afresh."""
        inner = self.packer.optimizer.inner
        if self._batches is None or self._batches[0] is not dataset or self._batches[1] is not inner:
            self._batches = (dataset, inner, iter(dataset.repeat()))
        return self._batches[2]

    def train(self, dataset, steps: int, schedule: CubicSchedule | None = None, description: str = "train",
              start: int = 0, on_step=None, stops=()) -> float:
        """Trains the active task on batches of `dataset` (repeated as needed) for steps `start` ..
        `steps` - 1, pruning where `schedule` says so; calls ``on_step(steps_done, loss)`` after each
        step. A compiled call of several steps ends at every step count in `stops` (where the caller
        changes something from ``on_step``, such as a learning rate) as at every pruning step. Returns the mean loss of the phase (a resumed phase's earlier steps included). With no
        `dataset` the steps only prune (an imported task with no training data is pruned without
        retraining)."""
        packer = self.packer
        task = packer.check_active()
        if dataset is None:
            for step in range(start, steps):
                target = schedule.target(step) if schedule else None
                if target is not None:
                    packer.prune(target)
            return float("nan")
        batches = self.batches(dataset)
        if start == 0:
            self.phase_loss = [0.0, 0]
        name = packer.model.task_specs[task - 1].name
        with tqdm(desc=f"{name} {description}", initial=start, total=steps, disable=not self.progress,
                  leave=False) as bar:
            step = start
            while step < steps:
                target = schedule.target(step) if schedule else None
                if target is not None:
                    packer.prune(target)
                end = min(steps, step + self.steps_per_call)
                end = next((s for s in range(step + 1, end)
                            if s in stops or (schedule and schedule.target(s) is not None)), end)
                for done, loss in enumerate(self._run(batches, end - step), step + 1):
                    self.phase_loss = [self.phase_loss[0] + loss, self.phase_loss[1] + 1]
                    if on_step is not None:
                        on_step(done, loss)
                bar.update(end - step)
                step = end
        return self.phase_loss[0] / self.phase_loss[1] if self.phase_loss[1] else float("nan")

    def prune_round(self, dataset, schedule: CubicSchedule, steps: int, validation=None, start: int = 0,
                    on_step=None) -> dict:
        """One round: `steps` training steps pruning as `schedule` says (from step `start` when resumed),
        then validation if given: a dataset (top-1) or a callable ``validation(packer) -> accuracy``. The
        round is logged in the packer's ``rounds`` (its task's record keeps them)."""
        loss = self.train(dataset, steps, schedule, f"prune to {schedule.final_sparsity:.2f}", start, on_step)
        entry = {"sparsity": schedule.final_sparsity, "loss": loss}
        if validation is not None:
            entry["val_accuracy"] = validation(self.packer) if callable(validation) else self.evaluate(validation)
        self.packer.rounds.append(entry)
        return entry

    def prune_rounds(self, dataset, targets, steps_per_round: int, prune_steps: int, frequency: int,
                     validation=None) -> list[dict]:
        """PAE's gradual pruning: one round per target sparsity (pruning over its first `prune_steps`
        steps, retraining for the rest), validated after each round when `validation` is given."""
        for schedule in round_schedules(targets, steps_per_round, prune_steps, frequency):
            self.prune_round(dataset, schedule, steps_per_round, validation)
        return self.packer.rounds

    def evaluate(self, dataset, task: int | None = None) -> float:
        """Top-1 accuracy of `task` (default: the active one) over every sample of `dataset`."""
        return top1_accuracy(self.packer.model, self.packer.active_task if task is None else task, dataset)


def make_predict_fn(model, task: int, jit_compile: bool = False):
    """A ``tf.function`` giving task `task`'s outputs in inference mode."""
    task = model.check_task(task)
    return tf.function(lambda x: model(x, task=task, training=False), jit_compile=jit_compile)


_INFERENCE = weakref.WeakKeyDictionary()   # model -> {(task, outputs): (structure, tf.function)}


def inference_function(model, task: int, outputs: str | None = None):
    """Task `task`'s forward pass in inference mode as a ``tf.function`` (``outputs`` as ``model`` takes
    it; batches of any size), made once per model, task and structure and then reused: evaluating after
    every pruning round or phase keeps its traces instead of tracing a new function each time (the cost
    that TensorFlow's retracing warning points at). The structure is everything the traced graph depends
    on: the variables and the tasks' settings; a change of any makes a new function."""
    task = model.check_task(task)
    structure = (tuple(id(v) for v in model.variables), model.task_specs, model.pick_tasks, model.sharing,
                 repr(model.frozen_shapes))
    functions = _INFERENCE.setdefault(model, {})
    made = functions.get((task, outputs))
    if made is None or made[0] != structure:
        options = {} if outputs is None else {"outputs": outputs}
        # A partial, not a lambda: TensorFlow counts the traces of every function made from one code object
        # together, so that tracing each of several models once (cl_bench's independent models) read as
        # one function retracing; a partial is counted on its own. No AutoGraph, as make_train_loop.
        forward = tf.function(functools.partial(_inference, model, task, options), autograph=False,
                              input_signature=[tf.TensorSpec([None, *model.image_shape], tf.float32)])
        made = functions[(task, outputs)] = (structure, forward)
    return made[1]


def _inference(model, task: int, options: dict, x):
    return model(x, task=task, training=False, **options)


def predict(model, task: int, dataset) -> tuple[np.ndarray, np.ndarray]:
    """Outputs and labels for every sample of `dataset` (batches of (x, y)), none dropped."""
    forward = inference_function(model, task)
    fn = lambda x: forward(tf.cast(x, tf.float32))   # noqa: E731
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
