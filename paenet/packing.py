"""Task lifecycle: start a task in the free weights, expand the network if it must, prune it, finish it
with a record — or roll it back.

``Packer`` drives one model through tasks 1, 2, ... one after another. Starting task k rebuilds the model
with fresh parts for k (BatchNorm, biases, head) and lets k claim every free kernel weight (mask 0 → k);
training (``paenet.training.Trainer``) moves only what k owns (``ExactFreezingOptimizer``); expanding widens the network and gives k
the new weights (``paenet.expansion``); pruning releases part of k's weights to later tasks
(``TaskPruner``); finishing writes a ``TaskRecord`` whose digest guards k forever after. The
accuracy-goal loop that drives these steps is ``paenet.goal``; ``paenet.checkpoint`` saves and loads a
packer. ``FineTuningPacker`` is the same lifecycle with nothing frozen: fine-tuning's, the forgetting
baseline.
"""
from __future__ import annotations

import hashlib

import keras
import numpy as np

from paenet.config import DEFAULT_METHOD
from paenet.expansion import ExpansionPolicy, expand, masked_parameters, propose_widths
from paenet.layers import MAX_TASKS, PICK_INIT
from paenet.models.base import TaskSpec, keyed_variables, layer_key, variable_key
from paenet.optim import ExactFreezingOptimizer
from paenet.pruning import TaskPruner
from paenet.records import TaskRecord, owned_counts, task_digest, verify

FORMAT_VERSION = 1


def claim_free_weights(model, task: int, reinitialize: bool = False) -> dict[str, int]:
    """Gives every free kernel weight (mask 0) to `task`; returns how many were claimed per layer.

    Claimed weights keep their values (0.0 after an earlier pruning) unless `reinitialize`, which draws
    them afresh from each layer's kernel initializer. A finished task claims nothing (FinishedTaskError):
    a free weight claimed would enter its kernel.
    """
    model.check_unfinished(task, "claim_free_weights")
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


def seed_from_state(model, *facts) -> None:
    """Seeds every random draw that follows (``keras.utils.set_random_seed``) from a digest of `model`'s
    values and `facts`: what an expansion draws (the new weights' initial values) then comes from the
    state a checkpoint holds, so a run resumed just before it draws what the uninterrupted run drew,
    however many draws either process made before."""
    h = hashlib.sha256(repr(facts).encode())
    for v in model.variables:
        h.update(np.ascontiguousarray(v.numpy()).tobytes())
    keras.utils.set_random_seed(int.from_bytes(h.digest()[:4], "little"))


