"""Packing one task into a workspace, end to end: what ``python -m paenet.main`` and the demo run.

``pack(settings)`` locks the workspace, creates it when new (a registered backbone, FaceNet imported as task 1
"face"), resumes an interrupted run from its last checkpoint or starts the task's goal loop, and on
success saves the finished state, evaluates every task packed so far (the accuracy matrix) and returns a
summary. The workspace's own ``workspace.json`` fixes the network, optimizer, batch size, seed and fold;
the settings' values for them count only when the workspace is created.
"""
from __future__ import annotations

import contextlib
import dataclasses
import importlib
import json
import shutil
import sys

from paenet.config import DEFAULT_METHOD, PackingPlan, Settings, UsageError

GOAL_MET, GOAL_UNREACHABLE = 0, 2


def optimizer_config(s: Settings) -> dict:
    import keras
    lr = s.learning_rate
    optimizer = {"adam": lambda: keras.optimizers.Adam(lr, epsilon=s.adam_epsilon),
                 "adamw": lambda: keras.optimizers.AdamW(lr, weight_decay=s.weight_decay or 0.004,
                                                         epsilon=s.adam_epsilon),
                 "sgd": lambda: keras.optimizers.SGD(lr, momentum=s.momentum, weight_decay=s.weight_decay or None),
                 "rmsprop": lambda: keras.optimizers.RMSprop(lr, momentum=s.momentum)}[s.optimizer]()
    config = keras.optimizers.serialize(optimizer)
    config["config"]["name"] = s.optimizer      # not the per-process unique name ("adam_2") Keras gives
    if s.precision == "mixed_float16":          # float16 gradients underflow without loss scaling
        config = keras.optimizers.serialize(keras.optimizers.LossScaleOptimizer(keras.optimizers.deserialize(config)))
    return config


def check_precision(precision: str) -> None:
    """Says on stderr, before training, when `precision` will run slowly here: bfloat16 on a CPU
    without native bfloat16 instructions (on a 2-core AVX2 machine, FaceNet's train step ran ~9x
    slower in mixed_bfloat16 than in float32), float16 without a GPU."""
    import tensorflow as tf
    if precision == "float32" or tf.config.list_physical_devices("GPU"):
        return
    try:
        with open("/proc/cpuinfo") as f:
            flags = f.read()
    except OSError:
        flags = ""
    native = "avx512_bf16" in flags or "amx_bf16" in flags
    if precision == "mixed_float16" or not native:
        print(f"paenet: warning: --precision={precision} on this CPU (no GPU, no native "
              f"{'float16' if precision == 'mixed_float16' else 'bfloat16'}) is emulated and much slower than "
              "float32", file=sys.stderr)


def goal_of(s: Settings):
    """The task's accuracy goal, which a new run (not a resumed one) must be given."""
    from paenet.goal import Goal
    if (s.goal is None) == (s.goal_margin is None):
        raise UsageError("give exactly one of --goal (an absolute accuracy) and --goal_margin")
    return Goal(absolute=s.goal, margin=s.goal_margin, baseline=s.baseline)


def validate(s: Settings) -> None:
    """What ``Settings`` cannot check by itself, before anything runs or is written: the workspace
    path and the method's name (a --task_module may register one). UsageError naming the flag."""
    import os

    from paenet.methods import PACKING_METHODS
    if not s.workspace:
        raise UsageError("--workspace=: a folder is required")
    if os.path.exists(s.workspace) and not os.path.isdir(s.workspace):
        raise UsageError(f"--workspace={s.workspace}: is a file, not a workspace folder")
    check_base(s)
    if s.method not in PACKING_METHODS:
        raise UsageError(f"--method={s.method}: must be one of {', '.join(sorted(PACKING_METHODS))} (or a method "
                         "registered by a --task_module)")


