"""Task lifecycle: start a task in the free weights, train it, expand the network if it must, prune it in
rounds, finish it with a record — or roll it back.

``Packer`` drives one model through tasks 1, 2, ... one after another. Starting task k rebuilds the model
with fresh parts for k (BatchNorm, biases, head) and lets k claim every free kernel weight (mask 0 → k);
training moves only what k owns (``ExactFreezingOptimizer``); expanding widens the network and gives k
the new weights (``paenet.expansion``); pruning releases part of k's weights to later tasks
(``TaskPruner``); finishing writes a ``TaskRecord`` whose digest guards k forever after. The
accuracy-goal loop that drives these steps is ``paenet.goal``.
"""
from __future__ import annotations

import json
import os

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from paenet.expansion import ExpansionPolicy, expand, masked_parameters, propose_widths
from paenet.fileio import error_line, write_json_atomic, write_replacing
from paenet.layers import MAX_TASKS
from paenet.models.base import TaskSpec, keyed_variables, layer_key, variable_key
from paenet.optim import ExactFreezingOptimizer
from paenet.pruning import CubicSchedule, TaskPruner, round_schedules
from paenet.records import (IntegrityError, TaskRecord, check_json_checksum, dtype_policy_of, json_checksum,
                            owned_counts, read_json, task_digest, verify)
from paenet.training import make_train_step, top1_accuracy

FORMAT_VERSION = 1


def claim_free_weights(model, task: int, reinitialize: bool = False) -> dict[str, int]:
    """Gives every free kernel weight (mask 0) to `task`; returns how many were claimed per layer.

    Claimed weights keep their values (0.0 after an earlier pruning) unless `reinitialize`, which draws
    them afresh from each layer's kernel initializer.
    """
    claimed = {}
    for layer in model.masked_layers():
        mask = layer.mask.numpy()
        free = mask == 0
        mask[free] = task
        layer.mask.assign(mask)
        if reinitialize and free.any():
            kernel = layer.kernel.numpy()
            kernel[free] = np.asarray(layer.kernel_initializer(kernel.shape, dtype="float32"))[free]
            layer.kernel.assign(kernel)
        claimed[layer_key(layer)] = int(free.sum())
    return claimed


