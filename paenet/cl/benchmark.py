"""The continual-learning benchmark: every method over one task sequence, on the same backbone, seed,
step budget and input pipeline, measured as continual-learning papers measure it.

Methods (``BASELINES`` and ``paenet.methods``):

* ``independent``: one fresh network per task: the accuracy ceiling, at k times the size. Each task
  trains ``BenchConfig.task_budget`` steps (at least as many as any packing method can spend on a task:
  training, every expansion's retraining, every pruning round and the rounds of the rule at the cap),
  validated every ``eval_every`` steps, ending on its best validated state. Its validation accuracies
  set the packing methods' goals (CPG's "avg" setting: that accuracy minus ``margin``).
* ``independent_pruned``: the same networks' tasks, each in its own fresh network, pruned to its own
  turning point under the same goal (PackNet on one task): the size every method is compared with.
* ``finetune``: one network trained task after task with nothing frozen (every task reads every
  weight; each keeps its own BatchNorm and head), the same budget and best-state rule: the forgetting
  baseline.
* ``packnet``, ``pae``, ``cpg``: the task template (``paenet.goal.GoalLoop``) with that method, under the
  rule at the cap: a task that misses its goal at the widest network its method allows is still
  finished, pruned to keep at most 1/(remaining + 1) of the weights it claimed (CPG's
  ``ratio_allow_for_curr_task``), so every method has a full accuracy matrix and no miss starves the
  tasks after it.

Per method: the test accuracy matrix (task i after training task j, each task's test split evaluated
once per step) and GEM's ``R[j - 1, j]``; average final accuracy, backward transfer (BWT), Avalanche's
forgetting, GEM's forward transfer (against a randomly initialised network: ``independent``'s accuracy
before training), the accuracy against ``independent`` (``vs_independent``), weights relative to one
network, the share still free, the model size with masks (and CPG's pick bits) and its ratios to
``independent`` and ``independent_pruned``, optimizer steps, wall time; per task, the steps, the goal,
the status, the weights it owns, the share free after it and its chosen sparsity. ``check`` fails loudly
when a packing method forgets (BWT not exactly 0.0 or a finished task's digest changed), when fine-tuning
does not forget on a sequence that must show it, or when a baseline trained a task fewer steps than a
packing method spent on it.
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
from paenet.goal import Goal, GoalLoop, LoopObserver, PackingPlan
from paenet.methods import METHODS
from paenet.models import TaskSpec, create_backbone
from paenet.optim import ExactFreezingOptimizer
from paenet.packing import Packer
from paenet.records import IntegrityError, verify
from paenet.training import make_train_step, top1_accuracy

BASELINES = ("independent", "independent_pruned", "finetune")
PACKING = tuple(sorted(METHODS))
ALL_METHODS = (*BASELINES, *PACKING)


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Steps and optimisation, the same for every method. `train_steps` trains each task (and retrains
    it after each expansion); pruning rounds go to `targets`, `steps_per_round` steps each, pruning over
    the first `prune_steps` every `prune_frequency`. The baselines validate every `eval_every` steps.
    Expansion widens by exactly the ratio (`expansion_multiple` 1): these networks are 16 to 300 units
    wide, where rounding to multiples of 8 would change how much a round adds by up to half."""

    train_steps: int = 600
    targets: tuple = (0.5, 0.75, 0.875, 0.95)
    steps_per_round: int = 150
    prune_steps: int = 75
    prune_frequency: int = 5
    batch_size: int = 128
    learning_rate: float = 1e-3
    pick_learning_rate: float = 5e-4
    margin: float = 0.02
    expansion_ratio: float = 1.5
    expansion_cap: float = 2.0
    expansion_multiple: int = 1
    eval_batch_size: int = 1000
    eval_every: int = 100

    def plan(self, reserve: float = 0.0) -> PackingPlan:
        """The goal loop's plan; a task that misses its goal at its widest releases `reserve` of its weights."""
        return PackingPlan(train_steps=self.train_steps, targets=tuple(self.targets),
                           steps_per_round=self.steps_per_round, prune_steps=self.prune_steps,
                           frequency=self.prune_frequency, on_miss="reserve", reserve=reserve,
                           expansion=ExpansionPolicy("uniform", self.expansion_ratio, self.expansion_cap,
                                                     self.expansion_multiple))

    def task_budget(self, expansions: int) -> int:
        """The most optimizer steps a packing method can spend on one task when the network can grow
        `expansions` times: training and each expansion's retraining, and at most one pruning round more
        than there are targets (the rule at the cap adds one round to its reserve)."""
        return self.train_steps * (1 + expansions) + (len(self.targets) + 1) * self.steps_per_round


