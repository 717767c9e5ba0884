"""The paper's tasks on data sets the user downloaded and prepared with ``python -m data_prep.build``.

Data come from the TFDS builders of ``paenet.datasets`` in ``--data_dir`` (TFDS's data folder). The
test split is evaluated once, at the end; model selection (the goal loop's turning point) uses a
validation split that never overlaps it:

* ``age``, ``gender`` (Adience, 8 age groups / 2 genders, the published label rules of
  ``paenet.datasets.adience``): 5-fold cross-validation as Levi & Hassner's protocol. Test fold k
  (``--fold``); the other four folds train, except a validation split carved from them by subject
  (``user_id``; seeded by ``--seed``; subjects in a random order until about 10% of the four folds'
  images), so that no person is both trained on and validated on. The validation subjects are chosen from
  every row, whichever label it has, so age and gender in one workspace (one seed and fold) validate on
  the same subjects: no image the one task validates on is a training image of the other, whose frozen
  weights it reads. Run the five folds as five workspaces
  and average (``experiments/run.py`` does).
* ``expression`` (AffectNet, 7 basic expressions): training the first 95% of its training list,
  validation the last 5% (at least one example), test the official validation set (500 per class). The
  loss weights class c by (N - n_c) / n_c, counted on the training data.
* ``fotw_gender`` (ChaLearn FotW 2016 track 3, male/female/other): training FotW's training split plus
  IMDB-WIKI's gender labels (as the paper), validation FotW's validation split, test FotW's test split
  where the builder has one.
"""
from __future__ import annotations

from paenet.datasets import labels
from paenet.data import pipeline, splits
from paenet.evaluation.classification import top1_validator
from paenet.tasks.registry import TaskContext, TaskData, TaskDefinition, register
from paenet.training import weighted_classification_loss

ADIENCE_VAL_FRACTION = 0.1   # of the four training folds' images, by subject
PAPER_CROP = pipeline.IMAGE_SIZE / pipeline.SOURCE_SIZE   # evaluation: the centre 160 px of faces aligned at 182


def _builder(name: str, context: TaskContext, config: str | None = None):
    from paenet.datasets.builders import BUILDERS
    builder = BUILDERS[name](data_dir=context.data_dir, config=config)
    if not builder.is_prepared():
        raise FileNotFoundError(f"data set {name!r} is not prepared in {builder.data_dir}: run python -m "
                                f"data_prep.build {name} --manual_dir=DIR --data_dir={context.data_dir or '...'}")
    return builder


def _task_data(context: TaskContext, num_classes: int, train: pipeline.ImageSource,
               validation: pipeline.ImageSource, test: pipeline.ImageSource | None, loss=None) -> TaskData:
    def evaluation(source):
        return pipeline.evaluation_dataset(source, max(context.batch_size, 64), context.image_size)
    parts = {"train": train, "val": validation, **({"test": test} if test is not None else {})}
    held_out = {split: evaluation(source) for split, source in parts.items() if split != "train"}
    return TaskData(train=pipeline.training_dataset(train, context.batch_size, context.seed, context.image_size),
                    validate=top1_validator(held_out["val"]),
                    test=top1_validator(held_out["test"]) if test is not None else None, loss=loss,
                    sizes={k: int(pipeline.class_counts(v, num_classes).sum()) for k, v in parts.items()},
                    held_out=held_out)


def _concatenated(sources) -> pipeline.ImageSource:
    first, *rest = sources
    dataset = first.dataset
    for source in rest:
        dataset = dataset.concatenate(source.dataset)
    return pipeline.ImageSource(dataset, first.read)


def _training_folds(test_fold: int) -> str:
    from paenet.datasets.adience import NUM_FOLDS
    if not 0 <= test_fold < NUM_FOLDS:
        raise ValueError(f"Adience has folds 0..{NUM_FOLDS - 1}, not {test_fold}")
    return "+".join(f"fold_{f}" for f in range(NUM_FOLDS) if f != test_fold)


def adience_validation_users(builder, test_fold: int, seed: int) -> list[bytes]:
    """The subjects (``user_id``, sorted) that validate when `test_fold` tests, drawn by `seed` from every
    row of the other four folds whatever its labels: the same for age and gender."""
    import tensorflow_datasets as tfds
    rows = builder.as_dataset(split=_training_folds(test_fold), decoders={"image": tfds.decode.SkipDecoding()})
    users = list(tfds.as_numpy(rows.map(lambda ex: ex["user_id"])))
    _, val = splits.group_split(users, ADIENCE_VAL_FRACTION, seed)
    return sorted({users[i] for i in val})


def adience_sources(builder, test_fold: int, label: str, seed: int):
    """(train, validation, test) sources of Adience feature `label` for test fold `test_fold`: the test
    fold, and the other four folds split by subject (``adience_validation_users``)."""
    import tensorflow as tf
    others = _training_folds(test_fold)
    val_users = tf.constant(adience_validation_users(builder, test_fold, seed))

    def validates(example):
        return tf.reduce_any(tf.equal(example["user_id"], val_users))
    return (pipeline.tfds_split(builder, others, label, seed=seed,
                                where=lambda example: tf.logical_not(validates(example))),
            pipeline.tfds_split(builder, others, label, where=validates),
            pipeline.tfds_split(builder, f"fold_{test_fold}", label))


def _adience(label: str, num_classes: int):
    def load(context: TaskContext) -> TaskData:
        return _task_data(context, num_classes,
                          *adience_sources(_builder("adience", context), context.fold, label, context.seed))
    return load


def _expression(context: TaskContext) -> TaskData:
    builder = _builder("affectnet", context)
    held_out = max(1, round(0.05 * builder.info.splits["train"].num_examples))
    train = pipeline.tfds_split(builder, f"train[:-{held_out}]", "label", seed=context.seed)
    weights = pipeline.class_weights(pipeline.class_counts(train, 7))
    return _task_data(context, 7, train, pipeline.tfds_split(builder, f"train[-{held_out}:]", "label"),
                      pipeline.tfds_split(builder, "validation", "label"), weighted_classification_loss(weights))


def _fotw_gender(context: TaskContext) -> TaskData:
    fotw, imdb = _builder("fotw_gender", context), _builder("imdb_wiki", context)
    train = _concatenated([pipeline.tfds_split(fotw, "train", "gender", seed=context.seed),
                           pipeline.tfds_split(imdb, "train", "gender", seed=context.seed)])
    test = pipeline.tfds_split(fotw, "test", "gender") if "test" in fotw.info.splits else None
    return _task_data(context, 3, train, pipeline.tfds_split(fotw, "validation", "gender"), test)


for _definition in (
        TaskDefinition("age", 8, "Adience age group, 5-fold (--fold = test fold)", _adience("age", 8),
                       labels.ADIENCE_AGE_NAMES, PAPER_CROP),
        TaskDefinition("gender", 2, "Adience gender, 5-fold (--fold = test fold)", _adience("gender", 2),
                       labels.ADIENCE_GENDERS, PAPER_CROP),
        TaskDefinition("expression", 7, "AffectNet 7 basic expressions", _expression,
                       labels.AFFECTNET_EXPRESSIONS, PAPER_CROP),
        TaskDefinition("fotw_gender", 3, "ChaLearn FotW gender (+ IMDB-WIKI for training)", _fotw_gender,
                       labels.FOTW_GENDERS, PAPER_CROP),
):
    register(_definition)