class Packer:
    """Packs tasks into `model` one after another.

    Args:
      model: a ``PackableModel`` (with no tasks yet, or with the finished tasks of `records`).
      optimizer: a Keras optimizer (instance, name or config) or an ``ExactFreezingOptimizer``; a fresh
        copy is made for every task.
      records: the ``TaskRecord`` of every finished task of `model`.
      reinitialize_claimed: draw weights a new task claims from the initializer instead of keeping them.
      task_parts: how a new task's BatchNorm and biases start: ``"fresh"`` (beta 0, mean 0, variance 1,
        bias 0) or ``"inherit"`` (the values of the task whose weights it starts from: the previous task
        with cumulative sharing, task 1 with "first"), so that it starts computing that task's features
        rather than waiting for its moving averages to settle. Heads always start fresh.
      progress: show progress bars.
    """

    def __init__(self, model, optimizer="adam", records=(), reinitialize_claimed: bool = False,
                 task_parts: str = "fresh", progress: bool = True):
        self.model = model
        self.optimizer = (optimizer if isinstance(optimizer, ExactFreezingOptimizer)
                          else ExactFreezingOptimizer(optimizer))
        self.records = list(records)
        self.reinitialize_claimed = reinitialize_claimed
        if task_parts not in ("fresh", "inherit"):
            raise ValueError(f"task_parts must be 'fresh' or 'inherit', got {task_parts!r}")
        self.task_parts = task_parts
        self.progress = progress
        self.active_task = None
        self.pruner = None
        self.rounds = []
        self.expansions = []
        # Masked parameters before any expansion: the expansion cap is relative to it.
        self.base_parameters = masked_parameters(model) if model.num_tasks else None
        self._before_start = None
        self._loss = None
        self._step = None
        self._batches = None
        self.phase_loss = [0.0, 0]      # loss sum and steps of the training phase so far (kept in state())

    def start_task(self, spec: TaskSpec, loss=None, picks: bool = False) -> int:
        """Adds task `spec` to the model, claims the free weights for it and returns its number. With
        `picks` (CPG) the task learns a picking mask over the older tasks' weights instead of reading
        all of them."""
        if self.active_task is not None:
            raise RuntimeError(f"task {self.active_task} is still active: finish it first")
        if len(self.records) != self.model.num_tasks:
            raise RuntimeError(f"the model has {self.model.num_tasks} tasks but {len(self.records)} records")
        task = self.model.num_tasks + 1
        if task > MAX_TASKS:
            raise ValueError(f"a uint8 ownership mask holds at most {MAX_TASKS} tasks; task {task} refused")
        self._before_start = (self.model, list(self.records), self.base_parameters)
        pick_tasks = [*self.model.pick_tasks, task] if picks and task > 1 else None
        self.model = self.model.with_tasks([*self.model.task_specs, TaskSpec.from_dict(spec)], pick_tasks)
        if self.base_parameters is None:
            self.base_parameters = masked_parameters(self.model)
        claim_free_weights(self.model, task, self.reinitialize_claimed)
        if self.task_parts == "inherit" and task > 1:
            self.model.inherit_task_parts(task - 1 if self.model.sharing == "cumulative" else 1, task)
        self._activate(task, loss)
        return task

    @property
    def can_roll_back(self) -> bool:
        """Whether the active task was started by this packer (an imported or reloaded one was not)."""
        return self._before_start is not None

    def rollback(self) -> None:
        """Abandons the active task: the model, records and counters are exactly as before it started."""
        self._check_active()
        if self._before_start is None:
            raise RuntimeError("the active task was resumed from disk: reload the workspace saved before it")
        self.model, self.records, self.base_parameters = self._before_start
        self._end_task()

    def expand(self, policy: ExpansionPolicy) -> dict | None:
        """Widens the network by one round of `policy` and gives the active task the new weights.

        Returns the recorded event (round, widths, parameters), or None, changing nothing, when the
        expansion would pass ``policy.cap`` times the parameters before the first expansion.
        """
        task = self._check_active()
        if self.pruner is not None:
            raise RuntimeError("expand before the pruning phase of a task, not during it")
        wider = expand(self.model, propose_widths(self.model, policy, task), task)
        parameters = masked_parameters(wider)
        if parameters > policy.cap * self.base_parameters:
            return None
        claim_free_weights(wider, task)
        self.model = wider
        event = {"round": len(self.expansions) + 1, "widths": wider.width_config(), "parameters": parameters,
                 "policy": policy.policy, "ratio": policy.ratio}
        self.expansions.append(event)
        self._activate(task, self._loss)
        return event

    def resume_task(self, task: int, loss=None) -> None:
        """Makes `task`, which the model already has and which claims its weights (an imported FaceNet,
        a reloaded unfinished task), the active task, with a fresh optimizer."""
        if self.active_task is not None:
            raise RuntimeError(f"task {self.active_task} is active already")
        if task != len(self.records) + 1 or task > self.model.num_tasks:
            raise ValueError(f"only task {len(self.records) + 1}, the first unfinished one, can be active")
        self._activate(task, loss)

    def use_loss(self, loss) -> None:
        """Trains the active task with `loss` from now on, with a fresh optimizer (an imported task,
        activated before its task's loss was known)."""
        self._activate(self._check_active(), loss)

    def _activate(self, task: int, loss):
        self.active_task = task
        self._loss = loss
        self.optimizer.start_task(self.model, task)
        self._step = make_train_step(self.model, self.optimizer, task, loss)
        self._batches = None

    def batches(self, dataset):
        """The iterator this packer draws `dataset`'s batches from (kept across calls; checkpointable)."""
        if self._batches is None or self._batches[0] is not dataset:
            self._batches = (dataset, iter(dataset.repeat()))
        return self._batches[1]

    def train(self, dataset, steps: int, schedule: CubicSchedule | None = None, description: str = "train",
              start: int = 0, on_step=None) -> float:
        """Trains the active task on batches of `dataset` (repeated as needed) for steps `start` ..
        `steps` - 1, pruning where `schedule` says so; calls ``on_step(steps_done, loss)`` after each
        step. Returns the mean loss of the phase (a resumed phase's earlier steps included). With no
        `dataset` the steps only prune (an imported task with no training data is pruned without
        retraining)."""
        self._check_active()
        if dataset is None:
            for step in range(start, steps):
                target = schedule.target(step) if schedule else None
                if target is not None:
                    self.prune(target)
            return float("nan")
        batches = self.batches(dataset)
        if start == 0:
            self.phase_loss = [0.0, 0]
        for step in tqdm(range(start, steps), desc=f"task {self.active_task} {description}", initial=start,
                         total=steps, disable=not self.progress, leave=False):
            target = schedule.target(step) if schedule else None
            if target is not None:
                self.prune(target)
            x, y = next(batches)
            loss = float(self._step(x, y))
            self.phase_loss = [self.phase_loss[0] + loss, self.phase_loss[1] + 1]
            if on_step is not None:
                on_step(step + 1, loss)
        return self.phase_loss[0] / self.phase_loss[1] if self.phase_loss[1] else float("nan")

    def prune(self, sparsity: float) -> dict[str, int]:
        """Prunes the active task to `sparsity` of its space in every layer (the first call fixes the
        space sizes: it begins the pruning phase, in which a picking task's picks stay fixed)."""
        self._check_active()
        if self.pruner is None:
            self._begin_pruning(TaskPruner(self.model, self.active_task))
        return self.pruner.prune(sparsity)

    def _begin_pruning(self, pruner: TaskPruner) -> None:
        self.pruner = pruner
        if self.model.pick_variables(self.active_task):
            self.optimizer.freeze_picks()
            self._step = make_train_step(self.model, self.optimizer, self.active_task, self._loss)

    def prune_round(self, dataset, schedule: CubicSchedule, steps: int, validation=None, start: int = 0,
                    on_step=None) -> dict:
        """One round: `steps` training steps pruning as `schedule` says (from step `start` when resumed),
        then validation if given: a dataset (top-1) or a callable ``validation(packer) -> accuracy``."""
        loss = self.train(dataset, steps, schedule, f"prune to {schedule.final_sparsity:.2f}", start, on_step)
        entry = {"sparsity": schedule.final_sparsity, "loss": loss}
        if validation is not None:
            entry["val_accuracy"] = validation(self) if callable(validation) else self.evaluate(validation)
        self.rounds.append(entry)
        return entry

    def prune_rounds(self, dataset, targets, steps_per_round: int, prune_steps: int, frequency: int,
                     validation=None) -> list[dict]:
        """PAE's gradual pruning: one round per target sparsity (pruning over its first `prune_steps`
        steps, retraining for the rest), validated after each round when `validation` is given."""
        for schedule in round_schedules(targets, steps_per_round, prune_steps, frequency):
            self.prune_round(dataset, schedule, steps_per_round, validation)
        return self.rounds

    def snapshot_task(self) -> dict[str, np.ndarray]:
        """Copies, by variable key, of everything the active task can change: every masked kernel and
        mask, and the task's own variables."""
        task = self._check_active()
        variables = [v for l in self.model.masked_layers() for v in (l.kernel, l.mask)]
        variables += self.model.task_variables(task) + self.model.pick_variables(task)
        return {variable_key(v): v.numpy() for v in variables}

    def restore_task(self, snapshot: dict[str, np.ndarray]) -> None:
        """Puts the active task back to `snapshot` (weights it released since are its own again);
        the pruning log keeps every round that ran."""
        self._check_active()
        variables = keyed_variables(self.model)
        for key, value in snapshot.items():
            variables[key].assign(value)

    def evaluate(self, dataset, task: int | None = None) -> float:
        """Top-1 accuracy of `task` (default: the active one) over every sample of `dataset`."""
        task = self.active_task if task is None else task
        return top1_accuracy(self.model, task, dataset)

    def finish(self, metrics: dict | None = None, method: str = "pae") -> TaskRecord:
        """Ends the active task: its weights, picks and task-specific parts are frozen from now on."""
        task = self._check_active()
        if task in self.model.pick_tasks:
            for layer in self.model.masked_layers():
                layer.store_pick_bits(task, layer.pick_bits(task))   # computes the same, stored as bits
        spec = self.model.task_specs[task - 1]
        record = TaskRecord(
            task=task, name=spec.name, num_classes=spec.num_classes, sharing=self.model.sharing, method=method,
            digest=task_digest(self.model, task), owned=owned_counts(self.model, task),
            space=dict(self.pruner.space) if self.pruner else {},
            sparsity=self.pruner.sparsity() if self.pruner else {},
            metrics=dict(metrics or {}), pruning=list(self.rounds), expansions=list(self.expansions),
            compute_dtype=self.model.dtype_policy.name)
        self.records.append(record)
        self.model.frozen_tasks = task
        self._end_task()
        return record

    def _end_task(self):
        self.active_task, self.pruner, self.rounds, self.expansions = None, None, [], []
        self._step = self._batches = self._before_start = None
        self.phase_loss = [0.0, 0]

    def _check_active(self) -> int:
        if self.active_task is None:
            raise RuntimeError("no task is active: call start_task first")
        return self.active_task

    def state(self) -> dict:
        """Everything but the model's variables, JSON-serialisable (``from_state`` reads it back)."""
        return {"format_version": FORMAT_VERSION,
                "records": [r.to_dict() for r in self.records],
                "active_task": self.active_task,
                "pruning_space": self.pruner.space if self.pruner else None,
                "rounds": self.rounds,
                "expansions": self.expansions,
                "base_parameters": self.base_parameters,
                "phase_loss": self.phase_loss}

    @classmethod
    def from_state(cls, model, state: dict, optimizer="adam", loss=None, **kwargs) -> "Packer":
        """A packer for `model` (variables already restored) in the state ``state()`` described; every
        finished task's digest is verified (IntegrityError if any fails). An active task resumes with a
        fresh optimizer."""
        if state.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"packing state format {state.get('format_version')} is not {FORMAT_VERSION}")
        records = [TaskRecord.from_dict(r) for r in state["records"]]
        verify(model, records)
        model.frozen_tasks = len(records)
        packer = cls(model, optimizer, records, **kwargs)
        packer.base_parameters = state["base_parameters"]
        packer.phase_loss = list(state.get("phase_loss", [0.0, 0]))
        if state["active_task"] is not None:
            packer.resume_task(state["active_task"], loss)
            packer.rounds, packer.expansions = state["rounds"], state["expansions"]
            if state["pruning_space"] is not None:
                pruner = TaskPruner(model, state["active_task"])
                pruner.space = state["pruning_space"]
                packer._begin_pruning(pruner)
        return packer

    def save(self, directory: str) -> None:
        """Writes model config, variables and records to `directory`, replacing it atomically. Every
        finished task is verified first: a model whose finished task changed never replaces a good save.
        ``state.json`` carries checksums of itself and of ``model.json``."""
        verify(self.model, self.records)
        model_config = keras.saving.serialize_keras_object(self.model)
        state = {**self.state(), "model_checksum": json_checksum(model_config)}
        state["checksum"] = json_checksum(state)

        def write(tmp):
            os.makedirs(tmp)
            with open(os.path.join(tmp, "model.json"), "w") as f:
                json.dump(model_config, f, indent=2)
            # Copies named by their keys: a variable's own name can hold a per-process counter (a
            # dropout's seed generator), which would make two saves of the same values differ in bytes.
            named = {k: tf.Variable(v, name=k, trainable=False) for k, v in self.model.checkpoint_variables().items()}
            tf.train.Checkpoint(variables=named).write(os.path.join(tmp, "variables", "variables"))
            write_json_atomic(os.path.join(tmp, "state.json"), state)
        write_replacing(directory, write)

    @classmethod
    def load(cls, directory: str, optimizer="adam", loss=None, **kwargs) -> "Packer":
        """Loads what ``save`` wrote (see ``from_state``); a damaged or edited file is an IntegrityError
        naming it."""
        for name in ("model.json", "state.json"):
            if not os.path.exists(os.path.join(directory, name)):
                raise FileNotFoundError(f"{directory} is not a saved PAENet packing: {name} is missing")
        state = read_json(os.path.join(directory, "state.json"))
        state = check_json_checksum(state, os.path.join(directory, "state.json"))
        path = os.path.join(directory, "model.json")
        model_config = read_json(path)
        if json_checksum(model_config) != state.pop("model_checksum"):
            raise IntegrityError(f"{path}: does not match the checksum state.json holds for it")
        try:
            with dtype_policy_of(state["records"]):
                model = keras.saving.deserialize_keras_object(model_config).build_variables()
        except IntegrityError:
            raise
        except Exception as e:
            raise IntegrityError(f"{path}: cannot rebuild the model: {e}") from e
        prefix = os.path.join(directory, "variables", "variables")
        try:
            status = tf.train.Checkpoint(variables=model.checkpoint_variables()).read(prefix)
            status.assert_consumed()
        except (tf.errors.OpError, AssertionError, ValueError) as e:
            raise IntegrityError(f"{prefix}: damaged, or not the checkpoint of this model: {error_line(e)}") from e
        return cls.from_state(model, state, optimizer, loss, **kwargs)