@dataclasses.dataclass
class MethodResult:
    """One method over one sequence with one seed; `tasks` holds one dict per task (``steps``,
    ``val_accuracy``, and for the goal loop's methods ``goal``, ``status``, ``owned``, ``free_after``,
    ``chosen_sparsity``, ``expansions``)."""

    sequence: str
    method: str
    matrix: AccuracyMatrix
    weights_x: float
    free: float
    size_mb: float
    seconds: float
    seed: int = 0
    tasks: list = dataclasses.field(default_factory=list)

    def final(self) -> np.ndarray:
        return self.matrix.values[-1]

    def row(self, baselines: dict, device: str) -> dict:
        """The summary line (JSON-serialisable); `baselines` holds the sequence's ``independent`` (and
        ``independent_pruned``) results of the same seed, when they ran."""
        m, multi = self.matrix, self.matrix.num_tasks > 1
        independent, pruned = baselines.get("independent"), baselines.get("independent_pruned")
        fwt = None
        if multi and independent is not None and not np.isnan(m.before[1:]).any():
            fwt = m.gem_forward_transfer(independent.matrix.before)
        return {"sequence": self.sequence, "method": self.method, "seed": self.seed, "tasks": m.num_tasks,
                "avg_accuracy": float(np.mean(self.final())),
                "bwt": m.backward_transfer() if multi else 0.0,
                "forgetting": m.forgetting() if multi else 0.0,
                "fwt": fwt,
                "vs_independent": (m.forward_transfer(np.diag(independent.matrix.values)) if independent and multi
                                   else None),
                "weights_x": self.weights_x, "free": self.free, "size_mb": self.size_mb,
                "size_vs_independent": self.size_mb / independent.size_mb if independent else None,
                "size_vs_independent_pruned": self.size_mb / pruned.size_mb if pruned else None,
                "steps": int(sum(t["steps"] for t in self.tasks)),
                "seconds": self.seconds, "device": device}

    def to_dict(self) -> dict:
        return {"sequence": self.sequence, "method": self.method, "seed": self.seed, **self.matrix.to_dict(),
                "weights_x": self.weights_x, "free": self.free, "size_mb": self.size_mb,
                "seconds": self.seconds, "per_task": self.tasks}


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


def _seeded(sequence: Sequence) -> None:
    """Every method starts from the same initialisation stream, the sequence's seed."""
    keras.utils.set_random_seed(sequence.seed)


def _unmasked_bytes(model, tasks) -> int:
    """Bytes of `model` without masks: its kernel weights x 4 B and the own variables of `tasks`."""
    return masked_parameters(model) * KERNEL_BYTES + sum(
        np.asarray(v).nbytes for t in tasks for v in model.task_values(t).values())


def _size_mb(model, records, base_weights: int) -> float:
    return paper_accounting(model, records, base_weights)[-1]["cumulative_bytes"] / MB


def _free(model) -> float:
    return sum(int(np.count_nonzero(l.mask.numpy() == 0)) for l in model.masked_layers()) / masked_parameters(model)


def max_expansions(sequence: Sequence, config: BenchConfig) -> int:
    """How many times the sequence's network can grow under `config`'s policy before its cap (the cap
    counts from the network before its first expansion, so no task grows more often)."""
    packer = Packer(_backbone(sequence), _optimizer(config))
    packer.start_task(_specs(sequence)[0])
    count = 0
    while packer.expand(config.plan().expansion) is not None:
        count += 1
    return count


def _train_best(step, variables, train, steps: int, every: int, validate) -> float:
    """Runs `step(x, y)` on `steps` batches of `train`, validating every `every` steps and at the end;
    leaves `variables` at their best validated values and returns that accuracy."""
    batches, best, kept, done = iter(train.repeat()), -1.0, None, 0
    for end in [*range(every, steps, every), steps]:
        for _ in range(end - done):
            step(*next(batches))
        done = end
        accuracy = validate()
        if accuracy > best:
            best, kept = accuracy, [v.numpy() for v in variables]
    for v, value in zip(variables, kept):
        v.assign(value)
    return best