def check_base(s: Settings) -> None:
    """--base names a registered backbone (a --task_module may register one) that takes the options given."""
    from paenet import tasks  # noqa: F401  (the face task registers facenet)
    from paenet.models import BACKBONES
    if s.base not in BACKBONES:
        raise UsageError(f"--base={s.base}: must be one of {', '.join(sorted(BACKBONES))} (or a backbone "
                         "registered by a --task_module)")
    BACKBONES[s.base].check(s)


def _as_json(obj) -> dict:
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def check_method(name: str, config: dict):
    """The method `name`, after checking that it can pack into a workspace created for `config`'s."""
    from paenet.methods import get_method
    try:
        method = get_method(name)
    except KeyError as e:
        raise UsageError(e.args[0]) from None
    created = config.get("method", DEFAULT_METHOD)
    if created == name and not method.compatible_with(created, config["sharing"]):
        raise UsageError(f"--method={name} needs --sharing={method.sharing}, not --sharing={config['sharing']}")
    if not method.compatible_with(created, config["sharing"]):
        raise UsageError(f"--method={name} cannot pack into this workspace: it was created for method {created!r} "
                         f"with sharing {config['sharing']!r} (use a new workspace)")
    return method


def _create(workspace, s: Settings, check):
    """Writes a new workspace: its config, and its network (``--base``, a registered backbone: a new one
    without tasks, or one imported with its tasks, FaceNet's as active task 1 "face"). ``check(config)``
    runs before anything is written (validate, then create)."""
    from paenet.models import get_backbone
    from paenet.packing import Packer
    config = {"format_version": 1, "base": s.base, "method": s.method, "sharing": s.sharing, "seed": s.seed,
              "fold": s.fold, "precision": s.precision,
              "optimizer": optimizer_config(s), "batch_size": s.batch_size, "task_parts": s.task_parts}
    model, made = get_backbone(s.base).create(s, name="paenet")
    packer = Packer(model, config["optimizer"])
    if model.num_tasks:
        packer.resume_task(1)       # an imported task goes on as the active task
    config.update(made)
    check(config)
    workspace.save_finished(packer)
    workspace.write_config(config)       # last: a workspace without its config is still new


def _create_new(workspace, s: Settings, check):
    """``_create`` where no workspace is (refused beside finished tasks), seeded so that one seed gives
    one workspace."""
    import keras

    from paenet.models.base import dtype_policy
    workspace.check_new()
    keras.utils.set_random_seed(s.seed)
    with dtype_policy(s.precision):
        _create(workspace, s, check)


def _resume(workspace, finished, active: dict, spec, data, s: Settings, optimizer):
    """The goal loop of the interrupted run, restored from the workspace's latest checkpoint (`active`,
    its run state)."""
    from paenet.goal import Goal, GoalLoop, LoopState
    from paenet.monitor import WorkspaceObserver
    state = LoopState.from_dict(active["loop"])
    best = workspace.checkpoints.load_best(active["best"]) if active["best"] else None   # before any log is made
    start = workspace.checkpoints.load_best(active["start"]) if active.get("start") else None
    observer = WorkspaceObserver(workspace, {k: active[k] for k in ("task", "goal", "plan", "method") if k in active},
                                 s.checkpoint_every,
                                 global_step=active["global_step"], best=active["best"], start=active.get("start"))
    args = dict(spec=spec, train=data.train, validate=data.validate, goal=Goal(**active["goal"]),
                plan=PackingPlan.from_dict(active["plan"]), test=data.test, loss=data.loss, observer=observer,
                state=state, method=active.get("method", DEFAULT_METHOD), start_snapshot=start, progress=s.progress)
    checkpoints = workspace.checkpoints
    if state.stage == "baseline":
        loop = GoalLoop(finished, best_snapshot=best, **args)
    else:
        packer = checkpoints.restore_packer(active, optimizer, task_parts=finished.task_parts)
        loop = GoalLoop(packer, best_snapshot=best, **args)
    checkpoints.restore(loop.current_packer, loop.current_trainer, data.train, active)
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
            write_json_atomic(str(workspace.path / LFW_ROC), {"task": record.name, "data": data.data.get("test"),
                                                              **data.roc(packer.model, record.task)})
        for split, fn in (("val", data.validate), ("test", data.test)):
            if fn is not None:
                entries.append({"after_task": len(packer.records), "after": after, "task": record.task,
                                "name": record.name, "split": split, "metric": "accuracy",
                                "value": float(fn(packer.model, record.task)),
                                **({"data": data.data[split]} if split in data.data else {})})
    return entries


