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

* Training (PAE §3.1: FaceNet retrained while it is pruned, ivclab/PAE ``src/first_task_script.sh``): a
  folder of identities, ``<identity>/<image>`` of faces aligned at 182 px (``options["face_train"]``,
  default ``<data_dir>/vggface2_train_aligned``: VGGFace2's training identities, ``python -m data_prep.align
  --input=VGGFACE2/train --output=DATA_DIR/vggface2_train_aligned --image_size=182 --margin=44``). Each
  batch is random 160 px crops (the image size x 182/160), randomly flipped, with fixed standardisation;
  the loss is davidsandberg/facenet ``train_softmax.py``'s (``FaceLoss``): softmax cross-entropy over the
  identities through FaceNet's own ``Logits`` head (class k = the k-th identity in sorted order, as
  FaceNet's ``get_dataset``; the checkpoint's head is imported when it has as many classes, else a fresh
  one is trained), plus the prelogits' mean L1 norm x ``face_prelogits_norm_factor`` (5e-4, the
  script's ``--prelogits_norm_loss_factor``) and the centre loss x ``face_center_loss_factor`` (0: off, the
  script's default). The face task then has a head, but it serves and is evaluated by its embedding.

Without a validation folder the task falls back to selecting on LFW folds 1-5 and testing on folds 6-10,
and warns that this selection is not independent of the test. Without a training folder the task is
pruned without retraining (as imported), says so once on stderr, and its sizes say so (``"train": 0``).
"""
from __future__ import annotations

import logging
from pathlib import Path

import numpy as np

from paenet.data import pipeline, real_images
from paenet.data.pairs import draw_pairs, identity_images, read_pairs, resolve_pairs
from paenet.models import InceptionResnetV1, register_backbone
from paenet.tasks.registry import TaskContext, TaskData, TaskDefinition, register

logger = logging.getLogger("paenet.tasks.face")

VAL_FOLDS = 10
VAL_PAIRS_PER_FOLD = 300
PRELOGITS_NORM_P = 1.0          # train_softmax.py --prelogits_norm_p (default)
PRELOGITS_NORM_FACTOR = 5e-4    # first_task_script.sh --prelogits_norm_loss_factor
PRELOGITS_NORM_EPS = 1e-4       # train_softmax.py: norm of |prelogits| + 1e-4
CENTER_LOSS_ALFA = 0.95         # train_softmax.py --center_loss_alfa (default)
CROP_MARGIN = 182 / 160         # FaceNet's training faces: 182 px, cropped to 160
_reported = set()               # folders already reported missing (say it once per process)


def verifier(image_dir, pairs_file, folds=None, result: str = "accuracy_mean", phase: str = "test",
             progress: bool = True):
    """``f(model, task)``: the LFW protocol over `folds` (default all), its mean accuracy (or its ROC,
    with ``result="roc"``); with `progress`, a bar named after the task and `phase`."""
    from paenet.evaluation.lfw import evaluate_lfw
    return _verify(lambda embed, size, bar: evaluate_lfw(image_dir, pairs_file, embed, image_size=size, folds=folds,
                                                         roc=result == "roc", progress=bar)[result],
                   phase, progress)


def pair_verifier(pairs, progress: bool = True):
    """``f(model, task)``: the protocol's mean accuracy on `pairs` (path, path, same, fold)."""
    from paenet.evaluation.lfw import evaluate_image_pairs
    return _verify(lambda embed, size, bar: evaluate_image_pairs(pairs, embed, image_size=size,
                                                                 progress=bar)["accuracy_mean"],
                   "validate", progress)


def _verify(evaluate, phase: str, progress: bool):
    def verify(model, task):
        from paenet.evaluation.lfw import embedding_function
        bar = f"{model.task_specs[task - 1].name} {phase}" if progress else None
        return evaluate(embedding_function(model, task), model.image_shape[0], bar)
    return verify


def _normalised(name: str) -> str:
    return name.strip().strip('"').replace(" ", "_").lower()


def identity_names(folder: Path) -> dict[str, str]:
    """Folder name -> person's name from a VGGFace2 ``identity_meta.csv`` in `folder`, its ``meta/``, its
    parent or the parent's ``meta/`` (empty when there is none)."""
    from paenet.datasets.vggface2 import read_identity_meta
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


