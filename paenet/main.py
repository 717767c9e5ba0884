"""``python -m paenet.main --workspace=DIR --task=NAME``: pack one task into a workspace's network.

Creates the workspace when it is new, runs the accuracy-goal loop (claim → train → expand if needed →
prune to the turning point → finish), resumes a killed run from its last checkpoint, evaluates every
task packed so far (the accuracy matrix) and prints one JSON summary line. ``--demo`` packs FaceNet's face
task and two real-image tasks into a workspace from files that registry packages ship, then exports and
reports. Exit status: 0 when the task met its goal, 2 when it could not (it was rolled back and the
workspace is as before), 1 on an error, whose one-line message names the problem (nothing is changed).
"""
from __future__ import annotations

from paenet import quiet  # noqa: F401  (first: before TensorFlow loads; see paenet/quiet.py)

import dataclasses
import json
import sys

from absl import app, flags

from paenet import config
from paenet.app import UsageError

FLAGS = flags.FLAGS
TASK_OPTIONS = ("face_pairs", "face_val", "face_val_pairs", "face_train", "face_prelogits_norm_factor",
                "face_center_loss_factor")


def define_flags():
    """The command's own flags and the task options; every setting's flag comes from ``paenet.config``."""
    flags.DEFINE_bool("demo", False, "Pack the demo (FaceNet face task + two real-image tasks) into --workspace, "
                                     "then export and report; needs nothing but the package registry.")
    flags.DEFINE_bool("list_tasks", False, "Print the registered tasks and exit.")
    flags.DEFINE_multi_string("task_module", [], "Python module(s) to import first: they register user tasks.")
    flags.DEFINE_bool("list_backbones", False, "Print the registered backbones (--base) with their own options "
                                               "and exit.")
    flags.DEFINE_multi_string("backbone_option", [], "NAME=VALUE: an option of the --base backbone beyond the "
                                                     "common flags (--list_backbones shows them).")
    flags.DEFINE_string("face_val", None, "face task: a folder of aligned identities, <identity>/<image>, that "
                                          "LFW does not hold, for its validation pairs (default "
                                          "DATA_DIR/vggface2_test_aligned).")
    flags.DEFINE_integer("face_val_pairs", None, "face task: validation pairs of each kind per fold (default 300).",
                         lower_bound=1)
    flags.DEFINE_string("face_pairs", None, "face task: aligned faces with an LFW pairs.txt (default "
                                            "DATA_DIR/lfw_aligned).")
    flags.DEFINE_string("face_train", None, "face task: aligned training identities, <identity>/<image> at 182 "
                                            "px, to retrain FaceNet on while it is pruned (default "
                                            "DATA_DIR/vggface2_train_aligned; without it the face task is pruned "
                                            "without retraining).")
    flags.DEFINE_float("face_prelogits_norm_factor", None, "face task: weight of the prelogits' L1 norm in its "
                                                           "loss (default 5e-4, train_softmax.py's).", lower_bound=0)
    flags.DEFINE_float("face_center_loss_factor", None, "face task: weight of the centre loss (default 0: off).",
                       lower_bound=0)
    config.define_flags()


def help_groups() -> list[tuple[str, list[str]]]:
    """``--help``'s groups: every setting of ``paenet.config``, this command's own flags with them."""
    own = {"workspace and task": ["demo", "list_tasks", "task_module"], "data": list(TASK_OPTIONS),
           "a new workspace's network": ["list_backbones", "backbone_option"]}
    return [(title, names + own.get(title, [])) for title, names in config.flag_groups()]


def settings_from_flags() -> config.Settings:
    options = {name: getattr(FLAGS, name) for name in TASK_OPTIONS if getattr(FLAGS, name) is not None}
    backbone_options = {}
    for item in FLAGS.backbone_option:
        name, equals, value = item.partition("=")
        if not equals or not name:
            raise UsageError(f"--backbone_option={item}: must be NAME=VALUE")
        backbone_options[name] = value
    return dataclasses.replace(config.from_flags(FLAGS, options), backbone_options=backbone_options)


def run() -> int:
    from paenet import app as paenet_app
    from paenet import tasks
    paenet_app.import_task_modules(FLAGS.task_module)
    if FLAGS.list_tasks:
        for name in tasks.names():
            d = tasks.get(name)
            print(f"{name}\t{d.num_classes} classes\t{d.description}")
        return 0
    if FLAGS.list_backbones:
        from paenet.models import BACKBONES
        for name, backbone in sorted(BACKBONES.items()):
            options = ", ".join(f"{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}"
                                for k, v in backbone.cls.OPTIONS.items())
            made = "imported from a file" if backbone.load else f"options: {options or 'none'}"
            print(f"{name}\t{backbone.cls.__name__}\t{made}")
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
    from paenet.facenet_import import FacenetImportError
    from paenet.records import IntegrityError
    from paenet.workspace import WorkspaceError
    if len(argv) > 1:
        raise app.UsageError(f"unexpected arguments: {' '.join(argv[1:])}")
    import tensorflow as tf

    from paenet.fileio import error_line
    try:
        sys.exit(run())
    except (UsageError, KeyError, OSError, IntegrityError, WorkspaceError, FacenetImportError,
            tf.errors.OpError) as e:        # (OpError: a full disk, an unreadable file, as paenet.cli)
        message = e.args[0] if isinstance(e, (UsageError, KeyError)) else error_line(e)
        print(f"paenet.main: error: {message}", file=sys.stderr)
        sys.exit(1)


if __name__ == "__main__":
    from paenet.cli import flags_parser
    define_flags()
    app.run(main, flags_parser=flags_parser(help_groups))