def pack(s: Settings) -> tuple[int, dict]:
    """Packs task `s.task` into workspace `s.workspace`; returns (exit status, summary). A new workspace
    is written only once the request is complete and the task's data load (validate, then create): an
    error before it is complete leaves no folder behind."""
    from paenet import tasks
    validate(s)
    try:
        definition = tasks.get(s.task)
    except KeyError as e:
        raise UsageError(e.args[0]) from None
    from paenet.distribute import make_strategy
    from paenet.workspace import Workspace
    workspace = Workspace(s.workspace)
    strategy = None if s.distribution == "none" else make_strategy(s.distribution)    # before any TF op
    made = not workspace.path.exists()
    if made:
        goal_of(s)                  # a new workspace's folder is made only for a complete request
    try:
        return _pack(s, definition, workspace, strategy)
    except Exception:   # an error before the workspace was complete leaves nothing (a kill: the rerun creates it)
        if made and not workspace.exists():
            shutil.rmtree(workspace.path, ignore_errors=True)
        raise


def _pack(s: Settings, definition, workspace, strategy) -> tuple[int, dict]:
    import keras
    import tensorflow as tf

    from paenet.goal import GoalLoop, LoopState
    from paenet.models.base import dtype_policy
    from paenet.monitor import WorkspaceObserver
    from paenet.tasks import TaskContext

    def context_of(config):
        return TaskContext(s.data_dir, config["image_size"], config["batch_size"], config["seed"], config["fold"],
                           dict(s.task_options), s.progress)

    with workspace.locked(), contextlib.ExitStack() as scope:
        active = workspace.checkpoints.latest_state() if workspace.exists() else None
        goal = None if active else goal_of(s)
        batch = workspace.config()["batch_size"] if workspace.exists() else s.batch_size
        if strategy is not None and batch % strategy.num_replicas_in_sync:
            raise UsageError(f"--distribution={s.distribution}: a batch of {batch} does not split over "
                             f"{strategy.num_replicas_in_sync} replicas")
        if not workspace.exists():
            check_method(s.method, {"method": s.method, "sharing": s.sharing})
            _create_new(workspace, s, lambda config: definition.load(context_of(config)))   # its data loads
        config = workspace.config()
        precision = config.get("precision", "float32")
        if strategy is not None:
            scope.enter_context(strategy.scope())
        scope.enter_context(dtype_policy(precision))
        check_precision(precision)
        method = check_method(s.method, config)
        workspace.evaluations()     # readable, or refused before any work
        keras.utils.set_random_seed(config["seed"])
        if s.deterministic:
            tf.config.experimental.enable_op_determinism()
        finished = workspace.load_finished(config["optimizer"], task_parts=config["task_parts"])
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
        context = context_of(config)
        data = definition.load(context)
        imported = finished.model.task_specs[finished.active_task - 1] if finished.active_task else None
        if imported is not None and imported.num_classes == 0 and data.train is not None:
            raise UsageError(f"task {imported.name!r} was imported without a head, so it cannot train on the "
                             f"training data it has now: create the workspace with that data (for the face task, "
                             f"--face_train) or move the data away")
        spec = definition.spec(data)
        if active:
            loop = _resume(workspace, finished, active, spec, data, s, config["optimizer"])
        else:
            observer = WorkspaceObserver(workspace, {"task": definition.name, "goal": _as_json(goal),
                                                     "plan": _as_json(s.plan), "method": method.name},
                                         s.checkpoint_every)
            loop = GoalLoop(finished, spec, data.train, data.validate, goal, s.plan, data.test, data.loss, observer,
                            LoopState(), method=method, progress=s.progress)
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
