"""Packing one task into a workspace, end to end: what ``python -m paenet.main`` and the demo run.

``pack(settings)`` locks the workspace, creates it when new (a small CNN, or FaceNet imported as task 1
"face"), resumes an interrupted run from its last checkpoint or starts the task's goal loop, and on
success saves the finished state, evaluates every task packed so far (the accuracy matrix) and returns a
summary. The workspace's own ``workspace.json`` fixes the network, optimizer, batch size, seed and fold;
the settings' values for them count only when the workspace is created.
"""
from __future__ import annotations

import dataclasses
import importlib
import json
import shutil
import sys

GOAL_MET, GOAL_UNREACHABLE = 0, 2


class UsageError(Exception):
    """A problem with what was asked: reported as one line, nothing changed."""


@dataclasses.dataclass(frozen=True)
class Settings:
    workspace: str
    task: str
    data_dir: str | None = None
    task_options: dict = dataclasses.field(default_factory=dict)
    # A new workspace's network and training set-up.
    base: str = "small_cnn"                      # small_cnn | facenet
    facenet: str | None = None                   # checkpoint, .pb or .tflite for base=facenet
    bn_momentum: float | None = None             # base=facenet: BatchNorm decay while training (FaceNet's 0.995)
    image_size: int = 64
    widths: tuple = (16, 32, 64)
    dense_units: int = 64
    dropout: float = 0.2
    sharing: str = "cumulative"
    seed: int = 0
    fold: int = 0
    optimizer: str = "adam"
    learning_rate: float = 3e-3
    weight_decay: float = 0.0
    momentum: float = 0.9
    batch_size: int = 32
    task_parts: str = "inherit"                  # fresh | inherit (see paenet.packing.Packer)
    # The continual-learning method (paenet.methods) and its goal loop.
    method: str = "pae"
    goal: float | None = None
    goal_margin: float | None = None
    baseline: float | None = None
    train_steps: int = 300
    targets: tuple = (0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9)
    steps_per_round: int = 100
    prune_steps: int = 50
    prune_frequency: int = 10
    expansion_policy: str = "uniform"
    expansion_ratio: float = 1.2
    expansion_cap: float = 2.0
    # Running.
    checkpoint_every: int = 100
    progress: bool = True
    deterministic: bool = True


def optimizer_config(s: Settings) -> dict:
    import keras
    if s.optimizer not in ("adam", "adamw", "sgd", "rmsprop"):
        raise UsageError(f"unknown optimizer {s.optimizer!r}: adam, adamw, sgd or rmsprop")
    lr = s.learning_rate
    optimizer = {"adam": lambda: keras.optimizers.Adam(lr),
                 "adamw": lambda: keras.optimizers.AdamW(lr, weight_decay=s.weight_decay or 0.004),
                 "sgd": lambda: keras.optimizers.SGD(lr, momentum=s.momentum, weight_decay=s.weight_decay or None),
                 "rmsprop": lambda: keras.optimizers.RMSprop(lr, momentum=s.momentum)}[s.optimizer]()
    config = keras.optimizers.serialize(optimizer)
    config["config"]["name"] = s.optimizer      # not the per-process unique name ("adam_2") Keras gives
    return config


def goal_and_plan(s: Settings):
    from paenet.expansion import ExpansionPolicy
    from paenet.goal import Goal, PackingPlan
    if (s.goal is None) == (s.goal_margin is None):
        raise UsageError("give exactly one of --goal (an absolute accuracy) and --goal_margin")
    if s.baseline is not None and s.goal_margin is None:
        raise UsageError("--baseline needs --goal_margin")
    goal = Goal(absolute=s.goal, margin=s.goal_margin, baseline=s.baseline)
    plan = PackingPlan(train_steps=s.train_steps, targets=tuple(float(t) for t in s.targets),
                       steps_per_round=s.steps_per_round, prune_steps=s.prune_steps, frequency=s.prune_frequency,
                       expansion=ExpansionPolicy(s.expansion_policy, s.expansion_ratio, s.expansion_cap))
    return goal, plan


FOLDS = 5            # test folds of the cross-validated data sets (Adience's 5-fold protocol)