def run_independent(sequence: Sequence, config: BenchConfig, budget: int, progress: bool = False) -> MethodResult:
    """One fresh network per task, `budget` steps each, kept at its best validated state; the matrix's
    row j repeats every earlier task's own accuracy (each network is untouched by later tasks), and each
    task's accuracy before training is a randomly initialised network's (GEM's b)."""
    _seeded(sequence)
    start = time.perf_counter()
    names = [t.name for t in sequence.tasks]
    matrix, tests, tasks, size = AccuracyMatrix(names), _test_sets(sequence, config), [], 0
    for task, spec in enumerate(_specs(sequence), 1):
        packer = Packer(_backbone(sequence), _optimizer(config))
        packer.start_task(spec)
        model = packer.model
        matrix.record_before(task, top1_accuracy(model, 1, tests[task - 1]))
        step = make_train_step(model, packer.optimizer, 1)
        variables = [l.kernel for l in model.masked_layers()] + model.task_variables(1)
        val = _val_set(sequence, task, config)
        best = _train_best(step, variables, _train_set(sequence, task, config), budget, config.eval_every,
                           lambda: top1_accuracy(model, 1, val))
        accuracy = top1_accuracy(model, 1, tests[task - 1])
        for after in range(task, len(names) + 1):
            matrix.record(after, task, accuracy)
        size += _unmasked_bytes(model, [1])
        tasks.append({"steps": budget, "val_accuracy": best})
    return MethodResult(sequence.name, "independent", matrix, weights_x=float(len(names)), free=0.0,
                        size_mb=size / MB, seconds=time.perf_counter() - start, seed=sequence.seed, tasks=tasks)


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


def run_finetune(sequence: Sequence, config: BenchConfig, budget: int, progress: bool = False) -> MethodResult:
    """One network, every task reading and training every kernel weight (all owned by task 1 so that
    every task reads them), each task with its own BatchNorm and head, `budget` steps a task ending on
    its best validated state."""
    _seeded(sequence)
    start = time.perf_counter()
    specs, tests = _specs(sequence), _test_sets(sequence, config)
    matrix, tasks = AccuracyMatrix([s.name for s in specs]), []
    model = _backbone(sequence, specs).build_variables()
    for layer in model.masked_layers():
        layer.mask.assign(np.ones(layer.mask.shape, np.uint8))
    for task in range(1, len(specs) + 1):
        matrix.record_before(task, top1_accuracy(model, task, tests[task - 1]))
        step = make_train_step(model, _Unfrozen(keras.optimizers.Adam(config.learning_rate), model, task), task)
        variables = [l.kernel for l in model.masked_layers()] + model.task_variables(task)
        val = _val_set(sequence, task, config)
        best = _train_best(step, variables, _train_set(sequence, task, config), budget, config.eval_every,
                           lambda: top1_accuracy(model, task, val))
        for earlier in range(1, task + 1):
            matrix.record(task, earlier, top1_accuracy(model, earlier, tests[earlier - 1]))
        tasks.append({"steps": budget, "val_accuracy": best})
    size = _unmasked_bytes(model, range(1, len(specs) + 1))
    return MethodResult(sequence.name, "finetune", matrix, weights_x=1.0, free=0.0, size_mb=size / MB,
                        seconds=time.perf_counter() - start, seed=sequence.seed, tasks=tasks)


def _validator(dataset):
    return lambda model, task: top1_accuracy(model, task, dataset)


class _TaskObserver(LoopObserver):
    """Counts a task's optimizer steps and measures its test accuracy before its first step."""

    def __init__(self, matrix: AccuracyMatrix, task: int, test):
        self.matrix, self.task, self.test, self.steps = matrix, task, test, 0

    def on_step(self, loop, loss):
        self.steps += 1

    def on_phase_end(self, loop):
        if loop.state.stage == "train" and not loop.state.history:
            self.matrix.record_before(self.task, top1_accuracy(loop.packer.model, loop.packer.active_task, self.test))


def _pack(packer, sequence, task, config, goal, plan, method, matrix, test, progress):
    """Packs `task` of `sequence` into `packer` with the goal loop; returns (outcome, its per-task dict)."""
    observer = _TaskObserver(matrix, task, test)
    outcome = GoalLoop(packer, sequence.tasks[task - 1].spec, _train_set(sequence, task, config),
                       _validator(_val_set(sequence, task, config)), Goal(absolute=goal), plan, method=method,
                       observer=observer, progress=progress).run()
    if outcome.record is None:
        raise BenchmarkFailure(f"{method} on {sequence.name} dropped task {task}: the rule at the cap keeps every task")
    record = outcome.record
    return outcome, {"steps": observer.steps, "goal": goal, "status": outcome.status,
                     "val_accuracy": outcome.val_accuracy, "owned": int(sum(record.owned.values())),
                     "free_after": _free(packer.model), "chosen_sparsity": record.metrics["chosen_sparsity"],
                     "expansions": len(outcome.expansions)}


def reserve_for(task: int, tasks: int) -> float:
    """The share of its claimed weights task `task` of `tasks` releases when it misses its goal at its
    widest: it keeps at most 1 / (remaining + 1) (CPG's ``ratio_allow_for_curr_task``)."""
    remaining = tasks - task
    return remaining / (remaining + 1)


