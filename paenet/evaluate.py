"""``python -m paenet.evaluate lfw --images=DIR --pairs=FILE --checkpoint=PATH``: one JSON object on stdout.

``lfw`` runs FaceNet's LFW protocol (``paenet.evaluation.lfw``) on images aligned by
``python -m data_prep.align --image_size=160 --margin=32`` and prints ``accuracy_mean``, ``accuracy_std``,
``val_at_far``, ``pairs_used``, ``pairs_skipped`` (and ``val_std``, ``far_mean``, ``threshold_mean``,
``folds``).

The evaluation takes any embedding function; ``embedding_function`` turns ``--checkpoint`` into one. It
reads a FaceNet frozen graph (``.pb``, or a folder holding exactly one) with a small TF1 graph loader;
TF1 checkpoints and PAENet workspaces need the FaceNet import (``paenet.embed``, issue 7), which this
function is to call once it exists.
"""
from __future__ import annotations

import json
from pathlib import Path

from absl import app, flags

flags.DEFINE_string("images", None, "Folder of aligned images in LFW layout (Name/Name_0001.png).")
flags.DEFINE_string("pairs", None, "LFW pairs.txt.")
flags.DEFINE_string("checkpoint", None, "FaceNet frozen graph (.pb) or a folder holding one.")
flags.DEFINE_integer("batch_size", 100, "Images per embedding call.")
flags.DEFINE_integer("image_size", 160, "Side of the aligned images the model takes.")
FLAGS = flags.FLAGS


def frozen_graph_embedder(pb_path):
    """An embedding function from a FaceNet frozen GraphDef: feeds ``input:0`` (standardised images) and
    ``phase_train:0`` = False, returns ``embeddings:0`` as a NumPy array."""
    import tensorflow as tf
    graph_def = tf.compat.v1.GraphDef()
    graph_def.ParseFromString(Path(pb_path).read_bytes())
    wrapped = tf.compat.v1.wrap_function(lambda: tf.compat.v1.import_graph_def(graph_def, name=""), [])
    tensor = wrapped.graph.get_tensor_by_name
    run = wrapped.prune(feeds=[tensor("input:0"), tensor("phase_train:0")], fetches=tensor("embeddings:0"))
    return lambda images: run(tf.cast(images, tf.float32), tf.constant(False)).numpy()


def embedding_function(checkpoint):
    """The embedding function that `checkpoint` names (see the module docstring)."""
    path = Path(checkpoint)
    if path.is_dir():
        graphs = sorted(path.glob("*.pb"))
        if len(graphs) == 1:
            path = graphs[0]
    if path.suffix == ".pb" and path.is_file():
        return frozen_graph_embedder(path)
    raise ValueError(f"{checkpoint}: not a frozen graph (.pb) or a folder holding exactly one; TF1 "
                     "checkpoints and PAENet workspaces need the FaceNet import (paenet.embed)")


def main(argv):
    if len(argv) != 2 or argv[1] != "lfw":
        raise app.UsageError("usage: python -m paenet.evaluate lfw --images=DIR --pairs=FILE --checkpoint=PATH")
    for name in ("images", "pairs", "checkpoint"):
        if not getattr(FLAGS, name):
            raise app.UsageError(f"--{name} is required")
    from paenet.evaluation.lfw import evaluate_lfw
    result = evaluate_lfw(FLAGS.images, FLAGS.pairs, embedding_function(FLAGS.checkpoint),
                          batch_size=FLAGS.batch_size, image_size=FLAGS.image_size)
    print(json.dumps(result))


if __name__ == "__main__":
    app.run(main)
