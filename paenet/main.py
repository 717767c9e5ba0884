"""``python -m paenet.main --workspace=DIR --task=NAME``: pack one task into a workspace's network.

Creates the workspace when it is new, runs the accuracy-goal loop (claim → train → expand if needed →
prune to the turning point → finish), resumes a killed run from its last checkpoint, evaluates every
task packed so far (the accuracy matrix) and prints one JSON summary line. Exit status: 0 when the task
met its goal, 2 when it could not (it was rolled back, the workspace is as before), 1 on an error, whose
one-line message names the problem (nothing is changed then).
"""
from __future__ import annotations

import importlib
import json
import sys

from absl import app, flags

flags.DEFINE_string("workspace", None, "Workspace folder (created when new; see WORKSPACE.md).")
flags.DEFINE_string("task", None, "Task to pack; --list_tasks shows the registered ones.")
flags.DEFINE_bool("list_tasks", False, "Print the registered tasks and exit.")
flags.DEFINE_multi_string("task_module", [], "Python module(s) to import first: they register user tasks.")
flags.DEFINE_string("data_dir", None, "Data folder (default: $PAENET_DATA_DIR or ../shared/data).")
# The network of a new workspace.
flags.DEFINE_enum("base", "small_cnn", ["small_cnn"], "Base network of a new workspace.")
flags.DEFINE_integer("image_size", 64, "Input size of a new workspace's network.")
flags.DEFINE_list("widths", ["16", "32", "64"], "small_cnn: filters of its conv blocks.")
flags.DEFINE_integer("dense_units", 64, "small_cnn: width of its feature layer.")
flags.DEFINE_float("dropout", 0.2, "small_cnn: dropout rate before the heads.")
flags.DEFINE_enum("sharing", "cumulative", ["cumulative", "first"],
                  "Which earlier tasks' weights a task reuses: all (PAE) or only task 1's.")
flags.DEFINE_integer("seed", 0, "Random seed of a new workspace (initialisation, splits, data order).")
flags.DEFINE_integer("fold", 0, "Test fold of a new workspace for cross-validated data (Adience: 0-4).")
# Training.
flags.DEFINE_enum("optimizer", "adam", ["adam", "adamw", "sgd", "rmsprop"], "Optimizer.")
flags.DEFINE_float("learning_rate", 3e-3, "Learning rate.")
flags.DEFINE_float("weight_decay", 0.0, "Decoupled weight decay (adamw, sgd); acts on the task's own weights only.")
flags.DEFINE_float("momentum", 0.9, "Momentum (sgd, rmsprop).")
flags.DEFINE_integer("batch_size", 32, "Training batch size.")
flags.DEFINE_integer("train_steps", 300, "Training steps, and retraining steps after each expansion.")
# Goal, pruning and expansion.
flags.DEFINE_float("goal", None, "Absolute validation accuracy the task must keep.")
flags.DEFINE_float("goal_margin", None, "Goal = baseline - this margin (baseline measured unless --baseline).")
flags.DEFINE_float("baseline", None, "A known baseline accuracy for --goal_margin.")
flags.DEFINE_list("targets", ["0.1", "0.2", "0.3", "0.4", "0.5", "0.6", "0.7", "0.8", "0.9"],
                  "Target sparsities of the pruning rounds.")
flags.DEFINE_integer("steps_per_round", 100, "Training steps per pruning round.")
flags.DEFINE_integer("prune_steps", 50, "Steps at the start of each round over which it prunes.")
flags.DEFINE_integer("prune_frequency", 10, "Prune every this many steps.")
flags.DEFINE_enum("expansion_policy", "uniform", ["uniform", "saturation"], "How to widen the network.")
flags.DEFINE_float("expansion_ratio", 1.2, "Parameter ratio of one expansion round.")
flags.DEFINE_float("expansion_cap", 2.0, "Most masked parameters, relative to the first task's network.")
# Running.
flags.DEFINE_integer("checkpoint_every", 100, "Checkpoint every this many training steps (and after every phase).")
flags.DEFINE_bool("progress", True, "Show progress bars.")
flags.DEFINE_bool("deterministic", True, "TensorFlow op determinism (runs and resumed runs repeat bit for bit).")
FLAGS = flags.FLAGS


class UsageError(Exception):
    """A problem with what was asked: printed as one line, exit status 1, nothing changed."""