def validate(s: Settings) -> None:
    """Checks every setting before anything runs or is written; raises UsageError naming the first bad
    flag and its value. Values that only a new workspace uses are checked too: a wrong flag is wrong
    whether or not it counts this time."""
    import os

    from paenet.expansion import POLICIES
    from paenet.methods import METHODS

    def need(ok: bool, flag: str, value, rule: str):
        if not ok:
            raise UsageError(f"--{flag}={value}: {rule}")

    def fraction(flag: str, value, low_open: bool = False, high_open: bool = False):
        if value is not None:
            need((0 < value if low_open else 0 <= value) and (value < 1 if high_open else value <= 1), flag,
                 value, f"must be in {'(' if low_open else '['}0, 1{')' if high_open else ']'}")

    need(bool(s.workspace), "workspace", s.workspace, "a folder is required")
    need(not os.path.exists(s.workspace) or os.path.isdir(s.workspace), "workspace", s.workspace,
         "is a file, not a workspace folder")
    need(s.base in ("small_cnn", "facenet"), "base", s.base, "must be small_cnn or facenet")
    need(s.base != "facenet" or bool(s.facenet), "facenet", s.facenet,
         "--base=facenet needs a FaceNet checkpoint, .pb or .tflite")
    for flag in ("image_size", "dense_units", "batch_size", "train_steps", "steps_per_round", "prune_frequency",
                 "checkpoint_every"):
        value = getattr(s, flag)
        need(isinstance(value, int) and value > 0, flag, value, "must be a positive integer")
    need(len(s.widths) > 0 and all(isinstance(w, int) and w > 0 for w in s.widths), "widths",
         ",".join(map(str, s.widths)), "must be positive integers")
    need(0 <= s.seed < 2 ** 32, "seed", s.seed, "must be in [0, 2**32)")
    need(0 <= s.fold < FOLDS, "fold", s.fold, f"must be a test fold in 0..{FOLDS - 1}")
    need(s.sharing in ("cumulative", "first"), "sharing", s.sharing, "must be cumulative or first")
    need(s.method in METHODS, "method", s.method, f"must be one of {', '.join(sorted(METHODS))} (or a method "
         "registered by a --task_module)")
    need(s.task_parts in ("inherit", "fresh"), "task_parts", s.task_parts, "must be inherit or fresh")
    need(s.optimizer in ("adam", "adamw", "sgd", "rmsprop"), "optimizer", s.optimizer,
         "must be adam, adamw, sgd or rmsprop")
    need(s.learning_rate > 0, "learning_rate", s.learning_rate, "must be positive")
    need(s.weight_decay >= 0, "weight_decay", s.weight_decay, "must be >= 0")
    fraction("momentum", s.momentum, high_open=True)
    fraction("dropout", s.dropout, high_open=True)
    fraction("bn_momentum", s.bn_momentum, high_open=True)
    fraction("goal", s.goal)
    fraction("goal_margin", s.goal_margin)
    fraction("baseline", s.baseline)
    targets = ",".join(map(str, s.targets))
    need(len(s.targets) > 0, "targets", targets, "give at least one target sparsity")
    for t in s.targets:
        fraction("targets", t, low_open=True)
    need(all(a < b for a, b in zip(s.targets, s.targets[1:])), "targets", targets, "must be strictly increasing")
    need(isinstance(s.prune_steps, int) and 0 <= s.prune_steps < s.steps_per_round, "prune_steps",
         s.prune_steps, f"must be in [0, --steps_per_round={s.steps_per_round})")
    need(s.expansion_policy in POLICIES, "expansion_policy", s.expansion_policy, f"must be one of {POLICIES}")
    need(s.expansion_ratio > 1, "expansion_ratio", s.expansion_ratio, "must be > 1")
    need(s.expansion_cap >= 1, "expansion_cap", s.expansion_cap, "must be >= 1")


def _plan_from_dict(d: dict):
    from paenet.expansion import ExpansionPolicy
    from paenet.goal import PackingPlan
    return PackingPlan(**{**d, "targets": tuple(d["targets"]), "expansion": ExpansionPolicy(**d["expansion"])})


def _as_json(obj) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def check_method(name: str, config: dict):
    """The method `name`, after checking that it can pack into a workspace created for `config`'s."""
    from paenet.methods import get_method
    try:
        method = get_method(name)
    except KeyError as e:
        raise UsageError(e.args[0]) from None
    created = config.get("method", "pae")
    if not method.compatible_with(created, config["sharing"]):
        raise UsageError(f"--method={name} cannot pack into this workspace: it was created for method {created!r} "
                         f"with sharing {config['sharing']!r} (use a new workspace)")
    return method


