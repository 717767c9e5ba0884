"""The continual-learning benchmark: every method over one task sequence, on the same backbone, seeds,
steps and input pipeline, measured as continual-learning papers measure it.

Methods (``BASELINES`` and ``paenet.methods``):

* ``independent``: one fresh network per task, trained ``train_steps``: the accuracy ceiling, at k times
  the size. Its validation accuracies set the packing methods' goals (CPG's "avg" setting: the
  independent model's validation accuracy minus ``margin``).
* ``finetune``: one network trained task after task with nothing frozen (every task reads every
  weight; each keeps its own BatchNorm and head): the forgetting baseline.
* ``packnet``, ``pae``, ``cpg``: the task template (``paenet.goal.GoalLoop``) with that method. Every task
  is kept (``on_miss="keep"``): a task that misses its goal at the widest network the method allows is
  finished unpruned, so that every method has a full accuracy matrix.

Per method: the test accuracy matrix (task i after training task j, each task's test split evaluated
once per step), average final accuracy, backward transfer (BWT), forward transfer against
``independent``, weights relative to one network, the share still free, the model size with masks (and
CPG's pick bits), and wall time. ``check`` fails loudly when a packing method forgets (BWT not exactly
0.0 or a finished task's digest changed) or when fine-tuning does not forget on a sequence that must show
it.
"""
from __future__ import annotations

import dataclasses
import time

import keras
import numpy as np
import tensorflow as tf

from paenet.cl.sequences import Sequence
from paenet.evaluation.continual import AccuracyMatrix
from paenet.evaluation.model_size import KERNEL_BYTES, MB, paper_accounting
from paenet.expansion import ExpansionPolicy, masked_parameters
from paenet.evaluation.classification import top1_validator
from paenet.goal import Goal, GoalLoop, PackingPlan
from paenet.methods import METHODS
from paenet.models import TaskSpec, create_backbone
from paenet.optim import ExactFreezingOptimizer
from paenet.packing import Packer
from paenet.records import IntegrityError, verify
from paenet.training import Trainer, make_train_step, top1_accuracy

