"""The task template: the accuracy-goal loop every method runs (DESIGN §3, §4, §10).

claim → train → while the goal is missed: expand (up to the cap) and retrain → prune in rounds of rising
sparsity, validating after each → keep the most-pruned round that still meets the goal on VALIDATION data
→ evaluate the test split once → finish. The method (``paenet.methods``) is called at the turning points
(its hooks): how a task starts (claims, picks), what follows a training phase (widen, prune, finish or
miss) and what a missed goal leads to. A task that misses its goal at its widest is still finished,
pruned to release the plan's ``reserve`` share of its weights to the tasks to come (CPG's rule at the
cap); with ``plan.on_miss="method"`` the method decides instead: roll back or finish unpruned.
A method may also restart a task from its start after each growth (``restarts``), try every pruning round
and keep the sparsest that meets the goal (``after_round``), schedule its picks' learning rate
(``pick_schedule``) and retrain a pruned task's re-initialised picks, kept only where validation improves
(``retraining``, the ``retrain`` stage): CPG does all four.

The loop is a resumable state machine: ``LoopState`` is plain JSON, an observer (the app's workspace)
checkpoints it together with the model, the optimizer and the data iterator, and
``GoalLoop(..., state=saved)`` continues where a killed run stopped (``paenet.checkpoint`` holds the
format).
"""
from __future__ import annotations

import dataclasses

import numpy as np

from paenet.config import DEFAULT_METHOD, PackingPlan
from paenet.evaluation.classification import top1_validator
from paenet.methods import Method, get_method
from paenet.methods.base import MISS_KEEP, MISS_RESERVE, ROUND_KEEP, ROUND_STOP
from paenet.models.base import TaskSpec
from paenet.packing import Packer
from paenet.pruning import round_schedules
from paenet.training import Trainer


@dataclasses.dataclass(frozen=True)
class Goal:
    """A task's accuracy goal on its VALIDATION split: `absolute`, or `baseline` - `margin`.

    With a margin and no baseline, the loop measures the baseline by fine-tuning an independent copy
    of the network on the task (the paper's individual AgeNet/GenderNet).
    """

    absolute: float | None = None
    margin: float | None = None
    baseline: float | None = None

    def __post_init__(self):
        if (self.absolute is None) == (self.margin is None):
            raise ValueError("a goal needs exactly one of an absolute accuracy or a margin below a baseline")
        if self.baseline is not None and self.margin is None:
            raise ValueError("a baseline only makes sense with a margin")

    @property
    def needs_baseline(self) -> bool:
        return self.margin is not None and self.baseline is None

    def value(self, baseline: float | None) -> float:
        return self.absolute if self.absolute is not None else baseline - self.margin


@dataclasses.dataclass
class LoopState:
    """Where the loop stands. `stage`: start → [baseline] → train → (expand → train)* → prune → [retrain]
    → finish → done; `phase_step`: training steps done in the current phase; `history`: (stage, validation
    accuracy) pairs in order; `best`: the kept pruning state; `retrain`: the retraining's progress;
    `status`: set when done."""

    stage: str = "start"
    phase_step: int = 0
    baseline: float | None = None
    target: float | None = None
    history: list = dataclasses.field(default_factory=list)
    round: int = 0
    best: dict | None = None
    plateau: dict | None = None
    status: str | None = None
    test_accuracy: float | None = None
    expansions: list = dataclasses.field(default_factory=list)
    retrain: dict | None = None

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "LoopState":
        return cls(**d)


@dataclasses.dataclass
class PackOutcome:
    """What the loop did. `status`: ``goal_met`` (the task is finished, `record` is its record),
    ``below_goal`` (finished unpruned below its goal: a method that keeps what it cannot improve) or
    ``goal_unreachable`` (the task was rolled back; nothing of it was kept)."""

    status: str
    goal: float
    baseline: float | None
    val_accuracy: float
    test_accuracy: float | None = None
    record: object = None
    expansions: list = dataclasses.field(default_factory=list)
    history: list = dataclasses.field(default_factory=list)