def _create(workspace, s: Settings):
    """Writes a new workspace: its config, and its network (FaceNet imported as active task 1 "face",
    or a small CNN without tasks)."""
    from paenet.packing import Packer
    config = {"format_version": 1, "base": s.base, "method": s.method, "sharing": s.sharing, "seed": s.seed,
              "fold": s.fold,
              "optimizer": optimizer_config(s), "batch_size": s.batch_size, "task_parts": s.task_parts}
    if s.base == "facenet":
        from paenet.facenet_import import load_facenet
        from paenet.tasks import face
        if not s.facenet:
            raise UsageError("--base=facenet needs --facenet=PATH (a FaceNet checkpoint, .pb or .tflite)")
        classes = face.training_classes(s.data_dir, s.task_options)     # a face head only to retrain it
        imported = load_facenet(s.facenet, logits=classes, sharing=s.sharing, name="paenet")
        model = imported.model if s.bn_momentum is None else imported.model.rebuild(bn_momentum=s.bn_momentum)
        packer = Packer(model, config["optimizer"], progress=False)
        packer.resume_task(1)
        config.update(image_size=model.input_size, facenet=str(imported.path), facenet_format=imported.format,
                      bn_momentum=model.bn_momentum)
    elif s.base == "small_cnn":
        from paenet.models import SmallCNN
        model = SmallCNN(widths=list(s.widths), dense_units=s.dense_units, dropout=s.dropout, name="paenet",
                         input_shape=(s.image_size, s.image_size, 3), sharing=s.sharing)
        packer = Packer(model, config["optimizer"])
        config.update(image_size=s.image_size, widths=list(s.widths), dense_units=s.dense_units)
    else:
        raise UsageError(f"unknown base network {s.base!r}: small_cnn or facenet")
    workspace.save_finished(packer)
    workspace.write_config(config)       # last: a workspace without its config is still new


def _create_new(workspace, s: Settings, made: bool):
    """``_create`` where no workspace is (refused beside finished tasks), seeded so that one seed gives
    one workspace; a folder this run made is removed again if creating fails."""
    import keras
    workspace.check_new()
    keras.utils.set_random_seed(s.seed)
    try:
        _create(workspace, s)
    except Exception:               # (a kill leaves the folder to the rerun, which creates it afresh)
        if made:
            shutil.rmtree(workspace.path, ignore_errors=True)
        raise


def _resume(workspace, finished, active: dict, spec, data, s: Settings, optimizer):
    """The goal loop of the interrupted run, restored from the workspace's latest checkpoint."""
    import keras
    import tensorflow as tf

    from paenet.goal import Goal, GoalLoop, LoopState
    from paenet.monitor import WorkspaceObserver
    from paenet.packing import Packer
    from paenet.records import dtype_policy_of
    state = LoopState.from_dict(active["loop"])
    observer = WorkspaceObserver(workspace, {k: active[k] for k in ("task", "goal", "plan", "method") if k in active},
                                 s.checkpoint_every,
                                 global_step=active["global_step"], best=active["best"])
    args = dict(spec=spec, train=data.train, validate=data.validate, goal=Goal(**active["goal"]),
                plan=_plan_from_dict(active["plan"]), test=data.test, loss=data.loss, observer=observer,
                state=state, method=active.get("method", "pae"))
    if state.stage == "baseline":
        loop = GoalLoop(finished, **args)
    else:
        with dtype_policy_of(active["packer"]["records"]):
            model = keras.saving.deserialize_keras_object(active["model"]).build_variables()
        tf.train.Checkpoint(variables=model.checkpoint_variables()).read(workspace.active_checkpoint).expect_partial()
        packer = Packer.from_state(model, active["packer"], optimizer, data.loss, task_parts=finished.task_parts,
                                   progress=s.progress)
        best = workspace.load_best(active["best"]) if active["best"] else None
        loop = GoalLoop(packer, best_snapshot=best, **args)
    current = loop.current_packer
    workspace.restore_active(current, current.batches(data.train) if data.train is not None else None)
    print(f"resuming task {spec.name!r} at stage {state.stage!r}, step {state.phase_step} of its phase",
          file=sys.stderr)
    return loop


