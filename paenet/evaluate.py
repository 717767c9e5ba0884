"""``python -m paenet.evaluate lfw --images=DIR --pairs=FILE --checkpoint=PATH``: one JSON object on stdout.

``lfw`` runs FaceNet's LFW protocol (``paenet.evaluation.lfw``) on images aligned by
``python -m data_prep.align --image_size=160 --margin=32`` and prints ``accuracy_mean``, ``accuracy_std``,
``val_at_far``, ``pairs_used``, ``pairs_skipped`` (and ``val_std``, ``far_mean``, ``threshold_mean``,
``folds``).

``--checkpoint``: a FaceNet TF1 checkpoint (prefix or folder), frozen graph (``.pb``) or TFLite model
(``paenet.facenet_import``), or a PAENet workspace (or bare packing folder), whose face task is used:
the task named ``--task``, by default the first task without a classifier head.
"""
from __future__ import annotations

from paenet import quiet  # noqa: F401  (first: before TensorFlow loads; see paenet/quiet.py)

import json
import os

from absl import app, flags

FLAGS = flags.FLAGS


def define_flags():
    flags.DEFINE_string("images", None, "Folder of aligned images in LFW layout (Name/Name_0001.png).")
    flags.DEFINE_string("pairs", None, "LFW pairs.txt.")
    flags.DEFINE_string("checkpoint", None, "FaceNet checkpoint, .pb or .tflite, or a PAENet workspace.")
    flags.DEFINE_string("task", None, "With a workspace: the task to evaluate (default: its face task).")
    flags.DEFINE_integer("batch_size", 100, "Images per embedding call.")


def embedding_model(checkpoint, task: str | None = None):
    """(model, task number) of the face model that `checkpoint` names (see the module docstring)."""
    from paenet.workspace import WorkspaceError, is_packing, locate
    if os.path.isdir(checkpoint) and (is_packing(checkpoint) or is_packing(os.path.join(checkpoint, "packing"))):
        try:
            from paenet.checkpoint import load_packing
            model = load_packing(locate(checkpoint).packing).model
        except WorkspaceError as e:
            raise ValueError(str(e)) from None
        if task is not None:
            return model, model.task_number(task)
        from paenet.serving import serves_embeddings
        features = [t for t in range(1, model.num_tasks + 1) if serves_embeddings(model, t)]
        if not features:
            raise ValueError(f"{checkpoint}: no task without a classifier head (a face task) to evaluate")
        return model, features[0]
    from paenet.facenet_import import load_facenet
    return load_facenet(checkpoint).model, 1


def main(argv):
    if len(argv) != 2 or argv[1] != "lfw":
        raise app.UsageError("usage: python -m paenet.evaluate lfw --images=DIR --pairs=FILE --checkpoint=PATH")
    for name in ("images", "pairs", "checkpoint"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    from paenet.cli import report_errors
    from paenet.evaluation.lfw import embedding_function, evaluate_lfw

    def work():
        model, task = embedding_model(FLAGS.checkpoint, FLAGS.task)
        return evaluate_lfw(FLAGS.images, FLAGS.pairs, embedding_function(model, task),
                            batch_size=FLAGS.batch_size, image_size=model.image_shape[0])
    print(json.dumps(report_errors("paenet.evaluate", work)))


if __name__ == "__main__":
    define_flags()
    from paenet.cli import flags_parser
    app.run(main, flags_parser=flags_parser())