def _optimizer_config() -> dict:
    import keras
    lr = FLAGS.learning_rate
    optimizer = {"adam": lambda: keras.optimizers.Adam(lr),
                 "adamw": lambda: keras.optimizers.AdamW(lr, weight_decay=FLAGS.weight_decay or 0.004),
                 "sgd": lambda: keras.optimizers.SGD(lr, momentum=FLAGS.momentum,
                                                     weight_decay=FLAGS.weight_decay or None),
                 "rmsprop": lambda: keras.optimizers.RMSprop(lr, momentum=FLAGS.momentum)}[FLAGS.optimizer]()
    return keras.optimizers.serialize(optimizer)


def _new_workspace_config() -> dict:
    return {"format_version": 1, "base": FLAGS.base, "image_size": FLAGS.image_size,
            "widths": [int(w) for w in FLAGS.widths], "dense_units": FLAGS.dense_units, "dropout": FLAGS.dropout,
            "sharing": FLAGS.sharing, "seed": FLAGS.seed, "fold": FLAGS.fold, "optimizer": _optimizer_config(),
            "batch_size": FLAGS.batch_size}


def _create_workspace(workspace, config: dict):
    from paenet.models import SmallCNN
    from paenet.packing import Packer
    model = SmallCNN(widths=config["widths"], dense_units=config["dense_units"], dropout=config["dropout"],
                     input_shape=(config["image_size"],) * 2 + (3,), sharing=config["sharing"], name="paenet")
    workspace.write_config(config)
    workspace.save_finished(Packer(model, config["optimizer"]))


def _goal_and_plan():
    from paenet.expansion import ExpansionPolicy
    from paenet.goal import Goal, PackingPlan
    if (FLAGS.goal is None) == (FLAGS.goal_margin is None):
        raise UsageError("give exactly one of --goal (an absolute accuracy) and --goal_margin")
    if FLAGS.baseline is not None and FLAGS.goal_margin is None:
        raise UsageError("--baseline needs --goal_margin")
    goal = Goal(absolute=FLAGS.goal, margin=FLAGS.goal_margin, baseline=FLAGS.baseline)
    plan = PackingPlan(train_steps=FLAGS.train_steps, targets=tuple(float(t) for t in FLAGS.targets),
                       steps_per_round=FLAGS.steps_per_round, prune_steps=FLAGS.prune_steps,
                       frequency=FLAGS.prune_frequency,
                       expansion=ExpansionPolicy(FLAGS.expansion_policy, FLAGS.expansion_ratio, FLAGS.expansion_cap))
    return goal, plan


def _plan_from_dict(d: dict):
    from paenet.expansion import ExpansionPolicy
    from paenet.goal import PackingPlan
    return PackingPlan(**{**d, "targets": tuple(d["targets"]), "expansion": ExpansionPolicy(**d["expansion"])})


def _resume(workspace, finished, active: dict, definition, data, optimizer):
    """The goal loop of the interrupted run, restored from the workspace's latest checkpoint."""
    import keras
    import tensorflow as tf

    from paenet.goal import Goal, GoalLoop, LoopState
    from paenet.models import TaskSpec
    from paenet.monitor import WorkspaceObserver
    from paenet.packing import Packer
    state = LoopState.from_dict(active["loop"])
    run_state = {k: active[k] for k in ("task", "goal", "plan")}
    observer = WorkspaceObserver(workspace, run_state, FLAGS.checkpoint_every, global_step=active["global_step"],
                                 best=active["best"])
    args = dict(spec=TaskSpec(definition.name, definition.num_classes), train=data.train, validate=data.validate,
                goal=Goal(**active["goal"]), plan=_plan_from_dict(active["plan"]), test=data.test, loss=data.loss,
                observer=observer, state=state)
    if state.stage == "baseline":
        loop = GoalLoop(finished, **args)
    else:
        model = keras.saving.deserialize_keras_object(active["model"]).build_variables()
        latest = tf.train.latest_checkpoint(str(workspace.active_dir))
        tf.train.Checkpoint(variables=model.checkpoint_variables()).read(latest).expect_partial()
        packer = Packer.from_state(model, active["packer"], optimizer, data.loss, progress=FLAGS.progress)
        best = workspace.load_best(active["best"]) if active["best"] else None
        loop = GoalLoop(packer, best_snapshot=best, **args)
    current = loop.current_packer
    workspace.restore_active(current, current.batches(data.train) if data.train is not None else None)
    print(f"resuming task {definition.name!r} at stage {state.stage!r}, step {state.phase_step} of its phase",
          file=sys.stderr)
    return loop