def run_packing(sequence: Sequence, method: str, config: BenchConfig, goals: list[float],
                progress: bool = False) -> MethodResult:
    """The task template with `method`, every task to its goal (`goals`, one per task, on validation)."""
    _seeded(sequence)
    start = time.perf_counter()
    specs, tests = _specs(sequence), _test_sets(sequence, config)
    matrix = AccuracyMatrix([s.name for s in specs])
    packer = Packer(_backbone(sequence), _optimizer(config), task_parts="inherit")
    tasks = []
    for task in range(1, len(specs) + 1):
        plan = config.plan(reserve_for(task, len(specs)))
        _, entry = _pack(packer, sequence, task, config, goals[task - 1], plan, method, matrix, tests[task - 1],
                         progress)
        tasks.append(entry)
        for earlier in range(1, task + 1):
            matrix.record(task, earlier, top1_accuracy(packer.model, earlier, tests[earlier - 1]))
    try:
        verify(packer.model, packer.records)
    except IntegrityError as e:
        raise BenchmarkFailure(f"{method} on {sequence.name}: {e}") from None
    model = packer.model
    return MethodResult(sequence.name, method, matrix, weights_x=masked_parameters(model) / packer.base_parameters,
                        free=_free(model), size_mb=_size_mb(model, packer.records, packer.base_parameters),
                        seconds=time.perf_counter() - start, seed=sequence.seed, tasks=tasks)


def run_independent_pruned(sequence: Sequence, config: BenchConfig, goals: list[float],
                           progress: bool = False) -> MethodResult:
    """Each task alone in a fresh network, pruned to its own turning point under its goal (PackNet on one
    task; a task that misses it stays unpruned: no task comes after it in its network)."""
    _seeded(sequence)
    start = time.perf_counter()
    names = [t.name for t in sequence.tasks]
    matrix, tests, tasks, size, owned = AccuracyMatrix(names), _test_sets(sequence, config), [], 0.0, 0
    base = None
    for task in range(1, len(names) + 1):
        packer = Packer(_backbone(sequence), _optimizer(config), task_parts="inherit")
        _, entry = _pack(packer, sequence, task, config, goals[task - 1], config.plan(0.0), "packnet", matrix,
                         tests[task - 1], progress)
        tasks.append(entry)
        accuracy = top1_accuracy(packer.model, 1, tests[task - 1])
        for after in range(task, len(names) + 1):
            matrix.record(after, task, accuracy)
        size += _size_mb(packer.model, packer.records, packer.base_parameters)
        owned, base = owned + entry["owned"], packer.base_parameters
    return MethodResult(sequence.name, "independent_pruned", matrix, weights_x=owned / base, free=0.0,
                        size_mb=size, seconds=time.perf_counter() - start, seed=sequence.seed, tasks=tasks)


def run_sequence(sequence: Sequence, methods, config: BenchConfig, progress: bool = False):
    """Every method in `methods` over `sequence`, in ``ALL_METHODS``' order; ``independent`` runs always
    (the goals, the budget's validation and GEM's random-network accuracies come from it) and is yielded
    first. Yields each ``MethodResult`` as it finishes."""
    budget = config.task_budget(max_expansions(sequence, config))
    independent = run_independent(sequence, config, budget, progress)
    yield independent
    goals = [max(0.0, t["val_accuracy"] - config.margin) for t in independent.tasks]
    for method in ALL_METHODS[1:]:
        if method not in methods:
            continue
        if method == "finetune":
            yield run_finetune(sequence, config, budget, progress)
        elif method == "independent_pruned":
            yield run_independent_pruned(sequence, config, goals, progress)
        else:
            yield run_packing(sequence, method, config, goals, progress)


def check(result: MethodResult, must_forget: bool, independent: MethodResult | None = None) -> None:
    """Raises ``BenchmarkFailure`` when a packing method's BWT is not exactly 0.0, when fine-tuning
    does not forget where `must_forget`, or when a packing method spent more steps on a task than
    `independent` trained it (the budgets were not equal)."""
    if independent is not None and result.method in METHODS:
        over = [t for t, (mine, base) in enumerate(zip(result.tasks, independent.tasks), 1)
                if mine["steps"] > base["steps"]]
        if over:
            raise BenchmarkFailure(f"{result.method} on {result.sequence}: tasks {over} took more steps than "
                                   f"independent's {independent.tasks[0]['steps']}")
    if result.matrix.num_tasks < 2:
        return
    bwt = result.matrix.backward_transfer()
    if result.method in METHODS and bwt != 0.0:
        raise BenchmarkFailure(f"{result.method} on {result.sequence}: backward transfer {bwt!r}, not exactly 0.0")
    if result.method == "finetune" and must_forget and not bwt < 0.0:
        raise BenchmarkFailure(f"finetune on {result.sequence}: backward transfer {bwt:.4f} shows no forgetting")