class LoopObserver:
    """Hooks the loop calls: the app checkpoints and logs through them. The defaults do nothing."""

    def on_step(self, loop: "GoalLoop", loss: float):
        """After every training step (``loop.state.phase_step`` counts it already)."""

    def on_phase_end(self, loop: "GoalLoop"):
        """After every phase: a consistent point to checkpoint."""

    def on_best(self, loop: "GoalLoop", snapshot: dict):
        """The state the loop will keep changed to `snapshot` (``Packer.snapshot_task``)."""

    def on_event(self, loop: "GoalLoop", name: str, value):
        """A named event: ``val_accuracy`` (float), ``validated_at`` ((step, accuracy) of a phase validated
        every ``plan.eval_every`` steps), ``expansion`` (the event dict), ``rolled_back``."""

    def on_start(self, loop: "GoalLoop", snapshot: dict):
        """The state a growth restarts the task from changed to `snapshot` (a method that ``restarts``)."""


class GoalLoop:
    """Packs task `spec` into `packer` until it meets `goal` (see the module docstring).

    Args:
      train: a tf.data.Dataset of training batches (x, y).
      validate, test: evaluators ``f(model, task) -> accuracy``, called for the active task
        (``paenet.evaluation.classification.top1_validator(ds)`` for a classification split); `test`
        is called once, at the end.
      state, best_snapshot, start_snapshot: a saved ``LoopState``, kept snapshot and restart point to
        resume from.
      method: a ``paenet.methods.Method`` (instance, class or name).
      on_miss: overrides the miss rule: ``"reserve"`` (the plan's, by default: finished, pruned to release
        ``plan.reserve`` of its weights), or the method's ``on_miss`` when the plan says ``"method"``.
      progress: show progress bars.
      steps_per_call: training steps per compiled call (``paenet.training.Trainer``): more than 1 only
        for an observer that does not checkpoint within a phase (the continual-learning benchmark).
    """

    def __init__(self, packer: Packer, spec: TaskSpec, train, validate, goal: Goal,
                 plan: PackingPlan = PackingPlan(), test=None, loss=None, observer: LoopObserver | None = None,
                 state: LoopState | None = None, best_snapshot: dict | None = None,
                 method: Method | str = DEFAULT_METHOD, start_snapshot: dict | None = None,
                 on_miss: str | None = None, progress: bool = True, steps_per_call: int = 1):
        self.method = get_method(method)
        self.on_miss = on_miss
        self.packer, self.spec, self.train, self.validate = packer, spec, train, validate
        self.goal, self.plan, self.test, self.loss = goal, plan, test, loss
        self.observer = observer or LoopObserver()
        self.state = state or LoopState()
        self.best_snapshot = best_snapshot
        self.start_snapshot = start_snapshot
        self._pick_rates = {}
        self.progress, self.steps_per_call = progress, steps_per_call
        self.trainer = Trainer(packer, loss, progress, plan.l2, steps_per_call)
        self.baseline_packer = self.baseline_trainer = None
        if self.state.stage == "baseline":
            self._make_baseline()
        if self.state.stage == "retrain" and self.state.retrain is not None:
            packer.restart_picks(reinitialize=False)       # resumed: the checkpoint holds the picks
        self.record = None

    @property
    def current_packer(self) -> Packer:
        """The packer being trained: the independent baseline copy while measuring the baseline."""
        return self.baseline_packer if self.state.stage == "baseline" else self.packer

    @property
    def current_trainer(self) -> Trainer:
        """The trainer of ``current_packer``."""
        return self.baseline_trainer if self.state.stage == "baseline" else self.trainer

    def run(self) -> PackOutcome:
        while self.state.stage != "done":
            getattr(self, f"_{self.state.stage}")()
        s = self.state
        return PackOutcome(s.status, s.target, s.baseline, s.best["val_accuracy"] if s.best else s.history[-1][1],
                           s.test_accuracy, self.record, s.expansions, [tuple(h) for h in s.history])

    def _next(self, stage: str):
        self.state.stage, self.state.phase_step = stage, 0
        self.observer.on_phase_end(self)

    def _on_step(self, steps_done: int, loss: float):
        self.state.phase_step = steps_done
        if steps_done in self._pick_rates and self.state.stage == "train":
            self.packer.optimizer.set_learning_rates(picks=self._pick_rates[steps_done])
        self.observer.on_step(self, loss)

    def _rate_steps(self):
        """The steps after which ``_on_step`` changes the pick learning rate (a compiled call ends there)."""
        return self._pick_rates if self.state.stage == "train" else ()

    def _validated(self, stage: str, packer: Packer) -> float:
        return self._record(stage, float(self.validate(packer.model, packer.active_task)))

    def _record(self, stage: str, accuracy: float) -> float:
        self.state.history.append([stage, accuracy])
        self.observer.on_event(self, "val_accuracy", accuracy)
        return accuracy

    def _train_phase(self, trainer: Trainer, packer: Packer, label: str) -> float:
        """Trains a phase's `plan.train_steps` steps and returns its validation accuracy. With
        `plan.eval_every` it validates every that many steps and ends on the best validated state; with
        `plan.plateau_patience`, that many validations without a gain multiply the learning rate by 0.1
        and restore the best state, and the second time end the phase (ivclab/PAE's train_softmax.py).
        The learning rate is the optimizer's own again afterwards."""
        plan, state = self.plan, self.state
        if not plan.eval_every:
            trainer.train(self.train, plan.train_steps, description=label, start=state.phase_step,
                          on_step=self._on_step, stops=self._rate_steps())
            return self._validated(label, packer)
        rate = packer.optimizer.learning_rate
        if state.plateau is None:
            state.plateau = {"at": 0, "best": None, "since": 0, "decays": 0, "rate": float(rate.numpy())}
        p = state.plateau
        while True:
            step = state.phase_step
            # (a resumed run validates first where the killed one stopped before it could)
            if step > p["at"] and (step % plan.eval_every == 0 or step >= plan.train_steps):
                accuracy = self._validated(f"{label} step {step}", packer)
                self.observer.on_event(self, "validated_at", (step, accuracy))
                self._plateau(packer, rate, accuracy, step)
            if state.phase_step >= plan.train_steps:
                break
            end = min(plan.train_steps, (step // plan.eval_every + 1) * plan.eval_every)
            trainer.train(self.train, end, description=label, start=step, on_step=self._on_step,
                          stops=self._rate_steps())
        packer.restore_task(self.best_snapshot)
        rate.assign(p["rate"])
        state.plateau = None
        return self._record(label, p["best"])

    def _plateau(self, packer: Packer, rate, accuracy: float, step: int):
        p, patience = self.state.plateau, self.plan.plateau_patience
        p["at"] = step
        if p["best"] is None or accuracy > p["best"]:
            p.update(best=accuracy, since=0)
            self.best_snapshot = packer.snapshot_task()
            self.observer.on_best(self, self.best_snapshot)
            return
        p["since"] += 1
        if patience and p["since"] >= patience:
            p.update(since=0, decays=p["decays"] + 1)
            packer.restore_task(self.best_snapshot)
            if p["decays"] == 2:
                self.state.phase_step = p["at"] = self.plan.train_steps       # the second plateau ends it
            else:
                rate.assign(float(rate.numpy()) * 0.1)

    def _make_baseline(self):
        """An independent copy of the network in which the new task owns every weight, and its trainer."""
        copy = Packer(self.packer.model, self.packer.optimizer, records=self.packer.records,
                      task_parts=self.packer.task_parts)
        task = copy.start_task(self.spec)
        for layer in copy.model.masked_layers():
            layer.mask.assign(np.full(layer.mask.shape, task, np.uint8))
        self.baseline_packer, self.baseline_trainer = copy, Trainer(copy, self.loss, self.progress, self.plan.l2,
                                                                      self.steps_per_call)

    def _start(self):
        if self.packer.active_task is not None:
            self._start_imported()
        elif self.goal.needs_baseline:
            self._make_baseline()
            self._next("baseline")
        else:
            self._set_target(self.goal.baseline)
            self.method.start(self.packer, self.spec)
            self._mark_start()
            self._next("train")

    def _start_imported(self):
        """The task is active already (imported, e.g. FaceNet as task 1): its baseline is what it does
        as imported."""
        name = self.packer.model.task_specs[self.packer.active_task - 1].name
        if name != self.spec.name:
            raise ValueError(f"task {name!r} is active in the packer, not {self.spec.name!r}")
        baseline = self._validated("imported", self.packer) if self.goal.needs_baseline else self.goal.baseline
        self._set_target(baseline)
        self._mark_start()
        self._next("train")

    def _mark_start(self):
        """Keeps the state the task trains from now, which a method that ``restarts`` returns to at a growth."""
        if self.method.restarts:
            self.start_snapshot = self.packer.snapshot_task()
            self.observer.on_start(self, self.start_snapshot)

    def _set_target(self, baseline):
        self.state.baseline, self.state.target = baseline, self.goal.value(baseline)

    def _baseline(self):
        self._set_target(self._train_phase(self.baseline_trainer, self.baseline_packer, "baseline"))
        self.baseline_packer = self.baseline_trainer = None
        self.method.start(self.packer, self.spec)
        self._mark_start()
        self._next("train")

    def _train(self):
        label = f"expansion {len(self.packer.expansions)}" if self.packer.expansions else "train"
        if self.train is None and self.state.history:
            accuracy = self.state.history[-1][1]     # nothing to train: validated as imported already
        else:
            self._schedule_picks()
            accuracy = self._train_phase(self.trainer, self.packer, label)
        after = self.method.after_training(accuracy, self.state.target, can_retrain=self.train is not None)
        if after == "miss":
            self._give_up()
            return
        if after != "expand":
            self._keep(0.0, accuracy)
        self._next(after)

    def _schedule_picks(self):
        """The method's pick learning rates over this training phase, the current one set (a resumed
        phase included)."""
        task = self.packer.active_task
        self._pick_rates = {}
        if not self.packer.model.pick_variables(task):
            return
        owns = any(np.any(layer.mask.numpy() == task) for layer in self.packer.model.masked_layers())
        self._pick_rates = dict(self.method.pick_schedule(self.plan.train_steps, owns))
        passed = [step for step in self._pick_rates if step <= self.state.phase_step]
        if passed:
            self.packer.optimizer.set_learning_rates(picks=self._pick_rates[max(passed)])

    def _keep(self, sparsity: float, accuracy: float):
        self.state.best = {"sparsity": sparsity, "val_accuracy": accuracy}
        self.best_snapshot = self.packer.snapshot_task()
        self.observer.on_best(self, self.best_snapshot)

    def _give_up(self):
        """Goal unreachable at the widest network: under the rule at the cap (``reserve``) the task is
        still finished, pruned to release ``plan.reserve`` of its weights to the tasks to come (CPG);
        else (and for a task without training data, which cannot be retrained) it is finished unpruned when
        the method keeps what it cannot improve, or rolled back (an imported task, which has nothing to roll
        back to, stays as imported)."""
        self.state.expansions = list(self.packer.expansions)
        on_miss = self.method.miss_rule(self.plan.on_miss, self.on_miss, can_retrain=self.train is not None)
        if on_miss == MISS_RESERVE:
            self.state.status, self.state.round = "below_goal", 0
            self._next("reserve")
            return
        if on_miss == MISS_KEEP:
            self.state.status = "below_goal"
            self._keep(0.0, self.state.history[-1][1])
            self._next("finish")
            return
        if self.packer.can_roll_back:
            self.packer.rollback()
        self.state.status = "goal_unreachable"
        self.observer.on_event(self, "rolled_back", self.state.target)
        self._next("done")

    def _expand(self):
        """Widens the network; a method that ``restarts`` widens the task's start instead of its trained
        state (kept if the cap refuses the growth)."""
        trained = None
        if self.method.restarts and self.start_snapshot is not None:
            trained = self.packer.snapshot_task()
            self.packer.restore_task(self.start_snapshot)
        event = self.packer.expand(self.plan.expansion)
        if event is None:
            if trained is not None:
                self.packer.restore_task(trained)
            self._give_up()
            return
        self.state.expansions = list(self.packer.expansions)
        self.observer.on_event(self, "expansion", event)
        self._mark_start()
        self._next("train")

    def _prune(self):
        plan = self.plan
        schedules = round_schedules(plan.targets, plan.steps_per_round, plan.prune_steps, plan.frequency)
        if self.state.round >= len(schedules):
            self._next(self._after_pruning())
            return
        schedule = schedules[self.state.round]
        entry = self._prune_round(schedule, "prune")
        verdict = self.method.after_round(entry["val_accuracy"], self.state.target)
        if verdict == ROUND_STOP:
            self._next(self._after_pruning())      # the turning point: more pruning only loses more
            return
        if verdict == ROUND_KEEP:
            self._keep(schedule.final_sparsity, entry["val_accuracy"])
        self.state.round += 1
        self._next("prune")

    def _prune_round(self, schedule, stage: str) -> dict:
        """One pruning round of `schedule` from the checkpointed step, validated as `stage` and its sparsity."""
        return self.trainer.prune_round(self.train, schedule, self.plan.steps_per_round,
                                        validation=lambda p: self._validated(f"{stage} {schedule.final_sparsity:g}", p),
                                        start=self.state.phase_step, on_step=self._on_step)

    def _reserve(self):
        """Prunes a task that missed its goal in the plan's rounds below ``plan.reserve`` and one to it,
        keeping the last whatever its accuracy (CPG's ``ratio_allow_for_curr_task``)."""
        plan, reserve = self.plan, self.plan.reserve
        targets = [t for t in plan.targets if t < reserve] + ([reserve] if reserve > 0 else [])
        if self.state.round >= len(targets):
            if not targets:
                self._keep(0.0, self.state.history[-1][1])
            self._next(self._after_pruning() if targets else "finish")
            return
        schedule = round_schedules(targets, plan.steps_per_round, plan.prune_steps, plan.frequency)[self.state.round]
        entry = self._prune_round(schedule, "reserve")
        self.state.round += 1
        if self.state.round == len(targets):
            self._keep(schedule.final_sparsity, entry["val_accuracy"])
        self._next("reserve")

    def _retraining(self):
        """How the method retrains the pruned task (``Method.retraining``), or None (nor without data)."""
        picks = bool(self.packer.model.pick_variables(self.packer.active_task))
        return self.method.retraining(self.plan, picks) if self.train is not None else None

    def _after_pruning(self) -> str:
        return "retrain" if self._retraining() is not None else "finish"

    def _retrain(self):
        """The kept pruning state with its picks re-initialised, retrained at the method's rates and
        validated every ``every`` steps until ``patience`` validations bring no gain; a validation above the
        kept state's becomes the kept state (``choose_retrain_or_not.py`` in ivclab/CPG), so a retraining
        that never improves leaves the task exactly as pruned."""
        state, packer = self.state, self.packer
        retraining = self._retraining()
        if state.retrain is None:
            packer.restore_task(self.best_snapshot)
            packer.restart_picks(reinitialize=True)
            state.retrain = {"at": 0, "best": state.best["val_accuracy"], "since": 0}
        packer.optimizer.set_learning_rates(retraining.learning_rate, retraining.pick_learning_rate)
        r, every = state.retrain, retraining.every
        while True:
            step = state.phase_step
            if step > r["at"] and (step % every == 0 or step >= retraining.steps):
                r["at"] = step
                accuracy = self._validated(f"retrain step {step}", packer)
                if accuracy > r["best"]:
                    r.update(best=accuracy, since=0)
                    self._keep(state.best["sparsity"], accuracy)
                else:
                    r["since"] += 1
                    if r["since"] >= retraining.patience:
                        break
            if state.phase_step >= retraining.steps:
                break
            end = min(retraining.steps, (step // every + 1) * every)
            self.trainer.train(self.train, end, description="retrain", start=step, on_step=self._on_step)
        state.retrain = None
        self._next("finish")

    def _finish(self):
        self.packer.restore_task(self.best_snapshot)
        metrics = {"goal": self.state.target, "val_accuracy": self.state.best["val_accuracy"],
                   "chosen_sparsity": self.state.best["sparsity"]}
        if self.state.baseline is not None:
            metrics["baseline"] = self.state.baseline
        if self.test is not None:
            self.state.test_accuracy = float(self.test(self.packer.model, self.packer.active_task))
            metrics["test_accuracy"] = self.state.test_accuracy
        self.record = self.packer.finish(metrics, method=self.method.name)
        self.state.status = self.state.status or "goal_met"
        self._next("done")


def pack_task(packer: Packer, spec: TaskSpec, train, validation, goal: Goal, plan: PackingPlan = PackingPlan(),
              test=None, loss=None, method: Method | str = DEFAULT_METHOD, on_miss: str | None = None,
              progress: bool = True) -> PackOutcome:
    """Runs the goal loop once, start to end, on classification datasets (top-1 on `validation` and,
    once at the end, on `test`)."""
    return GoalLoop(packer, spec, train, top1_validator(validation), goal, plan,
                    test=top1_validator(test) if test is not None else None, loss=loss, method=method,
                    on_miss=on_miss, progress=progress).run()