class FaceLoss:
    """davidsandberg/facenet ``train_softmax.py``'s loss on (logits, prelogits): softmax cross-entropy,
    plus `prelogits_norm_factor` x the batch mean of ``|| |prelogits| + 1e-4 ||_p`` (p = 1), plus
    `center_factor` x the centre loss (``facenet.center_loss``: the mean squared distance of each
    prelogits to its identity's centre, the centres moving towards the batch by 1 - `center_alfa` each step;
    kept in memory, so a resumed run restarts them at zero)."""

    outputs = ("logits", "prelogits")

    def __init__(self, num_classes: int, prelogits_norm_factor: float = PRELOGITS_NORM_FACTOR,
                 center_factor: float = 0.0, center_alfa: float = CENTER_LOSS_ALFA):
        self.num_classes = int(num_classes)
        self.prelogits_norm_factor, self.center_factor = float(prelogits_norm_factor), float(center_factor)
        self.center_alfa = float(center_alfa)
        self.centers = None

    def __call__(self, y, outputs):
        import tensorflow as tf
        logits, prelogits = outputs
        if logits.shape[-1] != self.num_classes:
            raise ValueError(f"the face head has {logits.shape[-1]} classes but the training folder "
                             f"{self.num_classes} identities: create the workspace with the same face_train")
        y = tf.cast(y, tf.int32)
        loss = tf.reduce_mean(tf.nn.sparse_softmax_cross_entropy_with_logits(labels=y, logits=logits))
        loss += self.prelogits_norm_factor * prelogits_norm(prelogits)
        if self.center_factor:
            loss += self.center_factor * self._center_loss(prelogits, y)
        return loss

    def _center_loss(self, prelogits, y):
        import tensorflow as tf
        if self.centers is None:
            with tf.init_scope():
                self.centers = tf.Variable(tf.zeros([self.num_classes, prelogits.shape[-1]]), trainable=False)
        batch_centers = tf.gather(self.centers, y)
        step = (1 - self.center_alfa) * (batch_centers - tf.stop_gradient(prelogits))
        self.centers.scatter_sub(tf.IndexedSlices(step, y))
        return tf.reduce_mean(tf.square(prelogits - batch_centers))


def prelogits_norm(prelogits):
    """The batch mean of ``|| |prelogits| + 1e-4 ||_p`` (train_softmax.py's ``prelogits_norm``, p = 1)."""
    import tensorflow as tf
    return tf.reduce_mean(tf.norm(tf.abs(prelogits) + PRELOGITS_NORM_EPS, ord=PRELOGITS_NORM_P, axis=1))


def training_folder(data_dir, options: dict) -> Path:
    """The face task's training identities: ``options["face_train"]``, default
    ``<data_dir>/vggface2_train_aligned``."""
    return Path(options.get("face_train") or Path(data_dir or real_images.default_data_dir())
                / "vggface2_train_aligned")


def training_images(data_dir, options: dict) -> dict[str, list[Path]]:
    """Identity -> its images, in sorted identity order, of the face task's training folder (one listing of
    it); empty, said once on stderr, when the default folder is not there (the task then prunes without
    retraining); a ``face_train`` folder that is not there is an error."""
    folder = training_folder(data_dir, options)
    if not folder.is_dir():
        if options.get("face_train"):
            raise FileNotFoundError(f"face_train={folder}: no such folder of identities (<identity>/<image>)")
        if folder not in _reported:
            _reported.add(folder)
            logger.warning("%s is not there: the face task is pruned without retraining (give it training "
                           "identities with face_train, see paenet/tasks/face.py)", folder)
        return {}
    images = identity_images(folder)
    if len(images) < 2:
        from paenet.config import UsageError
        raise UsageError(f"face_train={folder}: {len(images)} identities (<identity>/<image> image files); "
                         "softmax training needs 2 or more")
    return images


def training_classes(data_dir, options: dict) -> int:
    """The face head's class count for a new FaceNet workspace: its training identities (0: no head)."""
    return len(training_images(data_dir, options))


def training_data(images: dict[str, list[Path]], context: TaskContext):
    """(endless batches of (crops, identity index), image count): every image of `images` (identity ->
    paths; class k = the k-th identity), the list permuted by the seed before the pipeline's shuffle buffer
    mixes identities further."""
    paths = [p for i in images for p in images[i]]
    labels = np.array([k for k, i in enumerate(images) for _ in images[i]], np.int64)
    order = np.random.default_rng(context.seed).permutation(len(paths))
    source = pipeline.files([paths[i] for i in order], labels[order])
    return pipeline.training_dataset(source, context.batch_size, context.seed, context.image_size,
                                     round(context.image_size * CROP_MARGIN)), len(paths)


