"""Task sequences over Fashion-MNIST and CIFAR-100 for the continual-learning benchmark, with their backbones.

Every sequence carves one seeded, stratified validation split (``val_fraction`` of each class, 10% by
default) from the training images: the turning point and every selection use it, and the official test
images are evaluated once per task. The sequences (``SEQUENCES``):

* ``split5``: 5 tasks of 2 classes, (0, 1), (2, 3), ... (8, 9), labels remapped to 0/1 in that order;
  28x28x1 images on a small CNN of widths 8-16-32 and 32 dense units (binary tasks need little; the
  convolutions cost 5x the MLP's steps on CPU). Each task's train, val and test sets are the global
  sets' images of its two classes, so its validation split is stratified too.
* ``permuted10``: DEN's protocol, 10 tasks of all 10 classes, each under its own fixed pixel
  permutation (every task permuted, task 1 included, as DEN does), on DEN's masked MLP 784-312-128.
  Every task shares the one train/val split; only the pixel order differs.
* ``permuted20_small``: 20 permuted tasks on a deliberately narrow MLP, 784-24-16, so that a method
  that cannot grow runs out of free weights before the end (``NARROW_MLP`` says why that width; in the
  README's benchmark run PackNet ran out at task 4, PAE at task 9 at its 2x cap).
* ``cifar100_cpg20`` (for GPUs): CPG's CIFAR-100 protocol, 20 tasks of 5 classes, task k the fine classes
  of superclass k - 1 in CIFAR's order (aquatic_mammals, fish, ... vehicles_2, the order of CPG's
  scripts), labels their rank within it; masked VGG16-BN; training batches randomly flipped and cropped
  from 4-pixel padding as CPG's. Read from the ``paenet_cifar100`` TFDS data set that
  ``python -m data_prep.build cifar100 --manual_dir=DIR --data_dir=DATA_DIR`` prepares.
  ``cifar100_resnet18``: the same tasks on the masked CIFAR ResNet-18.

Images stay uint8 in memory (a permuted sequence holds one copy, whatever its length); the tf.data
pipeline gathers a batch, scales it to float32 [0, 1], permutes its pixels or augments it. With ``quick`` a
sequence keeps a seeded, class-balanced few hundred images per task (``QUICK_TRAIN_PER_CLASS``,
``QUICK_TEST_PER_CLASS``, ``CIFAR_QUICK_PER_CLASS``) and narrower backbones: a seconds-long check.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np
import tensorflow as tf

from paenet.data.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_fashion_mnist
from paenet.data.pipeline import element_seeds, epochs
from paenet.data.splits import stratified_split
from paenet.models.base import TaskSpec

VAL_FRACTION = 0.1
QUICK_TRAIN_PER_CLASS = 50
QUICK_TEST_PER_CLASS = 20
CIFAR_QUICK_PER_CLASS = (10, 4)
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

    ``images[split]`` are uint8 [N, H, W(, C)] (shared among the tasks of a permuted sequence, never
    modified), ``labels[split]`` int64 [N]. The network sees them through ``dataset``: float32 in [0, 1],
    pixels reordered by `permutation` (flattened input pixel i is original pixel ``permutation[i]``)
    when there is one, shaped `input_shape`; with `augment`, training batches are flipped and cropped.
    """

    name: str
    class_names: tuple[str, ...]
    input_shape: tuple[int, ...]
    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    permutation: np.ndarray | None = None
    augment: bool = False

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
        """uint8 images → float32 [N, *input_shape] in [0, 1], pixels permuted as this task's."""
        x = tf.cast(images, tf.float32) / 255.0
        if self.permutation is not None:
            x = tf.gather(tf.reshape(x, [-1, len(self.permutation)]), self.permutation, axis=1)
        return tf.reshape(x, [-1, *self.input_shape])

    def dataset(self, split: str, batch_size: int, training: bool = False, seed: int = 0) -> tf.data.Dataset:
        """Batches of (float32 images, int64 labels) from `split`.

        Training: endless, reshuffled every epoch from `seed` (the same stream on every run, augmentation
        included), full batches. Otherwise: every sample once, in order, the last batch kept even if short.
        """
        images = tf.constant(self.images[_check_split(split)])
        labels = tf.constant(self.labels[split])
        order = tf.data.Dataset.range(len(self.labels[split]))
        if training:
            order = epochs(order, len(self.labels[split]), seed)
        order = tf.data.Dataset.zip((order.batch(batch_size, drop_remainder=training), element_seeds(seed)))
        augment = self.augment and training

        def batch(i, batch_seed):
            x = self.prepare(tf.gather(images, i))
            return (flip_and_crop(x, batch_seed) if augment else x), tf.gather(labels, i)

        return order.map(batch, num_parallel_calls=tf.data.AUTOTUNE, deterministic=True).prefetch(tf.data.AUTOTUNE)