class Packer:
    """Packs tasks into `model` one after another.

    Args:
      model: a ``PackableModel`` (with no tasks yet, or with the finished tasks of `records`, which are
        verified and adopted: finished from this moment, every public writer refuses them).
      optimizer: a Keras optimizer (instance, name or config) or an ``ExactFreezingOptimizer``; a fresh
        copy is made for every task.
      records: the ``TaskRecord`` of every finished task of `model`.
      reinitialize_claimed: draw weights a new task claims from the initializer instead of keeping them.
      task_parts: how a new task's BatchNorm and biases start: ``"fresh"`` (beta 0, mean 0, variance 1,
        bias 0) or ``"inherit"`` (the values of the task whose weights it starts from: the previous task
        with cumulative sharing, task 1 with "first"), so that it starts computing that task's features
        rather than waiting for its moving averages to settle. Heads always start fresh.
    """

    freezes = True      # a finished task is frozen: every public writer refuses it (FineTuningPacker: none is)

    def __init__(self, model, optimizer="adam", records=(), reinitialize_claimed: bool = False,
                 task_parts: str = "fresh"):
        self.model = model
        self.optimizer = (optimizer if isinstance(optimizer, ExactFreezingOptimizer)
                          else ExactFreezingOptimizer(optimizer))
        self.records = list(records)
        if self.records:
            verify(model, self.records)
            model.mark_finished(self.records)
        self.reinitialize_claimed = reinitialize_claimed
        if task_parts not in ("fresh", "inherit"):
            raise ValueError(f"task_parts must be 'fresh' or 'inherit', got {task_parts!r}")
        self.task_parts = task_parts
        self.active_task = None
        self.pruner = None
        self.rounds = []
        self.expansions = []
        # Masked parameters before any expansion: the expansion cap is relative to it.
        self.base_parameters = masked_parameters(model) if model.num_tasks else None
        self._before_start = None

    def start_task(self, spec: TaskSpec, picks: bool = False, claim: bool = True) -> int:
        """Adds task `spec` to the model, claims the free weights for it (unless not `claim`: it then
        owns no kernel weight) and returns its number. With `picks` (CPG) the task learns a picking mask
        over the older tasks' weights instead of reading all of them."""
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
        if claim:
            claim_free_weights(self.model, task, self.reinitialize_claimed)
        if self.task_parts == "inherit" and task > 1:
            self.model.inherit_task_parts(task - 1 if self.model.sharing == "cumulative" else 1, task)
        self._activate(task)
        return task

    @property
    def can_roll_back(self) -> bool:
        """Whether the active task was started by this packer (an imported or reloaded one was not)."""
        return self._before_start is not None

    def rollback(self) -> None:
        """Abandons the active task: the model, records and counters are exactly as before it started."""
        self.check_active()
        if self._before_start is None:
            raise RuntimeError("the active task was resumed from disk: reload the workspace saved before it")
        self.model, self.records, self.base_parameters = self._before_start
        self._end_task()

    def expand(self, policy: ExpansionPolicy) -> dict | None:
        """Widens the network by one round of `policy` and gives the active task the new weights.

        Returns the recorded event (round, widths, parameters), or None, changing nothing, when the
        expansion would pass ``policy.cap`` times the parameters before the first expansion.
        """
        task = self.check_active()
        if self.pruner is not None:
            raise RuntimeError("expand before the pruning phase of a task, not during it")
        seed_from_state(self.model, "expand", task, len(self.expansions))
        wider = expand(self.model, propose_widths(self.model, policy, task), task)
        parameters = masked_parameters(wider)
        if parameters > policy.cap * self.base_parameters:
            return None
        claim_free_weights(wider, task)
        self.model = wider
        event = {"round": len(self.expansions) + 1, "widths": wider.width_config(), "parameters": parameters,
                 "policy": policy.policy, "ratio": policy.ratio, "multiple": policy.multiple}
        self.expansions.append(event)
        self._activate(task)
        return event

    def resume_task(self, task: int) -> None:
        """Makes `task`, which the model already has and which claims its weights (an imported FaceNet,
        a reloaded unfinished task), the active task, with a fresh optimizer."""
        if self.active_task is not None:
            raise RuntimeError(f"task {self.active_task} is active already")
        if isinstance(task, int) and 1 <= task <= self.model.frozen_tasks:
            self.model.check_unfinished(task, "resume_task")
        if task != len(self.records) + 1 or task > self.model.num_tasks:
            raise ValueError(f"only task {len(self.records) + 1}, the first unfinished one, can be active")
        self._activate(task)

    def _activate(self, task: int):
        self.active_task = task
        self.optimizer.start_task(self.model, task, every_weight=not self.freezes)

    def prune(self, sparsity: float) -> dict[str, int]:
        """Prunes the active task to `sparsity` of its space in every layer (the first call fixes the
        space sizes: it begins the pruning phase, in which a picking task's picks stay fixed)."""
        self.check_active()
        if self.pruner is None:
            self._begin_pruning(TaskPruner(self.model, self.active_task))
        return self.pruner.prune(sparsity)

    def restart_picks(self, reinitialize: bool = True) -> None:
        """Makes the active task's picks trainable again, with fresh optimizers for its weights and picks,
        while its pruning stays as it is (CPG's retraining after pruning); with `reinitialize` the picks
        start again from ``PICK_INIT``."""
        task = self.check_active()
        if reinitialize:
            for picks in self.model.pick_variables(task):
                picks.assign(np.full(picks.shape, PICK_INIT, np.float32))
        self._activate(task)

    def _begin_pruning(self, pruner: TaskPruner) -> None:
        self.pruner = pruner
        if self.model.pick_variables(self.active_task):
            self.optimizer.freeze_picks()

    def snapshot_task(self) -> dict[str, np.ndarray]:
        """Copies, by variable key, of everything the active task can change: every masked kernel and
        mask, and the task's own variables."""
        task = self.check_active()
        variables = [v for l in self.model.masked_layers() for v in (l.kernel, l.mask)]
        variables += self.model.task_variables(task) + self.model.pick_variables(task)
        return {variable_key(v): v.numpy() for v in variables}

    def restore_task(self, snapshot: dict[str, np.ndarray]) -> None:
        """Puts the active task back to `snapshot` (weights it released since are its own again);
        the pruning log keeps every round that ran. A snapshot that would change a finished task (one
        taken during an earlier task) is refused, FinishedTaskError naming the task, before anything
        is written."""
        task = self.check_active()
        variables = keyed_variables(self.model)
        own = {variable_key(v) for v in self.model.task_variables(task) + self.model.pick_variables(task)}
        for layer in self.model.masked_layers():
            kernel, mask = variable_key(layer.kernel), variable_key(layer.mask)
            own |= {kernel, mask}
            if kernel in snapshot or mask in snapshot:
                self._check_restore_keeps_finished(layer, snapshot.get(kernel), snapshot.get(mask))
        for key in snapshot:
            if key not in own:
                owner = next((t for t in range(1, self.model.num_tasks + 1) if key in {
                    variable_key(v) for v in self.model.task_variables(t) + self.model.pick_variables(t)}), None)
                if owner is not None:
                    self.model.check_unfinished(owner, "restore_task with a snapshot from an earlier task")
                raise ValueError(f"restore_task: {key} is not task {task}'s to restore: the snapshot was not "
                                 "taken during this task")
        for key, value in snapshot.items():
            variables[key].assign(value)

    def _check_restore_keeps_finished(self, layer, kernel, mask) -> None:
        # Every entry a finished task owns now or in the snapshot must keep its owner and its bits.
        now_mask = layer.mask.numpy()
        mask = now_mask if mask is None else np.asarray(mask)
        kernel_now = layer.kernel.numpy()
        kernel = kernel_now if kernel is None else np.asarray(kernel)
        if mask.shape != now_mask.shape or kernel.shape != kernel_now.shape:
            raise ValueError(f"restore_task: {layer_key(layer)} has shape {now_mask.shape}, the snapshot "
                             f"{mask.shape}: the snapshot was taken before an expansion or of another model")
        finished = self.model.frozen_tasks
        held = ((now_mask >= 1) & (now_mask <= finished)) | ((mask >= 1) & (mask <= finished))
        changed = held & ((mask != now_mask) | (kernel.view(f"u{kernel.itemsize}")
                                                 != kernel_now.view(f"u{kernel.itemsize}")))
        if changed.any():
            now = now_mask[changed]
            owners = np.where((now >= 1) & (now <= finished), now, mask[changed])
            self.model.check_unfinished(int(owners.min()), "restore_task with a snapshot from an earlier task")

    def finish(self, metrics: dict | None = None, method: str = DEFAULT_METHOD) -> TaskRecord:
        """Ends the active task: its weights, picks and task-specific parts are frozen from now on (in a
        ``FineTuningPacker``: recorded, not frozen)."""
        task = self.check_active()
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
        if self.freezes:
            self.model.mark_finished(self.records)
        self._end_task()
        return record

    def _end_task(self):
        self.active_task, self.pruner, self.rounds, self.expansions = None, None, [], []
        self._before_start = None

    def check_active(self) -> int:
        """The active task's number; RuntimeError when none is active."""
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
                "base_parameters": self.base_parameters}

    @classmethod
    def from_state(cls, model, state: dict, optimizer="adam", **kwargs) -> "Packer":
        """A packer for `model` (variables already restored) in the state ``state()`` described; every
        finished task's digest is verified (IntegrityError if any fails). An active task resumes with a
        fresh optimizer."""
        if state.get("format_version") != FORMAT_VERSION:
            raise ValueError(f"packing state format {state.get('format_version')} is not {FORMAT_VERSION}")
        records = [TaskRecord.from_dict(r) for r in state["records"]]
        packer = cls(model, optimizer, records, **kwargs)        # verifies and adopts the records
        packer.base_parameters = state["base_parameters"]
        if state["active_task"] is not None:
            packer.resume_task(state["active_task"])
            packer.rounds, packer.expansions = state["rounds"], state["expansions"]
            if state["pruning_space"] is not None:
                pruner = TaskPruner(model, state["active_task"])
                pruner.space = state["pruning_space"]
                packer._begin_pruning(pruner)
        return packer


class FineTuningPacker(Packer):
    """Fine-tuning's network, the forgetting baseline (``paenet.methods.baselines.FineTune``, the one method
    that chooses it): a ``Packer``'s lifecycle in which no task is ever frozen. Every task trains every
    kernel weight (``ExactFreezingOptimizer.start_task(every_weight=True)``) and its own BatchNorm, biases
    and head; finishing writes its record but does not freeze it, so the tasks after it change it by design
    (its digest then no longer matches). A model that has finished tasks is refused (FinishedTaskError
    naming task 1): they stay frozen."""

    freezes = False

    def __init__(self, model, optimizer="adam", task_parts: str = "fresh"):
        if model.frozen_tasks:
            model.check_unfinished(1, "FineTuningPacker, which trains every weight,")
        super().__init__(model, optimizer, task_parts=task_parts)