def evaluate_all(packer, context, after: str, workspace) -> list[dict]:
    """Every finished task on its validation and test splits: one row of the accuracy matrix. A
    verification task's ROC goes to the workspace's ``lfw_roc.json`` (the report plots it)."""
    from paenet import tasks
    from paenet.fileio import write_json_atomic
    from paenet.workspace import LFW_ROC
    entries = []
    for record in packer.records:
        data = tasks.get(record.name).load(context)
        if data.roc is not None:
            write_json_atomic(str(workspace.path / LFW_ROC), data.roc(packer.model, record.task))
        for split, fn in (("val", data.validate), ("test", data.test)):
            if fn is not None:
                entries.append({"after_task": len(packer.records), "after": after, "task": record.task,
                                "name": record.name, "split": split, "metric": "accuracy",
                                "value": float(fn(packer.model, record.task))})
    return entries


def pack(s: Settings) -> tuple[int, dict]:
    """Packs task `s.task` into workspace `s.workspace`; returns (exit status, summary)."""
    from paenet import tasks
    validate(s)
    try:
        definition = tasks.get(s.task)
    except KeyError as e:
        raise UsageError(e.args[0]) from None
    import keras
    import tensorflow as tf

    from paenet.goal import GoalLoop, LoopState
    from paenet.models import TaskSpec
    from paenet.monitor import WorkspaceObserver
    from paenet.tasks import TaskContext
    from paenet.workspace import Workspace
    workspace = Workspace(s.workspace)
    made = not workspace.path.exists()
    if made:
        goal_and_plan(s)            # a new workspace's folder is made only for a complete request
    with workspace.locked():
        active = workspace.active_state() if workspace.exists() else None
        goal, plan = (None, None) if active else goal_and_plan(s)
        if not workspace.exists():
            _create_new(workspace, s, made)
        config = workspace.config()
        method = check_method(s.method, config)
        workspace.evaluations()     # readable, or refused before any work
        keras.utils.set_random_seed(config["seed"])
        if s.deterministic:
            tf.config.experimental.enable_op_determinism()
        finished = workspace.load_finished(config["optimizer"], task_parts=config["task_parts"],
                                           progress=s.progress)
        pending = active["task"] if active else (
            finished.model.task_specs[finished.active_task - 1].name if finished.active_task else None)
        if pending and pending != definition.name:
            raise UsageError(f"task {pending!r} is being packed in {workspace.path}: run --task={pending} "
                             "to finish it first")
        # A task killed after packing/ was saved and before active/ was cleared is in both: resuming it
        # completes its finish (the same record, its evaluation row, its logs).
        resuming = active is not None and active["task"] == definition.name
        if definition.name in [r.name for r in finished.records] and not resuming:
            raise UsageError(f"task {definition.name!r} is packed in {workspace.path} already")
        context = TaskContext(s.data_dir, config["image_size"], config["batch_size"], config["seed"],
                              config["fold"], dict(s.task_options))
        data = definition.load(context)
        spec = TaskSpec(definition.name, definition.num_classes)
        if active:
            loop = _resume(workspace, finished, active, spec, data, s, config["optimizer"])
        else:
            observer = WorkspaceObserver(workspace, {"task": definition.name, "goal": _as_json(goal),
                                                     "plan": _as_json(plan), "method": method.name},
                                         s.checkpoint_every)
            loop = GoalLoop(finished, spec, data.train, data.validate, goal, plan, data.test, data.loss, observer,
                            LoopState(), method=method)
        outcome = loop.run()
        summary = {"task": definition.name, "status": outcome.status, "goal": outcome.goal,
                   "baseline": outcome.baseline, "val_accuracy": outcome.val_accuracy,
                   "test_accuracy": outcome.test_accuracy, "expansions": outcome.expansions,
                   "history": outcome.history, "sizes": data.sizes}
        if outcome.record is None:
            workspace.discard_active()
            return GOAL_UNREACHABLE, summary
        workspace.save_finished(loop.packer)
        workspace.add_evaluations(evaluate_all(loop.packer, context, definition.name, workspace))
        workspace.finish_active(definition.name)
        record = outcome.record
        summary.update(task_number=record.task, chosen_sparsity=record.metrics["chosen_sparsity"],
                       digest=record.digest)
        return GOAL_MET, summary


def import_task_modules(modules) -> None:
    """Imports the user modules that register their own tasks."""
    for module in modules:
        try:
            importlib.import_module(module)
        except ImportError as e:
            raise UsageError(f"--task_module={module}: cannot import it: {e}") from None