def flip_and_crop(images, seed, padding: int = 4) -> tf.Tensor:
    """Each image of the batch [B, H, W, C] flipped left-right with probability 1/2 and cropped back to
    H x W at a uniform offset from its zero-padded copy (CPG's CIFAR augmentation); stateless from `seed`."""
    height, width = images.shape[1], images.shape[2]
    n = tf.shape(images)[0]
    flip = tf.random.stateless_uniform([n, 1, 1, 1], seed) < 0.5
    x = tf.where(flip, tf.reverse(images, axis=[2]), images)
    x = tf.pad(x, [[0, 0], [padding, padding], [padding, padding], [0, 0]])
    offsets = tf.random.stateless_uniform([n, 2], seed + 1, 0, 2 * padding + 1, dtype=tf.int32)
    x = tf.gather(x, offsets[:, :1] + tf.range(height), axis=1, batch_dims=1)
    return tf.gather(x, offsets[:, 1:] + tf.range(width), axis=2, batch_dims=1)


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


@dataclasses.dataclass(frozen=True, eq=False)
class SplitData:
    """A data set split for the sequences: uint8 images and int64 labels by split (``SPLITS``), the class
    names, and for CIFAR-100 each class's superclass (an index into `superclasses`)."""

    images: dict[str, np.ndarray]
    labels: dict[str, np.ndarray]
    class_names: tuple[str, ...]
    superclasses: tuple[str, ...] = ()
    superclass_of: np.ndarray | None = None


@dataclasses.dataclass(frozen=True)
class SequenceSpec:
    """How to make a sequence: its data `source` (``fashion_mnist`` or ``cifar100``), its backbone (full
    and quick widths) and its tasks from the split data."""

    description: str
    source: str
    backbone: str
    backbone_kwargs: dict
    quick_backbone_kwargs: dict
    make_tasks: Callable   # (SplitData, seed) -> list[TaskData]


def _check_split(split: str) -> str:
    if split not in SPLITS:
        raise ValueError(f"split must be one of {SPLITS}, got {split!r}")
    return split


def _class_groups(data: SplitData, groups, names, input_shape, augment: bool = False) -> list[TaskData]:
    """One task per group of classes, holding their images, labelled by rank within the group."""
    tasks = []
    for name, group in zip(names, groups):
        group = np.sort(np.asarray(group))
        chosen = {s: np.isin(data.labels[s], group) for s in SPLITS}
        tasks.append(TaskData(
            name=name, class_names=tuple(data.class_names[c] for c in group), input_shape=input_shape,
            images={s: data.images[s][chosen[s]] for s in SPLITS},
            labels={s: np.searchsorted(group, data.labels[s][chosen[s]]).astype(np.int64) for s in SPLITS},
            augment=augment))
    return tasks


def _split_pairs(data: SplitData, seed: int) -> list[TaskData]:
    pairs = [(a, a + 1) for a in range(0, 10, 2)]
    return _class_groups(data, pairs, [f"classes_{a}_{b}" for a, b in pairs], (28, 28, 1))


def _superclasses(data: SplitData, seed: int) -> list[TaskData]:
    groups = [np.flatnonzero(data.superclass_of == k) for k in range(len(data.superclasses))]
    return _class_groups(data, groups, data.superclasses, (32, 32, 3), augment=True)


def permutations(count: int, seed: int) -> list[np.ndarray]:
    """`count` fixed pixel permutations of 784 pixels, task k's drawn from (seed, k): the same for the
    same seed, whatever `count` (permuted10's are permuted20's first ten)."""
    return [np.random.default_rng([seed, k]).permutation(PIXELS) for k in range(1, count + 1)]


def _permuted(count):
    def make_tasks(data: SplitData, seed: int) -> list[TaskData]:
        return [TaskData(name=f"permutation_{k:02d}", class_names=data.class_names, input_shape=(PIXELS,),
                         images=data.images, labels=data.labels, permutation=p)
                for k, p in enumerate(permutations(count, seed), 1)]
    return make_tasks


SEQUENCES = {
    "split5": SequenceSpec(
        "5 tasks of 2 Fashion-MNIST classes, (0, 1) ... (8, 9), on the small CNN",
        "fashion_mnist", "small_cnn", dict(input_shape=(28, 28, 1), widths=(8, 16, 32), dense_units=32),
        dict(input_shape=(28, 28, 1), widths=(4, 8, 8), dense_units=8), _split_pairs),
    "permuted10": SequenceSpec(
        "10 tasks of the 10 Fashion-MNIST classes under fixed pixel permutations (DEN), on the MLP 784-312-128",
        "fashion_mnist", "mlp", dict(input_shape=(PIXELS,), widths=(312,), dense_units=128),
        dict(input_shape=(PIXELS,), widths=(16,), dense_units=8), _permuted(10)),
    "permuted20_small": SequenceSpec(
        "20 permuted Fashion-MNIST tasks on a narrow MLP 784-24-16 that runs out of free weights",
        "fashion_mnist", "mlp", dict(input_shape=(PIXELS,), **NARROW_MLP),
        dict(input_shape=(PIXELS,), widths=(6,), dense_units=4), _permuted(20)),
    "cifar100_cpg20": SequenceSpec(
        "CPG's CIFAR-100: 20 tasks of the 5 classes of one superclass, on the masked VGG16-BN",
        "cifar100", "vgg16_bn", dict(input_shape=(32, 32, 3)),
        dict(input_shape=(32, 32, 3), widths=(4,) * 13, dense_units=16), _superclasses),
    "cifar100_resnet18": SequenceSpec(
        "CPG's CIFAR-100 sequence on the masked CIFAR ResNet-18", "cifar100", "resnet18",
        dict(input_shape=(32, 32, 3)), dict(input_shape=(32, 32, 3), widths=(4, 4, 8, 8)), _superclasses),
}


