"""``python -m paenet.main --workspace=DIR --task=NAME``: pack one task into a workspace's network.

Creates the workspace when it is new, runs the accuracy-goal loop (claim → train → expand if needed →
prune to the turning point → finish), resumes a killed run from its last checkpoint, evaluates every
task packed so far (the accuracy matrix) and prints one JSON summary line. ``--demo`` packs FaceNet's face
task and two real-image tasks into a workspace from files that registry packages ship, then exports and
reports. Exit status: 0 when the task met its goal, 2 when it could not (it was rolled back and the
workspace is as before), 1 on an error, whose one-line message names the problem (nothing is changed).
"""
from __future__ import annotations

import dataclasses
import json
import sys

from absl import app, flags

from paenet.app import Settings, UsageError

FLAGS = flags.FLAGS
_DEFAULTS = Settings(workspace="", task="")


def define_flags():
    d = _DEFAULTS
    flags.DEFINE_string("workspace", None, "Workspace folder (created when new; see WORKSPACE.md).")
    flags.DEFINE_string("task", None, "Task to pack; --list_tasks shows the registered ones.")
    flags.DEFINE_bool("demo", False, "Pack the demo (FaceNet face task + two real-image tasks) into --workspace, "
                                     "then export and report; needs nothing but the package registry.")
    flags.DEFINE_bool("list_tasks", False, "Print the registered tasks and exit.")
    flags.DEFINE_multi_string("task_module", [], "Python module(s) to import first: they register user tasks.")
    flags.DEFINE_string("data_dir", None, "Data folder: the real-image sets (default $PAENET_DATA_DIR or "
                                          "../shared/data), or TFDS's data folder for the paper's tasks.")
    flags.DEFINE_string("face_val", None, "face task: a folder of aligned identities, <identity>/<image>, that "
                                          "LFW does not hold, for its validation pairs (default "
                                          "DATA_DIR/vggface2_test_aligned).")
    flags.DEFINE_integer("face_val_pairs", None, "face task: validation pairs of each kind per fold (default 300).",
                         lower_bound=1)
    flags.DEFINE_string("face_pairs", None, "face task: aligned faces with an LFW pairs.txt (default "
                                            "DATA_DIR/lfw_aligned).")
    flags.DEFINE_enum("base", d.base, ["small_cnn", "facenet"], "Base network of a new workspace.")
    flags.DEFINE_string("facenet", None, "base=facenet: FaceNet checkpoint (prefix or folder), .pb or .tflite.")
    flags.DEFINE_float("bn_momentum", None, "base=facenet: BatchNorm moving-average decay while a task trains "
                                            "(default FaceNet's 0.995; short runs need e.g. 0.9).")
    flags.DEFINE_integer("image_size", d.image_size, "small_cnn: input size.")
    flags.DEFINE_list("widths", [str(w) for w in d.widths], "small_cnn: filters of its conv blocks.")
    flags.DEFINE_integer("dense_units", d.dense_units, "small_cnn: width of its feature layer.")
    flags.DEFINE_float("dropout", d.dropout, "small_cnn: dropout rate before the heads.")
    flags.DEFINE_string("method", d.method, "Continual-learning method: pae (default), packnet or cpg "
                                            "(paenet.methods; --task_module may register more).")
    flags.DEFINE_enum("sharing", d.sharing, ["cumulative", "first"],
                      "Which earlier tasks' weights a task reuses: all (PAE) or only task 1's.")
    flags.DEFINE_integer("seed", d.seed, "Random seed of a new workspace (initialisation, splits, data order).")
    flags.DEFINE_integer("fold", d.fold, "Test fold of a new workspace for cross-validated data (Adience: 0-4).")
    flags.DEFINE_enum("optimizer", d.optimizer, ["adam", "adamw", "sgd", "rmsprop"], "Optimizer.")
    flags.DEFINE_float("learning_rate", d.learning_rate, "Learning rate.")
    flags.DEFINE_float("weight_decay", d.weight_decay,
                       "Decoupled weight decay (adamw, sgd); acts on the task's own weights only.")
    flags.DEFINE_float("momentum", d.momentum, "Momentum (sgd, rmsprop).")
    flags.DEFINE_integer("batch_size", d.batch_size, "Training batch size.")
    flags.DEFINE_enum("task_parts", d.task_parts, ["inherit", "fresh"],
                      "A new workspace's new tasks start their BatchNorm and biases from the task whose weights "
                      "they reuse (inherit) or from defaults (fresh).")
    flags.DEFINE_float("goal", None, "Absolute validation accuracy the task must keep.")
    flags.DEFINE_float("goal_margin", None, "Goal = baseline - this margin (baseline measured unless --baseline).")
    flags.DEFINE_float("baseline", None, "A known baseline accuracy for --goal_margin.")
    flags.DEFINE_list("targets", [str(t) for t in d.targets], "Target sparsities of the pruning rounds.")
    flags.DEFINE_integer("train_steps", d.train_steps, "Training steps, and retraining steps after each expansion.")
    flags.DEFINE_integer("steps_per_round", d.steps_per_round, "Training steps per pruning round.")
    flags.DEFINE_integer("prune_steps", d.prune_steps, "Steps at the start of each round over which it prunes.")
    flags.DEFINE_integer("prune_frequency", d.prune_frequency, "Prune every this many steps.")
    flags.DEFINE_enum("expansion_policy", d.expansion_policy, ["uniform", "saturation"], "How to widen.")
    flags.DEFINE_float("expansion_ratio", d.expansion_ratio, "Parameter ratio of one expansion round.")
    flags.DEFINE_float("expansion_cap", d.expansion_cap,
                       "Most masked parameters, relative to the network before its first expansion.")
    flags.DEFINE_integer("checkpoint_every", d.checkpoint_every,
                         "Checkpoint every this many training steps (and after every phase).")
    flags.DEFINE_bool("progress", d.progress, "Show progress bars.")
    flags.DEFINE_bool("deterministic", d.deterministic,
                      "TensorFlow op determinism (runs and resumed runs repeat bit for bit).")


