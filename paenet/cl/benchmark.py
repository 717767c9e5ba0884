"""The continual-learning benchmark: every method over one task sequence, on the same backbone, seed,
step budget and input pipeline, measured as continual-learning papers measure it.

Methods (``paenet.methods``, every registered one; each runs the task template, ``paenet.goal.GoalLoop``,
through ``run_method``, in the packer it chooses, ``Method.packer``, which says which optimizer trains
what; this module has no training loop of its own):

* ``independent``: one fresh network per task: the accuracy ceiling, at k times the size. Each task
  trains ``BenchConfig.task_budget`` steps (at least as many as any packing method can spend on a task:
  training, every expansion's retraining, every pruning round, the rounds of the rule at the cap and
  CPG's retraining after pruning), validated every ``eval_every`` steps, ending on its best validated
  state. Its best validation accuracy within one training phase (``train_steps``: ``phase_val_accuracy``)
  sets the packing methods' goals (CPG's "avg" setting: that accuracy minus ``margin``, from individual
  models trained as long as CPG's own training phase): a goal from the whole budget, up to five phases
  long, is out of a phase's reach (``goal_from="budget"`` sets it so, to measure that rule).
* ``independent_pruned``: the same networks' tasks, each in its own fresh network, pruned to its own
  turning point under the same goal (PackNet on one task): the size every method is compared with.
* ``finetune``: one network trained task after task with nothing frozen (its packer,
  ``paenet.packing.FineTuningPacker``, trains every kernel weight for every task and freezes no finished
  one; every task reads every weight and keeps its own BatchNorm and head), the same budget and best-state
  rule: the forgetting baseline. Its finished tasks change by design: only its last task's record is
  verified.
* ``packnet``, ``pae``, ``cpg``: the task template (``paenet.goal.GoalLoop``) with that method, under the
  rule at the cap: a task that misses its goal at the widest network its method allows is still
  finished, pruned to keep at most 1/(remaining + 1) of the weights it claimed (CPG's
  ``ratio_allow_for_curr_task``), so every method has a full accuracy matrix and no miss starves the
  tasks after it.
  ``cpg`` is CPG as ivclab/CPG runs it (``paenet.methods.cpg``): a restart from the task's start after
  each growth, its pick learning-rate schedule, the sparsest passing round over all rounds, and its picks
  re-initialised and retrained after pruning (kept where validation improves), steps the budget counts.
* ``piggyback``: task 1 takes the whole network; every later task learns only a binary mask over it
  and its own BatchNorm and head, trained like the baselines (best validated state) for as many steps as
  a packing method that does not grow can spend on a task (``task_budget(0)``: it cannot grow),
  missing goals kept as trained (it owns no weight it could release).

Per method: the test accuracy matrix (task i after training task j, each task's test split evaluated
once per step) and GEM's ``R[j - 1, j]``; average final accuracy, backward transfer (BWT), Avalanche's
forgetting, GEM's forward transfer (against a randomly initialised network: ``independent``'s accuracy
before training), the accuracy against ``independent`` (``vs_independent``), weights relative to one
network, the share still free, the model size with masks (and the pick bits of CPG and Piggyback) and
its ratios to ``independent`` and ``independent_pruned``, optimizer steps, wall time; per task, the steps, the goal,
the status, the weights it owns, the share free after it and its chosen sparsity. ``check`` fails loudly
when a packing method forgets (BWT not exactly 0.0 or a finished task's digest changed), when fine-tuning
does not forget on a sequence that must show it, or when a baseline trained a task fewer steps than a
packing method spent on it.
"""
from __future__ import annotations

import dataclasses
import functools
import time

import keras
import numpy as np
import tensorflow as tf

from paenet.cl.sequences import Sequence, TaskData
from paenet.evaluation.continual import AccuracyMatrix
from paenet.evaluation.model_size import KERNEL_BYTES, MB, paper_accounting
from paenet.expansion import ExpansionPolicy, masked_parameters
from paenet.goal import Goal, GoalLoop, LoopObserver, PackingPlan
from paenet.methods import METHODS, PACKING_METHODS, get_method
from paenet.models import TaskSpec, create_backbone
from paenet.optim import ExactFreezingOptimizer
from paenet.packing import Packer
from paenet.records import IntegrityError, verify
from paenet.training import top1_accuracy

