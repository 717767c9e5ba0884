"""Tasks by name: what the app can pack, with its data, splits and validation.

A ``TaskDefinition`` turns a ``TaskContext`` (data folder, input size, batch size, seed) into ``TaskData``:
a training dataset, a validation function and an optional test function, each ``f(packer) -> accuracy``
of the packer's active task. Users add their own with ``register`` (see the README); the app imports the
modules named by ``--task_module`` so that their ``register`` calls run.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

import numpy as np

from paenet.data import real_images
from paenet.data.arrays import array_dataset
from paenet.data.splits import stratified_split
from paenet.goal import top1_validator


@dataclasses.dataclass(frozen=True)
class TaskContext:
    data_dir: str | None
    image_size: int
    batch_size: int = 32
    seed: int = 0


@dataclasses.dataclass
class TaskData:
    train: object                   # tf.data.Dataset of (x, y) batches, or None (prune without retraining)
    validate: Callable              # f(packer, task=None) -> accuracy on the validation split
    test: Callable | None = None    # the same on the test split, where the task has one
    loss: object = None             # None: softmax cross-entropy on integer labels


@dataclasses.dataclass(frozen=True)
class TaskDefinition:
    """A packable task: `name`, `num_classes` (0: a feature task without head), a one-line
    `description` and `load(context) -> TaskData`."""

    name: str
    num_classes: int
    description: str
    load: Callable[[TaskContext], TaskData]


_REGISTRY: dict[str, TaskDefinition] = {}


def register(definition: TaskDefinition, replace: bool = False) -> TaskDefinition:
    if definition.name in _REGISTRY and not replace:
        raise ValueError(f"a task named {definition.name!r} is registered already")
    _REGISTRY[definition.name] = definition
    return definition


def get(name: str) -> TaskDefinition:
    if name not in _REGISTRY:
        raise KeyError(f"unknown task {name!r}; registered tasks: {', '.join(sorted(_REGISTRY))}")
    return _REGISTRY[name]


def names() -> list[str]:
    return sorted(_REGISTRY)


def classification_data(images: np.ndarray, labels: np.ndarray, context: TaskContext,
                        val_fraction: float = 0.25) -> TaskData:
    """A seeded, stratified train/validation split of in-memory images, as TaskData. (These sets are too
    small for a separate test split: the validation split selects, and nothing is reported as test.)"""
    train, val = stratified_split(labels, val_fraction, context.seed)
    val_ds = array_dataset(images[val], labels[val], max(context.batch_size, 64))
    return TaskData(train=array_dataset(images[train], labels[train], context.batch_size, training=True,
                                        seed=context.seed),
                    validate=top1_validator(val_ds))


def _real_image_task(name: str, description: str, loader, num_classes: int, relabel=None) -> TaskDefinition:
    def load(context: TaskContext) -> TaskData:
        data = loader(context.data_dir, context.image_size)
        labels = relabel(data) if relabel else data.labels
        return classification_data(data.images, labels, context)
    return TaskDefinition(name, num_classes, description, load)


def _celebs_gender(data) -> np.ndarray:
    female = {"Madonna", "Mindy_Kaling"}
    return np.array([int(data.class_names[l] in female) for l in data.labels], np.int64)


for _definition in (
        _real_image_task("face_nonface", "LFW face crops vs background patches (lfw_subset/)",
                         real_images.face_nonface, 2),
        _real_image_task("ckplus_identity", "the 10 CK+ subjects (ckplus/)", real_images.ckplus_identity, 10),
        _real_image_task("celebs_identity", "the 5 people of celebs/", real_images.celebs_identity, 5),
        _real_image_task("celebs_gender", "gender in celebs/ (fixed by identity: plumbing only)",
                         real_images.celebs_identity, 2, _celebs_gender),
):
    register(_definition)