def _numbers(flag: str, kind) -> tuple:
    """The comma-separated list flag `flag` as numbers of type `kind`; UsageError naming it otherwise."""
    try:
        return tuple(kind(v) for v in getattr(FLAGS, flag))
    except ValueError:
        raise UsageError(f"--{flag}={','.join(getattr(FLAGS, flag))}: must be a list of "
                         f"{'integers' if kind is int else 'numbers'}") from None


def settings_from_flags() -> Settings:
    names = {f.name for f in dataclasses.fields(Settings)} - {"task_options"}
    values = {n: getattr(FLAGS, n) for n in names}
    options = {name: getattr(FLAGS, name) for name in ("face_pairs", "face_val", "face_val_pairs")
               if getattr(FLAGS, name) is not None}
    values.update(widths=_numbers("widths", int), targets=_numbers("targets", float), task_options=options)
    return Settings(**values)


def run() -> int:
    from paenet import app as paenet_app
    from paenet import tasks
    paenet_app.import_task_modules(FLAGS.task_module)
    if FLAGS.list_tasks:
        for name in tasks.names():
            d = tasks.get(name)
            print(f"{name}\t{d.num_classes} classes\t{d.description}")
        return 0
    if FLAGS.demo:
        if not FLAGS.workspace:
            raise UsageError("--demo needs --workspace=DIR")
        from paenet import demo
        return demo.run(FLAGS.workspace, progress=FLAGS.progress)
    if not FLAGS.workspace or not FLAGS.task:
        raise UsageError("--workspace and --task are required (or --demo, or --list_tasks)")
    status, summary = paenet_app.pack(settings_from_flags())
    print(json.dumps(summary))
    return status


def main(argv):
    from absl import logging

    from paenet.facenet_import import FacenetImportError
    from paenet.records import IntegrityError
    from paenet.workspace import WorkspaceError
    logging.set_verbosity(logging.WARNING)
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    try:
        sys.exit(run())
    except (UsageError, KeyError, OSError, IntegrityError, WorkspaceError, FacenetImportError) as e:
        message = e.args[0] if isinstance(e, (UsageError, KeyError)) else str(e)
        print(f"paenet.main: error: {message}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    define_flags()
    app.run(main)