BASELINES = ("independent", "finetune")
ALL_METHODS = (*BASELINES, *sorted(METHODS))


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Steps and optimisation, the same for every method. `train_steps` trains each task (and retrains
    it after each expansion); pruning rounds go to `targets`, `steps_per_round` steps each, pruning over
    the first `prune_steps` every `prune_frequency`. Expansion widens by exactly the ratio
    (`expansion_multiple` 1): these networks are 16 to 300 units wide, where rounding to multiples of 8
    would change how much a round adds by up to half."""

    train_steps: int = 600
    targets: tuple = (0.5, 0.75, 0.875, 0.95)
    steps_per_round: int = 150
    prune_steps: int = 75
    prune_frequency: int = 5
    batch_size: int = 128
    learning_rate: float = 1e-3
    pick_learning_rate: float = 5e-4
    margin: float = 0.01
    expansion_ratio: float = 1.5
    expansion_cap: float = 2.0
    expansion_multiple: int = 1
    eval_batch_size: int = 1000

    def plan(self) -> PackingPlan:
        return PackingPlan(train_steps=self.train_steps, targets=tuple(self.targets),
                           steps_per_round=self.steps_per_round, prune_steps=self.prune_steps,
                           frequency=self.prune_frequency,
                           expansion=ExpansionPolicy("uniform", self.expansion_ratio, self.expansion_cap,
                                                     self.expansion_multiple))


@dataclasses.dataclass
class MethodResult:
    """One method over one sequence."""

    sequence: str
    method: str
    matrix: AccuracyMatrix
    weights_x: float
    free: float
    size_mb: float
    seconds: float
    goals: list | None = None
    statuses: list | None = None
    val_accuracy: list | None = None

    def final(self) -> np.ndarray:
        return self.matrix.values[-1]

    def row(self, independent: "MethodResult | None", device: str) -> dict:
        """The summary line (JSON-serialisable)."""
        m = self.matrix
        return {"sequence": self.sequence, "method": self.method, "tasks": m.num_tasks,
                "avg_accuracy": float(np.mean(self.final())),
                "bwt": m.backward_transfer() if m.num_tasks > 1 else 0.0,
                "fwt": (m.forward_transfer(np.diag(independent.matrix.values)) if independent and m.num_tasks > 1
                        else None),
                "weights_x": self.weights_x, "free": self.free, "size_mb": self.size_mb,
                "seconds": self.seconds, "device": device}

    def to_dict(self) -> dict:
        return {"sequence": self.sequence, "method": self.method, **self.matrix.to_dict(),
                "weights_x": self.weights_x, "free": self.free, "size_mb": self.size_mb,
                "seconds": self.seconds, "goals": self.goals, "statuses": self.statuses,
                "val_accuracy": self.val_accuracy}


class BenchmarkFailure(RuntimeError):
    """A property the benchmark guarantees did not hold: the run is not to be trusted."""


def _backbone(sequence: Sequence, tasks=()):
    return create_backbone(sequence.backbone, name=sequence.backbone, tasks=list(tasks), **sequence.backbone_kwargs)


def _optimizer(config: BenchConfig) -> ExactFreezingOptimizer:
    return ExactFreezingOptimizer(keras.optimizers.Adam(config.learning_rate),
                                  keras.optimizers.Adam(config.pick_learning_rate))


def _specs(sequence: Sequence) -> list[TaskSpec]:
    return [TaskSpec(t.name, t.num_classes) for t in sequence.tasks]


def _test_sets(sequence: Sequence, config: BenchConfig) -> list[tf.data.Dataset]:
    return [t.dataset("test", config.eval_batch_size) for t in sequence.tasks]


def _train_set(sequence: Sequence, task: int, config: BenchConfig) -> tf.data.Dataset:
    return sequence.tasks[task - 1].dataset("train", config.batch_size, training=True, seed=sequence.seed + task)


def _val_set(sequence: Sequence, task: int, config: BenchConfig) -> tf.data.Dataset:
    return sequence.tasks[task - 1].dataset("val", config.eval_batch_size)


def _unmasked_bytes(model, tasks) -> int:
    """Bytes of `model` without masks: its kernel weights x 4 B and the own variables of `tasks`."""
    return masked_parameters(model) * KERNEL_BYTES + sum(
        np.asarray(v).nbytes for t in tasks for v in model.task_values(t).values())


def _size_mb(model, records, base_weights: int) -> float:
    return paper_accounting(model, records, base_weights)[-1]["cumulative_bytes"] / MB


def run_independent(sequence: Sequence, config: BenchConfig, progress: bool = False) -> MethodResult:
    """One fresh network per task; the matrix's row j repeats every earlier task's own accuracy (each
    network is untouched by later tasks)."""
    start = time.perf_counter()
    names = [t.name for t in sequence.tasks]
    matrix, tests, val, size = AccuracyMatrix(names), _test_sets(sequence, config), [], 0
    for task, spec in enumerate(_specs(sequence), 1):
        packer = Packer(_backbone(sequence), _optimizer(config))
        packer.start_task(spec)
        trainer = Trainer(packer, progress=progress)
        trainer.train(_train_set(sequence, task, config), config.train_steps, description="independent")
        val.append(trainer.evaluate(_val_set(sequence, task, config)))
        accuracy = trainer.evaluate(tests[task - 1])
        for after in range(task, len(names) + 1):
            matrix.record(after, task, accuracy)
        size += _unmasked_bytes(packer.model, [1])
    return MethodResult(sequence.name, "independent", matrix, weights_x=float(len(names)), free=0.0,
                        size_mb=size / MB, seconds=time.perf_counter() - start, val_accuracy=val)


class _Unfrozen:
    """The optimizer interface ``make_train_step`` uses, over a plain Keras optimizer that moves every
    kernel weight (fine-tuning: nothing is frozen)."""

    def __init__(self, optimizer, model, task: int):
        self.task, self.inner = task, optimizer
        self.trainable_variables = ([l.kernel for l in model.masked_layers()]
                                    + model.task_variables(task, trainable_only=True))

    def scale_loss(self, loss):
        return loss

    def apply_gradients(self, grads_and_vars):
        self.inner.apply_gradients(grads_and_vars)


def run_finetune(sequence: Sequence, config: BenchConfig, progress: bool = False) -> MethodResult:
    """One network, every task reading and training every kernel weight (all owned by task 1 so that
    every task reads them), each task with its own BatchNorm and head."""
    start = time.perf_counter()
    specs, tests = _specs(sequence), _test_sets(sequence, config)
    matrix = AccuracyMatrix([s.name for s in specs])
    model = _backbone(sequence, specs).build_variables()
    for layer in model.masked_layers():
        layer.mask.assign(np.ones(layer.mask.shape, np.uint8))
    for task in range(1, len(specs) + 1):
        optimizer = keras.optimizers.Adam(config.learning_rate)
        step = make_train_step(model, _Unfrozen(optimizer, model, task), task)
        batches = iter(_train_set(sequence, task, config))
        for _ in range(config.train_steps):
            step(*next(batches))
        for earlier in range(1, task + 1):
            matrix.record(task, earlier, top1_accuracy(model, earlier, tests[earlier - 1]))
    size = _unmasked_bytes(model, range(1, len(specs) + 1))
    return MethodResult(sequence.name, "finetune", matrix, weights_x=1.0, free=0.0, size_mb=size / MB,
                        seconds=time.perf_counter() - start)


def run_packing(sequence: Sequence, method: str, config: BenchConfig, goals: list[float],
                progress: bool = False) -> MethodResult:
    """The task template with `method`, every task to its goal (`goals`, one per task, on validation)."""
    start = time.perf_counter()
    specs, tests = _specs(sequence), _test_sets(sequence, config)
    matrix = AccuracyMatrix([s.name for s in specs])
    packer = Packer(_backbone(sequence), _optimizer(config), task_parts="inherit")
    statuses, val = [], []
    for task, spec in enumerate(specs, 1):
        outcome = GoalLoop(packer, spec, _train_set(sequence, task, config),
                           top1_validator(_val_set(sequence, task, config)), Goal(absolute=goals[task - 1]),
                           config.plan(), method=method, on_miss="keep", progress=progress).run()
        statuses.append(outcome.status)
        val.append(outcome.val_accuracy)
        for earlier in range(1, task + 1):
            matrix.record(task, earlier, top1_accuracy(packer.model, earlier, tests[earlier - 1]))
    try:
        verify(packer.model, packer.records)
    except IntegrityError as e:
        raise BenchmarkFailure(f"{method} on {sequence.name}: {e}") from None
    model = packer.model
    free = sum(int(np.count_nonzero(l.mask.numpy() == 0)) for l in model.masked_layers()) / masked_parameters(model)
    return MethodResult(sequence.name, method, matrix, weights_x=masked_parameters(model) / packer.base_parameters,
                        free=free, size_mb=_size_mb(model, packer.records, packer.base_parameters),
                        seconds=time.perf_counter() - start, goals=list(goals), statuses=statuses,
                        val_accuracy=val)


def run_sequence(sequence: Sequence, methods, config: BenchConfig, progress: bool = False):
    """Every method in `methods` over `sequence`, ``independent`` first (the goals come from it); yields
    each ``MethodResult`` as it finishes."""
    independent = run_independent(sequence, config, progress)
    if "independent" in methods:
        yield independent
    goals = [max(0.0, a - config.margin) for a in independent.val_accuracy]
    for method in methods:
        if method == "finetune":
            yield run_finetune(sequence, config, progress)
        elif method != "independent":
            yield run_packing(sequence, method, config, goals, progress)


def check(result: MethodResult, must_forget: bool) -> None:
    """Raises ``BenchmarkFailure`` when a packing method's BWT is not exactly 0.0, or when fine-tuning
    does not forget where `must_forget`."""
    if result.matrix.num_tasks < 2:
        return
    bwt = result.matrix.backward_transfer()
    if result.method in METHODS and bwt != 0.0:
        raise BenchmarkFailure(f"{result.method} on {result.sequence}: backward transfer {bwt!r}, not exactly 0.0")
    if result.method == "finetune" and must_forget and not bwt < 0.0:
        raise BenchmarkFailure(f"finetune on {result.sequence}: backward transfer {bwt:.4f} shows no forgetting")
