"""Task sequences over Fashion-MNIST for the continual-learning benchmark, with their backbones.

Every sequence carves one seeded, stratified validation split (``val_fraction`` of each class, 10% by
default) from the 60,000 training images: the turning point and every selection use it, and the 10,000
official test images are evaluated once per task. The sequences (``SEQUENCES``):

* ``split5``: 5 tasks of 2 classes, (0, 1), (2, 3), ... (8, 9), labels remapped to 0/1 in that order;
  28x28x1 images on a small CNN of widths 8-16-32 and 32 dense units (binary tasks need little; the
  convolutions cost 5x the MLP's steps on CPU). Each task's train, val and test sets are the global
  sets' images of its two classes, so its validation split is stratified too.
* ``permuted10``: DEN's protocol, 10 tasks of all 10 classes, each under its own fixed pixel
  permutation (every task permuted, task 1 included, as DEN does), on DEN's masked MLP 784-312-128.
  Every task shares the one train/val split; only the pixel order differs.
* ``permuted20_small``: 20 permuted tasks on a deliberately narrow MLP, 784-24-16, so that a method
  that cannot grow runs out of free weights about halfway (``NARROW_MLP`` says why that width).

Images stay uint8 in memory (a permuted sequence holds one copy, whatever its length); the tf.data
pipeline gathers a batch, scales it to float32 [0, 1] and permutes its pixels. With ``quick`` a
sequence keeps a seeded, class-balanced few hundred images (``QUICK_TRAIN_PER_CLASS``,
``QUICK_TEST_PER_CLASS``) and narrower backbones: a seconds-long check, not a measurement.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf

from paenet.data.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_fashion_mnist
from paenet.data.splits import stratified_split
from paenet.models.base import TaskSpec

VAL_FRACTION = 0.1
QUICK_TRAIN_PER_CLASS = 50
QUICK_TEST_PER_CLASS = 20
SPLITS = ("train", "val", "test")
PIXELS = 28 * 28

# permuted20_small's MLP: 784 x 24 + 24 x 16 = 19,200 masked weights. Measured on task 1 (Adam 1e-3,
# batch 128): 0.837 validation accuracy after 600 steps; pruned in place to 50 / 75 / 87.5 / 95%
# (150 retraining steps each) 0.843 / 0.843 / 0.823 / 0.789. With a goal about 2 points under the
# unpruned network a task's turning point is near 87.5%: it keeps ~2,400 weights, so the network holds
# ~8 tasks' worth. A PackNet-like run (each task claims the free weights, 300 steps, pruned to 87.5%,
# 100 more) indeed holds 0.80 for tasks 1-4, falls to 0.73 at task 8 (39% of the weights still free)
# and to 0.54-0.62 for tasks 15-20 (under 16% free): without expansion the later tasks starve. DEN's
# 312-unit first layer (permuted10; measured as 784-312-16) keeps 0.86 at 95% sparsity: 10 tasks fit.
NARROW_MLP = dict(widths=(24,), dense_units=16)


@dataclasses.dataclass(frozen=True, eq=False)
class TaskData:
    """One task: its name, classes, and train/val/test images with labels in 0..num_classes - 1.

    ``images[split]`` are uint8 [N, 28, 28] (shared among the tasks of a permuted sequence, never
    modified), ``labels[split]`` int64 [N]. The network sees them through ``dataset``: float32 in [0, 1],
    pixels reordered by `permutation` (flattened input pixel i is original pixel ``permutation[i]``)
    when there is one, shaped `input_shape`.
    """

    name: str
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    permutation: np.ndarray | None = None

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def spec(self) -> TaskSpec:
        """The task as the network sees it (``Packer.start_task(task.spec)``)."""
        return TaskSpec(self.name, self.num_classes)

    def size(self, split: str) -> int:
        return len(self.labels[_check_split(split)])

    def prepare(self, images) -> tf.Tensor:
        """uint8 [N, 28, 28] → float32 [N, *input_shape] in [0, 1], pixels permuted as this task's."""
        x = tf.reshape(tf.cast(images, tf.float32) / 255.0, [-1, PIXELS])
        if self.permutation is not None:
            x = tf.gather(x, self.permutation, axis=1)
        return tf.reshape(x, [-1, *self.input_shape])

    def dataset(self, split: str, batch_size: int, training: bool = False, seed: int = 0) -> tf.data.Dataset:
        """Batches of (float32 images, int64 labels) from `split`.

        Training: endless, reshuffled every epoch from `seed` (the same stream on every run), full
        batches. Otherwise: every sample once, in order, the last batch kept even if short.
        """
        images = tf.constant(self.images[_check_split(split)])
        labels = tf.constant(self.labels[split])
        order = tf.data.Dataset.range(len(self.labels[split]))
        if training:
            order = order.shuffle(len(self.labels[split]), seed=seed, reshuffle_each_iteration=True).repeat()
        order = order.batch(batch_size, drop_remainder=training)
        return order.map(lambda i: (self.prepare(tf.gather(images, i)), tf.gather(labels, i)),
                         num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


@dataclasses.dataclass(frozen=True, eq=False)
class Sequence:
    """A task sequence and the backbone it runs on: ``backbone`` is a name of
    ``paenet.models.registry`` (``small_cnn``, ``mlp``) and ``backbone_kwargs`` its constructor's
    arguments (``input_shape``, ``widths``, ``dense_units`` ...), without ``tasks`` and ``name``."""

    name: str
    description: str
    backbone: str
    backbone_kwargs: dict
    tasks: tuple[TaskData, ...]
    seed: int
    quick: bool


@dataclasses.dataclass(frozen=True)
class SequenceSpec:
    """How to make a sequence: its backbone (full and quick widths) and its tasks from the split data."""

    description: str
    backbone: str
    backbone_kwargs: dict
    quick_backbone_kwargs: dict
    make_tasks: Callable   # (images, labels, seed) -> list[TaskData]; images, labels: dicts by split


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def _split_pairs(images, labels, seed):
    tasks = []
    for k in range(5):
        pair = (2 * k, 2 * k + 1)
        chosen = {s: np.isin(labels[s], pair) for s in SPLITS}
        tasks.append(TaskData(
            name=f"classes_{pair[0]}_{pair[1]}", class_names=tuple(FASHION_MNIST_CLASSES[c] for c in pair),
            input_shape=(28, 28, 1), images={s: images[s][chosen[s]] for s in SPLITS},
            labels={s: (labels[s][chosen[s]] == pair[1]).astype(np.int64) for s in SPLITS}))
    return tasks


def permutations(count: int, seed: int) -> list[np.ndarray]:
    """`count` fixed pixel permutations of 784 pixels, task k's drawn from (seed, k): the same for the
    same seed, whatever `count` (permuted10's are permuted20's first ten)."""
    return [np.random.default_rng([seed, k]).permutation(PIXELS) for k in range(1, count + 1)]


def _permuted(count):
    def make_tasks(images, labels, seed):
        return [TaskData(name=f"permutation_{k:02d}", class_names=FASHION_MNIST_CLASSES, input_shape=(PIXELS,),
                         images=images, labels=labels, permutation=p)
                for k, p in enumerate(permutations(count, seed), 1)]
    return make_tasks


SEQUENCES = {
    "split5": SequenceSpec(
        "5 tasks of 2 Fashion-MNIST classes, (0, 1) ... (8, 9), on the small CNN",
        "small_cnn", dict(input_shape=(28, 28, 1), widths=(8, 16, 32), dense_units=32),
        dict(input_shape=(28, 28, 1), widths=(4, 8, 8), dense_units=8), _split_pairs),
    "permuted10": SequenceSpec(
        "10 tasks of the 10 Fashion-MNIST classes under fixed pixel permutations (DEN), on the MLP 784-312-128",
        "mlp", dict(input_shape=(PIXELS,), widths=(312,), dense_units=128),
        dict(input_shape=(PIXELS,), widths=(16,), dense_units=8), _permuted(10)),
    "permuted20_small": SequenceSpec(
        "20 permuted Fashion-MNIST tasks on a narrow MLP 784-24-16 that runs out of free weights",
        "mlp", dict(input_shape=(PIXELS,), **NARROW_MLP),
        dict(input_shape=(PIXELS,), widths=(6,), dense_units=4), _permuted(20)),
}


def split_fashion_mnist(directory=FASHION_MNIST_DIR, seed: int = 0, val_fraction: float = VAL_FRACTION,
                        quick: bool = False) -> tuple[dict, dict]:
    """Fashion-MNIST's (images, labels), each a dict by split: ``val`` is a seeded stratified
    `val_fraction` of the training images, ``train`` the rest, ``test`` the official test images
    (with `quick`, a seeded class-balanced subset of each first)."""
    x_train, y_train, x_test, y_test = load_fashion_mnist(directory)
    y_train, y_test = y_train.astype(np.int64), y_test.astype(np.int64)
    if quick:
        rng = np.random.default_rng([seed, 0])
        keep = [np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:n] for c in np.unique(y)]))
                for y, n in ((y_train, QUICK_TRAIN_PER_CLASS), (y_test, QUICK_TEST_PER_CLASS))]
        x_train, y_train, x_test, y_test = x_train[keep[0]], y_train[keep[0]], x_test[keep[1]], y_test[keep[1]]
    train, val = stratified_split(y_train, val_fraction, seed)
    images = {"train": x_train[train], "val": x_train[val], "test": x_test}
    labels = {"train": y_train[train], "val": y_train[val], "test": y_test}
    return images, labels


def load_sequence(name: str, directory=FASHION_MNIST_DIR, seed: int = 0, quick: bool = False,
                  val_fraction: float = VAL_FRACTION) -> Sequence:
    """Sequence `name` of ``SEQUENCES`` over the Fashion-MNIST files in `directory`; `seed` fixes the
    validation split and the permutations."""
    if name not in SEQUENCES:
        raise ValueError(f"unknown task sequence {name!r}; choose one of {sorted(SEQUENCES)}")
    spec = SEQUENCES[name]
    images, labels = split_fashion_mnist(directory, seed, val_fraction, quick)
    kwargs = spec.quick_backbone_kwargs if quick else spec.backbone_kwargs
    return Sequence(name=name, description=spec.description, backbone=spec.backbone, backbone_kwargs=dict(kwargs),
                    tasks=tuple(spec.make_tasks(images, labels, seed)), seed=seed, quick=quick)