def _evaluate_all(packer, context, after: str) -> list[dict]:
    from paenet import tasks
    entries = []
    for record in packer.records:
        data = tasks.get(record.name).load(context)
        for split, fn in (("val", data.validate), ("test", data.test)):
            if fn is not None:
                entries.append({"after_task": len(packer.records), "after": after, "task": record.task,
                                "name": record.name, "split": split, "metric": "accuracy",
                                "value": float(fn(packer, record.task))})
    return entries


def run() -> int:
    for module in FLAGS.task_module:
        importlib.import_module(module)
    from paenet import tasks
    if FLAGS.list_tasks:
        for name in tasks.names():
            d = tasks.get(name)
            print(f"{name}\t{d.num_classes} classes\t{d.description}")
        return 0
    if not FLAGS.workspace or not FLAGS.task:
        raise UsageError("--workspace and --task are required (or --list_tasks)")
    try:
        definition = tasks.get(FLAGS.task)
    except KeyError as e:
        raise UsageError(e.args[0]) from None

    import keras
    import tensorflow as tf

    from paenet.goal import GoalLoop, LoopState
    from paenet.models import TaskSpec
    from paenet.monitor import WorkspaceObserver
    from paenet.tasks import TaskContext
    from paenet.workspace import Workspace
    workspace = Workspace(FLAGS.workspace)
    with workspace.locked():
        active = workspace.active_state()
        goal, plan = (None, None) if active else _goal_and_plan()
        created = not workspace.exists()
        if created:
            _create_workspace(workspace, _new_workspace_config())
        config = workspace.config()
        keras.utils.set_random_seed(config["seed"])
        if FLAGS.deterministic:
            tf.config.experimental.enable_op_determinism()
        finished = workspace.load_finished(config["optimizer"], progress=FLAGS.progress)
        if active and active["task"] != definition.name:
            raise UsageError(f"task {active['task']!r} is being packed in {workspace.path}: run --task="
                             f"{active['task']} to finish it first")
        if definition.name in [t.name for t in finished.model.task_specs]:
            raise UsageError(f"task {definition.name!r} is packed in {workspace.path} already")
        context = TaskContext(FLAGS.data_dir, config["image_size"], config["batch_size"], config["seed"],
                              config["fold"])
        data = definition.load(context)
        if active:
            loop = _resume(workspace, finished, active, definition, data, config["optimizer"])
        else:
            run_state = {"task": definition.name, "goal": vars_of(goal), "plan": vars_of(plan)}
            observer = WorkspaceObserver(workspace, run_state, FLAGS.checkpoint_every)
            loop = GoalLoop(finished, TaskSpec(definition.name, definition.num_classes), data.train,
                            data.validate, goal, plan, data.test, data.loss, observer, LoopState())
        outcome = loop.run()
        summary = {"task": definition.name, "status": outcome.status, "goal": outcome.goal,
                   "baseline": outcome.baseline, "val_accuracy": outcome.val_accuracy,
                   "test_accuracy": outcome.test_accuracy, "expansions": outcome.expansions,
                   "history": outcome.history}
        if outcome.status != "goal_met":
            workspace.discard_active()
            print(json.dumps(summary))
            return 2
        workspace.save_finished(loop.packer)
        workspace.add_evaluations(_evaluate_all(loop.packer, context, definition.name))
        workspace.finish_active(definition.name)
        record = outcome.record
        summary.update(task_number=record.task, chosen_sparsity=record.metrics["chosen_sparsity"],
                       digest=record.digest)
        print(json.dumps(summary))
        return 0


def vars_of(obj) -> dict:
    """A frozen dataclass (Goal, PackingPlan) as plain JSON data."""
    import dataclasses
    return json.loads(json.dumps(dataclasses.asdict(obj)))


def main(argv):
    from absl import logging
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    from paenet.records import IntegrityError
    from paenet.workspace import WorkspaceError
    try:
        sys.exit(run())
    except (UsageError, KeyError, FileNotFoundError, IntegrityError, WorkspaceError) as e:
        message = e.args[0] if isinstance(e, (UsageError, KeyError)) else str(e)
        print(f"paenet.main: error: {message}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    app.run(main)
