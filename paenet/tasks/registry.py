"""The task registry: a ``TaskDefinition`` per name.

A definition turns a ``TaskContext`` (data folder, input size, batch size, seed, fold) into ``TaskData``:
a training dataset, a validation function and an optional test function, each ``f(model, task) ->
accuracy`` (evaluators see the model and the task, never the trainer). Users add their own with
``register`` (see the README); the app imports the modules named by ``--task_module`` so that their
``register`` calls run.
"""
from __future__ import annotations

import dataclasses
from typing import Callable



@dataclasses.dataclass(frozen=True)
class TaskContext:
    data_dir: str | None
    image_size: int
    batch_size: int = 32
    seed: int = 0
    fold: int = 0                   # the test fold of a cross-validated data set (Adience)
    options: dict = dataclasses.field(default_factory=dict)   # task-specific settings (face_pairs, ...)
    progress: bool = True          # progress bars over the task's long evaluations


@dataclasses.dataclass
class TaskData:
    train: object                   # tf.data.Dataset of (x, y) batches, or None (prune without retraining)
    validate: Callable              # f(model, task) -> accuracy on the validation split
    test: Callable | None = None    # the same on the test split, where the task has one
    loss: object = None             # None: softmax cross-entropy on integer labels
    sizes: dict = dataclasses.field(default_factory=dict)   # samples per split ("train", "val", "test")
    roc: Callable | None = None     # a verification task's ROC on its test split: f(model, task) -> dict
    data: dict = dataclasses.field(default_factory=dict)   # what each split ("val", "test") is, in words
    class_names: tuple = ()         # names found in the data (e.g. the people of a folder), else the definition's
    # Split ("val", "test") -> the labelled (x, y) batches its evaluators read, so that a model outside PAENet
    # (the int8 LiteRT export) is evaluated on the same held-out images.
    held_out: dict = dataclasses.field(default_factory=dict)


@dataclasses.dataclass(frozen=True)
class TaskDefinition:
    """A packable task: `name`, `num_classes` (0: a feature task without head), a one-line
    `description`, `load(context) -> TaskData` and `class_names` (one per class, in label order; empty
    where only the data knows them, and its ``TaskData.class_names`` gives them)."""

    name: str
    num_classes: int
    description: str
    load: Callable[[TaskContext], TaskData]
    class_names: tuple = ()
    input_crop: float = 1.0         # the share of an image's centred square the task sees (paenet.serving)

    def __post_init__(self):
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"task {self.name!r}: {len(self.class_names)} class names for {self.num_classes} "
                             "classes")

    def spec(self, data: TaskData | None = None):
        """The ``TaskSpec`` this task is packed as: its name, classes and class names (the data's first)."""
        from paenet.models.base import TaskSpec
        names = (data.class_names if data is not None else ()) or self.class_names
        return TaskSpec(self.name, self.num_classes, tuple(names), self.input_crop)


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