BASELINES = ("independent", *(m for m in METHODS if m not in PACKING_METHODS and m != "independent"))
PACKING = tuple(sorted(PACKING_METHODS))
ALL_METHODS = (*BASELINES, *PACKING)


# Where the goals come from: independent's best validation within one training phase, or within its budget.
GOAL_FROM = ("phase", "budget")


@dataclasses.dataclass(frozen=True)
class BenchConfig:
    """Steps and optimisation, the same for every method. `train_steps` trains each task (and retrains
    it after each expansion); pruning rounds go to `targets`, `steps_per_round` steps each, pruning over
    the first `prune_steps` every `prune_frequency`. The baselines validate every `eval_every` steps.
    Up to `steps_per_call` steps run in one compiled call (``paenet.training.make_train_loop``).
    Expansion widens by exactly the ratio (`expansion_multiple` 1): these networks are 16 to 300 units
    wide, where rounding to multiples of 8 would change how much a round adds by up to half.
    `goal_from` says which of independent's validation accuracies sets a goal: the best within one
    training phase (``phase_accuracy``) or within the whole budget it trains (its best state's)."""

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
    steps_per_call: int = 25
    goal_from: str = "phase"

    def __post_init__(self):
        if self.goal_from not in GOAL_FROM:
            raise ValueError(f"goal_from must be one of {', '.join(GOAL_FROM)}, got {self.goal_from!r}")

    def plan(self, reserve: float = 0.0) -> PackingPlan:
        """The goal loop's plan; a task that misses its goal at its widest releases `reserve` of its weights."""
        return PackingPlan(train_steps=self.train_steps, targets=tuple(self.targets),
                           steps_per_round=self.steps_per_round, prune_steps=self.prune_steps,
                           frequency=self.prune_frequency, on_miss="reserve", reserve=reserve,
                           expansion=ExpansionPolicy("uniform", self.expansion_ratio, self.expansion_cap,
                                                     self.expansion_multiple))

    def task_budget(self, expansions: int) -> int:
        """The most optimizer steps a packing method can spend on one task when the network can grow
        `expansions` times: training and each expansion's retraining, at most one pruning round more
        than there are targets (the rule at the cap adds one round to its reserve), and the longest
        retraining after pruning of any packing method (CPG's re-initialised picks)."""
        plan = self.plan()
        retraining = [r.steps for m in PACKING_METHODS.values() if (r := m().retraining(plan, picks=True))]
        return (self.train_steps * (1 + expansions) + (len(self.targets) + 1) * self.steps_per_round
                + max(retraining, default=0))


@dataclasses.dataclass
class MethodResult:
    """One method over one sequence with one seed; `tasks` holds one dict per task (``steps``,
    ``val_accuracy``, ``goal``, ``status``, ``owned``, ``free_after``, ``chosen_sparsity``, ``expansions``)."""

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


@functools.lru_cache(maxsize=48)       # two 20-task sequences' validation and test batches
def _eval_batches(task: TaskData, split: str, batch_size: int) -> tuple:
    """`task`'s `split` batches in order, read once per process and kept in memory: every method over the
    sequence evaluates them (the accuracy matrix every earlier task's after each task), and a tuple of
    tensors costs nothing to iterate where a tf.data pipeline is built and started each time."""
    return tuple(task.dataset(split, batch_size))


def _test_sets(sequence: Sequence, config: BenchConfig) -> list[tuple]:
    return [_eval_batches(t, "test", config.eval_batch_size) for t in sequence.tasks]


def _train_set(sequence: Sequence, task: int, config: BenchConfig) -> tf.data.Dataset:
    return sequence.tasks[task - 1].dataset("train", config.batch_size, training=True, seed=sequence.seed + task)


def _val_set(sequence: Sequence, task: int, config: BenchConfig) -> tuple:
    return _eval_batches(sequence.tasks[task - 1], "val", config.eval_batch_size)


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


