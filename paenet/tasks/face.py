"""The face verification task: FaceNet's embedding, selected on identities LFW does not hold, tested on LFW.

* Test: LFW's 10-fold protocol over every pair of its ``pairs.txt`` (the paper's number), on a folder of
  aligned faces in LFW layout (``options["face_pairs"]``, default ``<data_dir>/lfw_aligned``; align LFW
  with ``python -m data_prep.align --image_size=160 --margin=32`` and put ``pairs.txt`` beside the
  images). The app evaluates it once, when the task is finished.
* Validation (the goal loop's turning point): verification pairs drawn, seeded by ``--seed``, balanced and
  in 10 folds (``VAL_FOLDS`` x ``options["face_val_pairs"]`` pairs of each kind, default LFW's 300), from
  a folder of identities, ``<identity>/<image>`` (``options["face_val"]``, default
  ``<data_dir>/vggface2_test_aligned``: VGGFace2's 500 test identities aligned as LFW, ``python -m
  data_prep.align --input=VGGFACE2/test --output=DATA_DIR/vggface2_test_aligned --image_size=160
  --margin=32``, with VGGFace2's ``identity_meta.csv`` copied beside them). An identity that LFW also holds
  is left out, by folder name or, where the folder (or its parent, or ``meta/``) has ``identity_meta.csv``,
  by the name it gives; so validation and test share no person.

Without a validation folder the task falls back to selecting on LFW folds 1-5 and testing on folds 6-10,
and warns that this selection is not independent of the test. The task has no training data here: it is
imported from FaceNet and pruned without retraining, and its sizes say so (``"train": 0``, in the app's
summary line).
"""
from __future__ import annotations

import logging
from pathlib import Path

from paenet.data import real_images
from paenet.data.pairs import draw_pairs, identity_images, read_pairs, resolve_pairs
from paenet.tasks.registry import TaskContext, TaskData, TaskDefinition, register

logger = logging.getLogger("paenet.tasks.face")

VAL_FOLDS = 10
VAL_PAIRS_PER_FOLD = 300


def verifier(image_dir, pairs_file, folds=None, result: str = "accuracy_mean"):
    """``f(model, task)``: the LFW protocol over `folds` (default all), its mean accuracy (or its ROC,
    with ``result="roc"``)."""
    from paenet.evaluation.lfw import evaluate_lfw
    return _verify(lambda embed, size: evaluate_lfw(image_dir, pairs_file, embed, image_size=size, folds=folds,
                                                    roc=result == "roc")[result])


def pair_verifier(pairs):
    """``f(model, task)``: the protocol's mean accuracy on `pairs` (path, path, same, fold)."""
    from paenet.evaluation.lfw import evaluate_image_pairs
    return _verify(lambda embed, size: evaluate_image_pairs(pairs, embed, image_size=size)["accuracy_mean"])


def _verify(evaluate):
    def verify(model, task):
        from paenet.evaluation.lfw import embedding_function
        return evaluate(embedding_function(model, task), model.image_shape[0])
    return verify


def _normalised(name: str) -> str:
    return name.strip().strip('"').replace(" ", "_").lower()


def identity_names(folder: Path) -> dict[str, str]:
    """Folder name -> person's name from a VGGFace2 ``identity_meta.csv`` in `folder`, its ``meta/``, its
    parent or the parent's ``meta/`` (empty when there is none)."""
    from data_prep.builders.vggface2 import read_identity_meta
    for place in (folder, folder / "meta", folder.parent, folder.parent / "meta"):
        if (place / "identity_meta.csv").is_file():
            return read_identity_meta(place / "identity_meta.csv")
    return {}


def validation_pairs(folder, test_people, seed: int, per_fold: int = VAL_PAIRS_PER_FOLD):
    """(pairs, identities left out): pairs drawn from the identities of `folder` that are not among
    `test_people` (compared by name, see the module docstring)."""
    folder = Path(folder)
    images = identity_images(folder)
    names = identity_names(folder)
    test = {_normalised(p) for p in test_people}
    shared = sorted(i for i in images if _normalised(i) in test or _normalised(names.get(i, "")) in test)
    kept = {i: v for i, v in images.items() if i not in shared}
    try:
        return draw_pairs(kept, VAL_FOLDS, per_fold, seed), shared
    except ValueError as error:
        raise ValueError(f"{folder}: {error}") from None


def _load(context: TaskContext) -> TaskData:
    data_dir = Path(context.data_dir or real_images.default_data_dir())
    folder = Path(context.options.get("face_pairs") or data_dir / "lfw_aligned")
    pairs_file = folder / "pairs.txt"
    if not pairs_file.exists():
        raise FileNotFoundError(f"{pairs_file} is missing: the face task needs aligned faces with an LFW pairs.txt "
                                "(--face_pairs=DIR; see paenet/tasks/face.py)")
    test_pairs = read_pairs(pairs_file)
    folds = sorted({p.fold for p in test_pairs})
    val_folder = Path(context.options.get("face_val") or data_dir / "vggface2_test_aligned")
    if val_folder.is_dir():
        test_people = {name for p in test_pairs for name in (p.name1, p.name2)}
        test_people |= {d.name for d in folder.iterdir() if d.is_dir()}
        val, shared = validation_pairs(val_folder, test_people, context.seed,
                                       int(context.options.get("face_val_pairs", VAL_PAIRS_PER_FOLD)))
        if shared:
            logger.info("%s: %d identities also in %s left out of validation", val_folder, len(shared), folder)
        used, _ = resolve_pairs(test_pairs, folder)
        return TaskData(train=None, validate=pair_verifier(val), test=verifier(folder, pairs_file),
                        roc=verifier(folder, pairs_file, result="roc"),
                        sizes={"train": 0, "val_pairs": len(val), "val_identities_left_out": len(shared),
                               "test_pairs": len(used), "test_folds": len(folds)})
    if len(folds) < 4:
        raise ValueError(f"{pairs_file}: {len(folds)} folds, and no validation identities in {val_folder}; the face "
                         "task needs one or the other (face_val, see paenet/tasks/face.py)")
    logger.warning("%s is not there: the face task selects on folds 1-%d of %s and tests on the rest, so its "
                   "selection is not independent of its test; give it identities LFW does not hold (face_val)",
                   val_folder, len(folds) // 2, pairs_file)
    half = len(folds) // 2
    return TaskData(train=None, validate=verifier(folder, pairs_file, folds[:half]),
                    test=verifier(folder, pairs_file, folds[half:]),
                    roc=verifier(folder, pairs_file, folds[half:], "roc"),
                    sizes={"train": 0, "val_folds": half, "test_folds": len(folds) - half})


register(TaskDefinition("face", 0, "face verification (FaceNet embedding, pruned without retraining; selected on "
                                   "identities apart from LFW, tested on LFW's 10 folds)", _load))
