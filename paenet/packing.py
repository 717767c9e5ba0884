"""Task lifecycle: start a task in the free weights, train it, prune it in rounds, finish it with a record.

``Packer`` drives one model through tasks 1, 2, ... one after another. Starting task k rebuilds the model
with fresh parts for k (BatchNorm, biases, head) and lets k claim every free kernel weight (mask 0 → k);
training moves only what k owns (``ExactFreezingOptimizer``); pruning releases part of k's weights to
later tasks (``TaskPruner``); finishing writes a ``TaskRecord`` whose digest guards k forever after.
"""
from __future__ import annotations

import json
import os
import shutil
import tempfile

import keras
import numpy as np
import tensorflow as tf
from tqdm.auto import tqdm

from paenet.layers import MAX_TASKS
from paenet.models.base import TaskSpec, layer_key
from paenet.optim import ExactFreezingOptimizer
from paenet.pruning import CubicSchedule, TaskPruner, round_schedules
from paenet.records import IntegrityError, TaskRecord, owned_counts, task_digest, verify, write_json_atomic
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
      progress: show progress bars.
    """

    def __init__(self, model, optimizer="adam", records=(), reinitialize_claimed: bool = False,
                 progress: bool = True):
        self.model = model
        self.optimizer = (optimizer if isinstance(optimizer, ExactFreezingOptimizer)
                          else ExactFreezingOptimizer(optimizer))
        self.records = list(records)
        self.reinitialize_claimed = reinitialize_claimed
        self.progress = progress
        self.active_task = None
        self.pruner = None
        self.rounds = []
        self._loss = None
        self._step = None
        self._batches = None

    def start_task(self, spec: TaskSpec, loss=None) -> int:
        """Adds task `spec` to the model, claims the free weights for it and returns its number."""
        if self.active_task is not None:
            raise RuntimeError(f"task {self.active_task} is still active: finish it first")
        if len(self.records) != self.model.num_tasks:
            raise RuntimeError(f"the model has {self.model.num_tasks} tasks but {len(self.records)} records")
        task = self.model.num_tasks + 1
        if task > MAX_TASKS:
            raise ValueError(f"a uint8 ownership mask holds at most {MAX_TASKS} tasks; task {task} refused")
        self.model = self.model.with_tasks([*self.model.task_specs, TaskSpec.from_dict(spec)])
        claim_free_weights(self.model, task, self.reinitialize_claimed)
        self._activate(task, loss)
        return task

    def _activate(self, task: int, loss):
        self.active_task = task
        self._loss = loss
        self.optimizer.start_task(self.model, task)
        self._step = make_train_step(self.model, self.optimizer, task, loss)
        self._batches = None

    def train(self, dataset, steps: int, schedule: CubicSchedule | None = None,
              description: str = "train") -> float:
        """Trains the active task for `steps` batches of `dataset` (repeated as needed), pruning where
        `schedule` says so; returns the mean loss."""
        self._check_active()
        if self._batches is None or self._batches[0] is not dataset:
            self._batches = (dataset, iter(dataset.repeat()))
        losses = []
        for step in tqdm(range(steps), desc=f"task {self.active_task} {description}",
                         disable=not self.progress, leave=False):
            target = schedule.target(step) if schedule else None
            if target is not None:
                self.prune(target)
            x, y = next(self._batches[1])
            losses.append(float(self._step(x, y)))
        return float(np.mean(losses)) if losses else float("nan")

    def prune(self, sparsity: float) -> dict[str, int]:
        """Prunes the active task to `sparsity` of its space in every layer (the first call fixes the
        space sizes: it begins the pruning phase)."""
        self._check_active()
        if self.pruner is None:
            self.pruner = TaskPruner(self.model, self.active_task)
        return self.pruner.prune(sparsity)

    def prune_rounds(self, dataset, targets, steps_per_round: int, prune_steps: int, frequency: int,
                     validation=None) -> list[dict]:
        """PAE's gradual pruning: one round per target sparsity (pruning over its first `prune_steps`
        steps, retraining for the rest), validated after each round when `validation` is given."""
        for schedule in round_schedules(targets, steps_per_round, prune_steps, frequency):
            loss = self.train(dataset, steps_per_round, schedule,
                              description=f"prune to {schedule.final_sparsity:.2f}")
            entry = {"sparsity": schedule.final_sparsity, "loss": loss}
            if validation is not None:
                entry["val_accuracy"] = self.evaluate(validation)
            self.rounds.append(entry)
        return self.rounds

    def evaluate(self, dataset, task: int | None = None) -> float:
        """Top-1 accuracy of `task` (default: the active one) over every sample of `dataset`."""
        task = self.active_task if task is None else task
        return top1_accuracy(self.model, task, dataset)

    def finish(self, metrics: dict | None = None) -> TaskRecord:
        """Ends the active task: its weights and task-specific parts are frozen from now on."""
        task = self._check_active()
        spec = self.model.task_specs[task - 1]
        record = TaskRecord(
            task=task, name=spec.name, num_classes=spec.num_classes, sharing=self.model.sharing,
            digest=task_digest(self.model, task), owned=owned_counts(self.model, task),
            space=dict(self.pruner.space) if self.pruner else {},
            sparsity=self.pruner.sparsity() if self.pruner else {},
            metrics=dict(metrics or {}), pruning=list(self.rounds))
        self.records.append(record)
        self.active_task, self.pruner, self.rounds = None, None, []
        self._step = self._batches = None
        return record

    def _check_active(self) -> int:
        if self.active_task is None:
            raise RuntimeError("no task is active: call start_task first")
        return self.active_task

    def save(self, directory: str) -> None:
        """Writes model config, variables and records to `directory`, replacing it atomically."""
        directory = os.path.abspath(directory)
        parent = os.path.dirname(directory)
        os.makedirs(parent, exist_ok=True)
        tmp = tempfile.mkdtemp(prefix=".tmp-", dir=parent)
        try:
            with open(os.path.join(tmp, "model.json"), "w") as f:
                json.dump(keras.saving.serialize_keras_object(self.model), f, indent=2)
            tf.train.Checkpoint(variables=self.model.checkpoint_variables()).write(
                os.path.join(tmp, "variables", "variables"))
            write_json_atomic(os.path.join(tmp, "state.json"), {
                "format_version": FORMAT_VERSION,
                "records": [r.to_dict() for r in self.records],
                "active_task": self.active_task,
                "pruning_space": self.pruner.space if self.pruner else None,
                "rounds": self.rounds,
            })
            old = None
            if os.path.exists(directory):
                old = tempfile.mkdtemp(prefix=".old-", dir=parent)
                os.rename(directory, os.path.join(old, "d"))
            os.rename(tmp, directory)
            if old:
                shutil.rmtree(old)
        except BaseException:
            shutil.rmtree(tmp, ignore_errors=True)
            raise

    @classmethod
    def load(cls, directory: str, optimizer="adam", loss=None, **kwargs) -> "Packer":
        """Loads what ``save`` wrote, verifying every finished task's digest (IntegrityError if any
        fails); an active task resumes with a fresh optimizer."""
        for name in ("model.json", "state.json"):
            if not os.path.exists(os.path.join(directory, name)):
                raise FileNotFoundError(f"{directory} is not a saved PAENet packing: {name} is missing")
        with open(os.path.join(directory, "model.json")) as f:
            model = keras.saving.deserialize_keras_object(json.load(f)).build_variables()
        with open(os.path.join(directory, "state.json")) as f:
            state = json.load(f)
        if state.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"{directory}: format version {state.get('format_version')} is not "
                             f"{FORMAT_VERSION}")
        prefix = os.path.join(directory, "variables", "variables")
        try:
            status = tf.train.Checkpoint(variables=model.checkpoint_variables()).read(prefix)
            status.assert_consumed()
        except (tf.errors.OpError, AssertionError, ValueError) as e:
            raise IntegrityError(f"{prefix}: the checkpoint does not match the model: {e}") from e
        records = [TaskRecord.from_dict(r) for r in state["records"]]
        verify(model, records)
        packer = cls(model, optimizer, records, **kwargs)
        if state["active_task"] is not None:
            packer._activate(state["active_task"], loss)
            packer.rounds = state["rounds"]
            if state["pruning_space"] is not None:
                packer.pruner = TaskPruner(model, state["active_task"])
                packer.pruner.space = state["pruning_space"]
        return packer