def _carve(x_train, y_train, x_test, y_test, seed, val_fraction, quick_per_class=None):
    """(images, labels) by split: ``val`` a seeded stratified `val_fraction` of the training images,
    ``train`` the rest, ``test`` the test images; with `quick_per_class` (train, test), a seeded
    class-balanced subset of that many images per class first."""
    y_train, y_test = np.asarray(y_train, np.int64), np.asarray(y_test, np.int64)
    if quick_per_class:
        rng = np.random.default_rng([seed, 0])
        keep = [np.sort(np.concatenate([rng.permutation(np.flatnonzero(y == c))[:n] for c in np.unique(y)]))
                for y, n in zip((y_train, y_test), quick_per_class)]
        x_train, y_train, x_test, y_test = x_train[keep[0]], y_train[keep[0]], x_test[keep[1]], y_test[keep[1]]
    train, val = stratified_split(y_train, val_fraction, seed)
    return ({"train": x_train[train], "val": x_train[val], "test": x_test},
            {"train": y_train[train], "val": y_train[val], "test": y_test})


def split_fashion_mnist(directory=FASHION_MNIST_DIR, seed: int = 0, val_fraction: float = VAL_FRACTION,
                        quick: bool = False) -> SplitData:
    """Fashion-MNIST from the IDX files in `directory`, split (see ``_carve``)."""
    quick_per_class = (QUICK_TRAIN_PER_CLASS, QUICK_TEST_PER_CLASS) if quick else None
    images, labels = _carve(*load_fashion_mnist(directory), seed, val_fraction, quick_per_class)
    return SplitData(images, labels, FASHION_MNIST_CLASSES)


def split_cifar100(data_dir=None, seed: int = 0, val_fraction: float = VAL_FRACTION, quick: bool = False) -> SplitData:
    """CIFAR-100 from the ``paenet_cifar100`` TFDS data set in `data_dir` (TFDS's default if None), split
    (see ``_carve``); the superclass of each fine class is read off the training labels."""
    import tensorflow_datasets as tfds
    from paenet.datasets.cifar100 import PaenetCifar100
    builder = PaenetCifar100(data_dir=data_dir)
    if not builder.is_prepared():
        raise FileNotFoundError(f"CIFAR-100 is not prepared in {builder.data_dir}: run python -m data_prep.build "
                                f"cifar100 --manual_dir=DIR --data_dir={data_dir or '...'} with DIR holding "
                                "cifar-100-python.tar.gz")
    train, test = (tfds.as_numpy(builder.as_dataset(split=s, batch_size=-1)) for s in ("train", "test"))
    features = builder.info.features
    superclass_of = np.full(features["label"].num_classes, -1, np.int64)
    superclass_of[train["label"]] = train["coarse_label"]
    quick_per_class = CIFAR_QUICK_PER_CLASS if quick else None
    images, labels = _carve(train["image"], train["label"], test["image"], test["label"], seed, val_fraction,
                            quick_per_class)
    return SplitData(images, labels, tuple(features["label"].names), tuple(features["coarse_label"].names),
                     superclass_of)


def load_sequence(name: str, directory=FASHION_MNIST_DIR, seed: int = 0, quick: bool = False,
                  val_fraction: float = VAL_FRACTION, data_dir=None) -> Sequence:
    """Sequence `name` of ``SEQUENCES``: over the Fashion-MNIST files in `directory`, or CIFAR-100's
    TFDS data set in `data_dir`; `seed` fixes the validation split and the permutations."""
    if name not in SEQUENCES:
        raise ValueError(f"unknown task sequence {name!r}; choose one of {sorted(SEQUENCES)}")
    spec = SEQUENCES[name]
    if spec.source == "cifar100":
        data = split_cifar100(data_dir, seed, val_fraction, quick)
    else:
        data = split_fashion_mnist(directory, seed, val_fraction, quick)
    kwargs = spec.quick_backbone_kwargs if quick else spec.backbone_kwargs
    return Sequence(name=name, description=spec.description, backbone=spec.backbone, backbone_kwargs=dict(kwargs),
                    tasks=tuple(spec.make_tasks(data, seed)), seed=seed, quick=quick)
