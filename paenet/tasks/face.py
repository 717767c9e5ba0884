"""The face verification task: FaceNet's embedding, judged by the LFW protocol on aligned pairs.

Its data are a folder of aligned faces in LFW layout with a ``pairs.txt`` (``options["face_pairs"]``,
default ``<data_dir>/lfw_aligned``; align LFW with ``python -m data_prep.align --image_size=160
--margin=32`` and put LFW's ``pairs.txt`` beside the images). The first half of the folds validates (the
goal loop selects on it), the second half is the test split; each half is cross-validated among its own
folds as the protocol prescribes. The task has no training data here: it is imported from FaceNet and
pruned without retraining.
"""
from __future__ import annotations

from pathlib import Path

from paenet.data import real_images
from paenet.data.pairs import read_pairs
from paenet.tasks.registry import TaskContext, TaskData, TaskDefinition, register


def verifier(image_dir, pairs_file, folds, result: str = "accuracy_mean"):
    """``f(packer, task=None)``: the LFW protocol over `folds`, its mean accuracy (or its ROC, with
    ``result="roc"``)."""
    from paenet.evaluate import embedding_function
    from paenet.evaluation.lfw import evaluate_lfw

    def verify(packer, task=None):
        model = packer.model
        embed = embedding_function(model, task or packer.active_task)
        return evaluate_lfw(image_dir, pairs_file, embed, image_size=model.image_shape[0], folds=folds,
                            roc=result == "roc")[result]
    return verify


def _load(context: TaskContext) -> TaskData:
    folder = Path(context.options.get("face_pairs") or Path(context.data_dir or real_images.default_data_dir())
                  / "lfw_aligned")
    pairs = folder / "pairs.txt"
    if not pairs.exists():
        raise FileNotFoundError(f"{pairs} is missing: the face task needs aligned faces with an LFW pairs.txt "
                                "(--face_pairs=DIR; see paenet/tasks/face.py)")
    folds = sorted({p.fold for p in read_pairs(pairs)})
    if len(folds) < 4:
        raise ValueError(f"{pairs}: {len(folds)} folds; the face task needs at least 4 (half validate, half test)")
    half = len(folds) // 2
    return TaskData(train=None, validate=verifier(folder, pairs, folds[:half]),
                    test=verifier(folder, pairs, folds[half:]), roc=verifier(folder, pairs, folds[half:], "roc"),
                    sizes={"val_folds": half, "test_folds": len(folds) - half})


register(TaskDefinition("face", 0, "face verification (FaceNet embedding, LFW protocol on aligned pairs)", _load))