def _validator(dataset):
    return lambda model, task: top1_accuracy(model, task, dataset)


class _TaskObserver(LoopObserver):
    """Counts a task's optimizer steps, keeps its validation curve (a phase validated every
    ``eval_every`` steps) and measures its test accuracy before its first step."""

    def __init__(self, matrix: AccuracyMatrix, task: int, test):
        self.matrix, self.task, self.test, self.steps, self.curve = matrix, task, test, 0, []

    def on_step(self, loop, loss):
        self.steps += 1

    def on_event(self, loop, name, value):
        if name == "validated_at":
            self.curve.append([int(value[0]), float(value[1])])

    def on_phase_end(self, loop):
        if loop.state.stage == "train" and not loop.state.history:
            self.matrix.record_before(self.task, top1_accuracy(loop.packer.model, loop.packer.active_task, self.test))


def _pack(packer, sequence, task, config, goal, plan, method, matrix, test, progress):
    """Packs `task` of `sequence` into `packer` with the goal loop; returns (outcome, its per-task dict)."""
    observer = _TaskObserver(matrix, task, test)
    outcome = GoalLoop(packer, sequence.tasks[task - 1].spec, _train_set(sequence, task, config),
                       _validator(_val_set(sequence, task, config)), Goal(absolute=goal), plan, method=method,
                       observer=observer, progress=progress, steps_per_call=config.steps_per_call).run()
    if outcome.record is None:
        raise BenchmarkFailure(f"{method.name} on {sequence.name} dropped task {task}: the rule at the cap keeps every task")
    record = outcome.record
    return outcome, {"steps": observer.steps, "goal": goal, "status": outcome.status,
                     "val_accuracy": outcome.val_accuracy, "owned": int(sum(record.owned.values())),
                     "free_after": _free(packer.model), "chosen_sparsity": record.metrics["chosen_sparsity"],
                     "expansions": len(outcome.expansions), **({"val_curve": observer.curve} if observer.curve else {})}


def reserve_for(task: int, tasks: int) -> float:
    """The share of its claimed weights task `task` of `tasks` releases when it misses its goal at its
    widest: it keeps at most 1 / (remaining + 1) (CPG's ``ratio_allow_for_curr_task``)."""
    remaining = tasks - task
    return remaining / (remaining + 1)


def run_method(sequence: Sequence, method, config: BenchConfig, goals: list[float], budget: int,
               progress: bool = False) -> MethodResult:
    """The task template with `method` (``paenet.methods``), every task to its goal (`goals`, one per
    task, on validation), in one network or, where the method says so, each in a network of its own, in
    the packer the method chooses (``Method.packer``). A method that does not prune trains each task
    `budget` steps (a packing method, which cannot grow then: ``config.task_budget(0)``, the most a
    packing method that does not grow can spend), validated every ``eval_every``, ending on its best
    validated state (the baselines' rule)."""
    method = get_method(method)
    _seeded(sequence)
    start = time.perf_counter()
    specs, tests = _specs(sequence), _test_sets(sequence, config)
    matrix, tasks, homes, accuracy = AccuracyMatrix([s.name for s in specs]), [], [], {}
    packer = None
    for task in range(1, len(specs) + 1):
        packer = method.network_for(packer, lambda: method.packer(_backbone(sequence), _optimizer(config),
                                                                  task_parts="inherit"))
        plan = config.plan(0.0 if method.fresh_network else reserve_for(task, len(specs)))
        if not method.prunes:      # trains for as long as the methods it is compared with can spend
            steps = config.task_budget(0) if method.packs else budget
            plan = dataclasses.replace(plan, train_steps=steps, eval_every=config.eval_every)
        _, entry = _pack(packer, sequence, task, config, goals[task - 1], plan, method, matrix, tests[task - 1],
                         progress)
        tasks.append(entry)
        homes.append((packer, packer.model.num_tasks))
        for earlier, (home, number) in enumerate(homes, 1):
            if home is packer:            # a task in another network is as it was when it finished
                accuracy[earlier] = top1_accuracy(home.model, number, tests[earlier - 1])
            matrix.record(task, earlier, accuracy[earlier])
    networks = list({id(home): home for home, _ in homes}.values())
    for network in networks:
        # A method that does not freeze finished tasks (fine-tuning) changes them by design: only the
        # last task, which nothing followed, must still match its record.
        records = network.records if method.freezes else network.records[-1:]
        try:
            verify(network.model, records)
        except IntegrityError as e:
            raise BenchmarkFailure(f"{method.name} on {sequence.name}: {e}") from None
    base = networks[0].base_parameters
    if method.fresh_network:
        weights_x, free = sum(t["owned"] for t in tasks) / base, 0.0
    else:
        weights_x, free = masked_parameters(packer.model) / base, _free(packer.model)
    if not method.prunes and not method.picks:     # every weight stays with the task that claimed it: no masks
        size = sum(_unmasked_bytes(n.model, range(1, n.model.num_tasks + 1)) for n in networks) / MB
    else:
        size = sum(_size_mb(n.model, n.records, n.base_parameters) for n in networks)
    return MethodResult(sequence.name, method.name, matrix, weights_x=weights_x, free=free, size_mb=size,
                        seconds=time.perf_counter() - start, seed=sequence.seed, tasks=tasks)