def _training(context: TaskContext, val_folder: Path | None) -> dict:
    """The TaskData fields of the face task's training: none without training identities."""
    images = training_images(context.data_dir, context.options)
    if not images:
        return {"train": None, "loss": None, "sizes": {"train": 0}}
    if val_folder is not None and set(images) & {d.name for d in val_folder.iterdir() if d.is_dir()}:
        logger.warning("%s and %s share identities: the face task is selected on people it trains on",
                       training_folder(context.data_dir, context.options), val_folder)
    train, count = training_data(images, context)
    loss = FaceLoss(len(images),
                    float(context.options.get("face_prelogits_norm_factor", PRELOGITS_NORM_FACTOR)),
                    float(context.options.get("face_center_loss_factor", 0.0)))
    return {"train": train, "loss": loss, "sizes": {"train": count, "train_identities": len(images)}}


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
    training = _training(context, val_folder if val_folder.is_dir() else None)
    if val_folder.is_dir():
        test_people = {name for p in test_pairs for name in (p.name1, p.name2)}
        test_people |= {d.name for d in folder.iterdir() if d.is_dir()}
        val, shared = validation_pairs(val_folder, test_people, context.seed,
                                       int(context.options.get("face_val_pairs", VAL_PAIRS_PER_FOLD)))
        if shared:
            logger.info("%s: %d identities also in %s left out of validation", val_folder, len(shared), folder)
        used, _ = resolve_pairs(test_pairs, folder)
        bar = context.progress
        described = {"val": f"{len(val)} pairs drawn from {val_folder}",
                     "test": f"the {len(used)} pairs of {pairs_file} over its {len(folds)} folds"}
        return TaskData(train=training["train"], loss=training["loss"], validate=pair_verifier(val, bar),
                        data=described,
                        test=verifier(folder, pairs_file, progress=bar),
                        roc=verifier(folder, pairs_file, result="roc", phase="ROC", progress=bar),
                        sizes={**training["sizes"], "val_pairs": len(val), "val_identities_left_out": len(shared),
                               "test_pairs": len(used), "test_folds": len(folds)})
    if len(folds) < 4:
        raise ValueError(f"{pairs_file}: {len(folds)} folds, and no validation identities in {val_folder}; the face "
                         "task needs one or the other (face_val, see paenet/tasks/face.py)")
    if val_folder not in _reported:
        _reported.add(val_folder)
        logger.warning("%s is not there: the face task selects on folds 1-%d of %s and tests on the rest, so its "
                       "selection is not independent of its test; give it identities LFW does not hold (face_val)",
                       val_folder, len(folds) // 2, pairs_file)
    half = len(folds) // 2
    described = {"val": f"folds 1-{half} of {pairs_file}", "test": f"folds {half + 1}-{len(folds)} of {pairs_file}"}
    return TaskData(train=training["train"], loss=training["loss"], data=described,
                    validate=verifier(folder, pairs_file, folds[:half], phase="validate",
                                      progress=context.progress),
                    test=verifier(folder, pairs_file, folds[half:], progress=context.progress),
                    roc=verifier(folder, pairs_file, folds[half:], "roc", "ROC", context.progress),
                    sizes={**training["sizes"], "val_folds": half, "test_folds": len(folds) - half})


def import_facenet(settings, name: str):
    """``--base=facenet``: the FaceNet file ``--facenet`` imported as active task 1 "face" of a new
    workspace's network, with a head for the face task's training identities when it has some (its head
    only retrains it), and the workspace config entries that record the import."""
    from paenet.facenet_import import load_facenet
    classes = training_classes(settings.data_dir, settings.task_options)
    imported = load_facenet(settings.facenet, logits=classes, sharing=settings.sharing, name=name)
    model = imported.model
    if settings.bn_momentum is not None:
        model = model.rebuild(bn_momentum=settings.bn_momentum)
    return model, dict(image_size=model.input_size, facenet=str(imported.path), facenet_format=imported.format,
                       bn_momentum=model.bn_momentum)


register_backbone("facenet", InceptionResnetV1, load=import_facenet)
register(TaskDefinition("face", 0, "face verification (FaceNet embedding, retrained on VGGFace2-format identities "
                                   "while pruned, or pruned as imported without them; selected on identities "
                                   "apart from LFW, tested on LFW's 10 folds)", _load))