def phase_accuracy(task: dict, config: BenchConfig) -> float:
    """The best validation accuracy `independent` reached on a task within one training phase
    (``config.train_steps``, validated every ``eval_every``): what a packing method's training phase can
    be asked to reach, as CPG sets its goals from individual models trained as long as its own training.
    The independent row itself trains the whole budget."""
    within = [accuracy for step, accuracy in task["val_curve"] if step <= config.train_steps]
    return max(within or [task["val_curve"][0][1]])


def run_sequence(sequence: Sequence, methods, config: BenchConfig, progress: bool = False,
                 independent: MethodResult | None = None):
    """Every method in `methods` over `sequence`, in ``ALL_METHODS``' order. ``independent`` comes first:
    the goals, the budget's validation and GEM's random-network accuracies come from it. It runs and is
    yielded first unless given: the result of an earlier call on the same sequence and seed, so that a
    sequence's methods can run apart (in other processes) from one independent run. Yields each
    ``MethodResult`` as it finishes."""
    if independent is None:
        budget = config.task_budget(max_expansions(sequence, config))
        independent = run_method(sequence, "independent", config, [0.0] * len(sequence.tasks), budget, progress)
        for t in independent.tasks:
            t["phase_val_accuracy"] = phase_accuracy(t, config)
        yield independent
    budget = max(t["steps"] for t in independent.tasks)       # the baselines train each task as long
    source = "phase_val_accuracy" if config.goal_from == "phase" else "val_accuracy"   # its best state's
    goals = [max(0.0, t[source] - config.margin) for t in independent.tasks]
    for method in ALL_METHODS[1:]:
        if method in methods:
            yield run_method(sequence, method, config, goals, budget, progress)


def check(result: MethodResult, must_forget: bool, independent: MethodResult | None = None) -> None:
    """Raises ``BenchmarkFailure`` when a packing method's BWT is not exactly 0.0, when a method that does
    not freeze finished tasks (fine-tuning) does not forget where `must_forget`, or when a packing method
    spent more steps on a task than `independent` trained it (the budgets were not equal)."""
    if independent is not None and result.method in PACKING_METHODS:
        over = [t for t, (mine, base) in enumerate(zip(result.tasks, independent.tasks), 1)
                if mine["steps"] > base["steps"]]
        if over:
            raise BenchmarkFailure(f"{result.method} on {result.sequence}: tasks {over} took more steps than "
                                   f"independent's {independent.tasks[0]['steps']}")
    if result.matrix.num_tasks < 2:
        return
    bwt = result.matrix.backward_transfer()
    if result.method in PACKING_METHODS and bwt != 0.0:
        raise BenchmarkFailure(f"{result.method} on {result.sequence}: backward transfer {bwt!r}, not exactly 0.0")
    if must_forget and not get_method(result.method).freezes and not bwt < 0.0:
        raise BenchmarkFailure(f"{result.method} on {result.sequence}: backward transfer {bwt:.4f} shows no forgetting")
