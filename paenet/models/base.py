"""The base of every PAENet network: masked kernels shared among tasks, per-task parts, task list in config.

A model's config names its tasks (``TaskSpec``: a name and a class count). Per-task variables are created
at build time for every task in the config, so a model gains a task by being rebuilt with a longer task
list; ``with_tasks`` does that and transplants every existing value bit for bit.

Its width config (``width_config()``: filters per expandable masked layer, keyed by layer key) can grow
the same way (``with_width_config``, used by ``paenet.expansion``): old values go to the leading slice of
each wider variable, and ``frozen_shapes`` records the kernel shape every earlier task computes with.
"""
from __future__ import annotations

import contextlib
import dataclasses

import keras
import tensorflow as tf

from paenet.layers import MaskedKernelLayer, TaskBatchNorm, TaskHeads, check_task, check_unfinished
from paenet.layers.masked import MAX_TASKS, check_sharing, leading


TASK_PARTS = (MaskedKernelLayer, TaskBatchNorm, TaskHeads)      # the layers holding per-task variables


@contextlib.contextmanager
def dtype_policy(policy):
    """Keras' global dtype policy set to `policy` (a name or a policy) for the duration."""
    previous = keras.config.dtype_policy()
    keras.config.set_dtype_policy(policy)
    try:
        yield
    finally:
        keras.config.set_dtype_policy(previous)

@dataclasses.dataclass(frozen=True)
class TaskSpec:
    """A task as the network sees it: a name, its number of classes (0: a feature task, no head) and,
    where known, the name of each class (what exports, predictions and reports show instead of indices)."""

    name: str
    num_classes: int = 0
    class_names: tuple = ()
    input_crop: float = 1.0         # the share of an image's centred square the task sees (paenet.serving)

    def __post_init__(self):
        if not self.name or not isinstance(self.name, str):
            raise ValueError(f"a task needs a non-empty name, got {self.name!r}")
        if self.num_classes < 0:
            raise ValueError(f"task {self.name!r}: num_classes must be >= 0, got {self.num_classes}")
        object.__setattr__(self, "class_names", tuple(str(c) for c in self.class_names))
        if self.class_names and len(self.class_names) != self.num_classes:
            raise ValueError(f"task {self.name!r}: {len(self.class_names)} class names for {self.num_classes} "
                             f"classes: {list(self.class_names)}")
        if not 0 < self.input_crop <= 1:
            raise ValueError(f"task {self.name!r}: input_crop must be in (0, 1], got {self.input_crop}")

    def label(self, index: int) -> str:
        """Class `index`'s name, or the index as text where the task has no names."""
        return self.class_names[index] if self.class_names else str(index)

    def to_dict(self) -> dict:
        """The spec as JSON-able fields, without the ones at their defaults (so older specs read the same)."""
        d = {"name": self.name, "num_classes": self.num_classes}
        if self.class_names:
            d["class_names"] = list(self.class_names)
        if self.input_crop != 1.0:
            d["input_crop"] = self.input_crop
        return d

    @classmethod
    def from_dict(cls, d) -> "TaskSpec":
        return d if isinstance(d, cls) else cls(**d)


def given(settings, *names: str) -> dict:
    """The app's settings among `names` that have a value (not None), by name: the constructor keywords
    of a backbone that reads them under their own names."""
    return {n: getattr(settings, n) for n in names if getattr(settings, n) is not None}


def variable_key(variable) -> str:
    """A variable's name inside its model, without the model's own name (stable across rebuilds)."""
    return variable.path.split("/", 1)[-1]


def keyed_variables(model) -> dict:
    """Every variable of `model` by its key; two variables with one key are an error (they would
    overwrite each other in a checkpoint or a transplant)."""
    keyed = {}
    for v in model.variables:
        key = variable_key(v)
        if key in keyed:
            raise ValueError(f"{model.name}: two variables share the key {key!r} ({keyed[key].path}, {v.path}); "
                             "give their layers distinct names")
        keyed[key] = v
    return keyed


def layer_key(layer) -> str:
    """A masked layer's name inside its model: its kernel's key without ``/kernel``."""
    return variable_key(layer.kernel).rsplit("/", 1)[0]


class PackableModel(keras.Model):
    """A network of masked layers whose forward pass is chosen per call: ``model(x, task=k)``.

    Subclasses create their layers in ``__init__`` (passing ``num_tasks`` and ``sharing`` down), implement
    ``call(inputs, task, training)`` and extend ``get_config``.
    """

    # The backbone's own options for the app (``--backbone_option=NAME=VALUE``), beside those its
    # settings give (``settings_arguments``): constructor keywords with defaults, whose types read values.
    OPTIONS: dict = {}

    @classmethod
    def settings_arguments(cls, settings) -> dict:
        """Constructor keywords that the app's settings (``paenet.config.Settings``) give a new
        workspace's network: its input shape; a subclass adds the settings it reads."""
        return {"input_shape": (settings.image_size, settings.image_size, 3)}

    def __init__(self, tasks=(), sharing: str = "cumulative", input_shape=(64, 64, 3), frozen_shapes=None,
                 pick_tasks=(), frozen_tasks: int = 0, task_digests=(), **kwargs):
        super().__init__(**kwargs)
        # Tasks 1 .. frozen_tasks are finished: a call for one of them never trains (``__call__``), and
        # every public writer refuses them (``check_unfinished``). ``task_digests`` are their records'
        # digests, held so that a model checks itself where no records are at hand (``records.verify``).
        self.frozen_tasks = int(frozen_tasks)
        self.task_digests = tuple(task_digests)
        self.task_specs = tuple(TaskSpec.from_dict(t) for t in tasks)
        if len(self.task_specs) > MAX_TASKS:
            raise ValueError(f"at most {MAX_TASKS} tasks fit a uint8 ownership mask; "
                             f"{len(self.task_specs)} were given")
        names = [t.name for t in self.task_specs]
        if len(set(names)) != len(names):
            raise ValueError(f"task names must be unique, got {names}")
        self.sharing = check_sharing(sharing)
        # Tasks that read older tasks' weights through a learned picking mask (CPG) instead of all of them.
        self.pick_tasks = tuple(sorted(int(t) for t in pick_tasks))
        if any(not 2 <= t <= len(self.task_specs) for t in self.pick_tasks):
            raise ValueError(f"picking tasks must be among tasks 2..{len(self.task_specs)}, got {self.pick_tasks}")
        if self.pick_tasks and self.sharing != "cumulative":
            raise ValueError("picking chooses among all older tasks' weights: it needs sharing='cumulative'")
        self.image_shape = tuple(int(d) for d in input_shape)
        # What earlier tasks computed with before an expansion widened the network:
        # "kernels": {layer key: [kernel shape of task 1 or None (the full kernel), ...]},
        # "variables": {variable key: shape} for task-specific variables that grew since their task ended.
        frozen_shapes = frozen_shapes or {}
        self.frozen_shapes = {
            "kernels": {k: [list(s) if s else None for s in v] for k, v in frozen_shapes.get("kernels", {}).items()},
            "variables": {k: list(s) for k, s in frozen_shapes.get("variables", {}).items()}}

    def __call__(self, *args, **kwargs):
        """``model(x, task=k, training=True)`` for a finished task k runs in inference mode: nothing of
        k changes (its BatchNorm moving statistics stay), and it computes what it was recorded with."""
        task = kwargs.get("task")        # (Keras takes only tensors positionally)
        if kwargs.get("training") and isinstance(task, int) and task <= self.frozen_tasks:
            kwargs["training"] = False
        return super().__call__(*args, **kwargs)

    @property
    def frozen_tasks(self) -> int:
        return self._frozen_tasks

    @frozen_tasks.setter
    def frozen_tasks(self, value: int):
        self._frozen_tasks = int(value)
        for layer in self._flatten_layers(include_self=False):
            if isinstance(layer, (MaskedKernelLayer, TaskBatchNorm)):
                layer.frozen_tasks = self._frozen_tasks      # the layers' own guards read it

    def mark_finished(self, records) -> None:
        """Tasks 1..len(`records`) are finished from now on, with the digests of their ``TaskRecord``s."""
        self.task_digests = tuple(r.digest for r in records)
        self.frozen_tasks = len(records)

    def check_unfinished(self, task, action: str) -> int:
        """`task`, checked, once it is not finished; FinishedTaskError naming it and `action` otherwise."""
        task = self.check_task(task)
        return check_unfinished(task, self.frozen_tasks, action, self.task_specs[task - 1].name)

    @property
    def num_tasks(self) -> int:
        return len(self.task_specs)

    def check_task(self, task) -> int:
        return check_task(task, self.num_tasks)

    def task_number(self, name: str) -> int:
        for t, spec in enumerate(self.task_specs, start=1):
            if spec.name == name:
                return t
        raise KeyError(f"no task named {name!r}; this model has {[t.name for t in self.task_specs]}")

    def masked_layers(self) -> list[MaskedKernelLayer]:
        """Every built layer whose kernel carries an ownership mask, in creation order (none before the
        model has a task to build for)."""
        return [l for l in self._flatten_layers(include_self=False)
                if isinstance(l, MaskedKernelLayer) and l.built]

    def pick_variables(self, task: int) -> list:
        """Task `task`'s picking masks, one per masked layer (none when the task does not pick)."""
        self.check_task(task)
        return [l.pick_variable(task) for l in self.masked_layers() if task in self.pick_tasks]

    def task_variables(self, task: int, trainable_only: bool = False) -> list:
        """The variables task `task` owns alone: BatchNorm, biases, head."""
        self.check_task(task)
        found = []
        for layer in self._flatten_layers(include_self=False):
            if isinstance(layer, TASK_PARTS) and layer.built:
                found += [v for v in layer.task_variables(task) if v.trainable or not trainable_only]
        return found

    def inherit_task_parts(self, source: int, target: int) -> None:
        """Sets task `target`'s BatchNorm and biases to task `source`'s values (heads stay as they are):
        with claimed weights at 0.0, task `target` then starts computing task `source`'s features."""
        self.check_task(source)
        self.check_unfinished(target, "inherit_task_parts")
        for layer in self._flatten_layers(include_self=False):
            if isinstance(layer, TASK_PARTS) and layer.built and not isinstance(layer, TaskHeads):
                for src, dst in zip(layer.task_variables(source), layer.task_variables(target)):
                    assign_leading(dst, src.numpy())    # `dst` may be wider: `source` finished narrower

    def task_values(self, task: int) -> dict:
        """Task `task`'s own variables by key, as arrays of the shapes the task computes with."""
        values = {}
        for v in self.task_variables(task):
            key, value = variable_key(v), v.numpy()
            shape = self.frozen_shapes["variables"].get(key)
            values[key] = value[leading(shape)] if shape else value
        return values

    def checkpoint_variables(self) -> dict:
        """Every variable by its key, for ``tf.train.Checkpoint(variables=...)``.

        A flat mapping checkpoints every variable however the layers are nested or held (the object
        graph of a Keras model skips layers kept in Python lists).
        """
        return {key: v.value for key, v in keyed_variables(self).items()}

    def build(self, input_shape=None):
        """Creates every variable by one inference pass of task 1 on zeros (a model without tasks has
        nothing to build). Keras calls this on first use and when deserialising a built model."""
        if not self.num_tasks:
            return
        for layer in self._flatten_layers(include_self=False):
            if isinstance(layer, MaskedKernelLayer):
                layer.pick_tasks = self.pick_tasks
        self.frozen_tasks = self.frozen_tasks       # reaches the layers made since
        self.call(tf.zeros((1, *self.image_shape)), task=self.num_tasks, training=False)
        for layer in self.masked_layers():
            shapes = self.frozen_shapes["kernels"].get(layer_key(layer), [])
            layer.task_shapes = tuple(tuple(s) if s else None for s in shapes)

    def build_variables(self):
        """Builds the model if it is not built yet; returns it."""
        if not self.built:
            self.build()
        return self

    def build_from_config(self, config):
        """Creates every variable when Keras deserialises a built model (Keras marks the model built
        afterwards, so a later ``build_variables`` would create nothing)."""
        self.build_variables()

    def with_tasks(self, tasks, pick_tasks=None) -> "PackableModel":
        """A new model like this one with the task list `tasks` (and, if given, the picking tasks
        `pick_tasks`), holding every value of this one. It keeps every finished task as it is: one
        renamed, dropped or made to pick (or not) is refused (FinishedTaskError)."""
        tasks = [TaskSpec.from_dict(t) for t in tasks]
        for t in range(1, self.frozen_tasks + 1):
            picking = t in (self.pick_tasks if pick_tasks is None else pick_tasks)
            if t > len(tasks) or tasks[t - 1] != self.task_specs[t - 1] or picking != (t in self.pick_tasks):
                self.check_unfinished(t, "with_tasks")
        changes = {"tasks": [t.to_dict() for t in tasks]}
        if pick_tasks is not None:
            changes["pick_tasks"] = list(pick_tasks)
        return self.rebuild(**changes)

    def rebuild(self, **config_changes) -> "PackableModel":
        """A new built model from this one's config with `config_changes`, values transplanted exactly."""
        with dtype_policy(self.dtype_policy):               # the new model computes as this one does
            new = type(self).from_config({**self.get_config(), **config_changes}).build_variables()
        if self.built:
            copy_values(self, new)
        return new

    def width_config(self) -> dict[str, int]:
        """Filters of every expandable masked layer, by layer key."""
        raise NotImplementedError(f"{type(self).__name__}: every backbone implements this")

    def with_width_config(self, widths: dict[str, int], frozen_shapes: dict) -> "PackableModel":
        """A new model with these widths and frozen shapes, holding every value of this one."""
        raise NotImplementedError(f"{type(self).__name__}: every backbone implements this")

    def get_config(self):
        return {"name": self.name, "tasks": [t.to_dict() for t in self.task_specs],
                "sharing": self.sharing, "input_shape": list(self.image_shape),
                "frozen_shapes": self.frozen_shapes, "pick_tasks": list(self.pick_tasks),
                "frozen_tasks": self.frozen_tasks, "task_digests": list(self.task_digests),
                "dtype_policy": self.dtype_policy.name}

    @classmethod
    def from_config(cls, config):
        """The model of `config`, built under the dtype policy it was saved with (a ``.keras`` file
        loaded in a process under another policy computes as its tasks were recorded)."""
        config = dict(config)
        policy = config.pop("dtype_policy", None)
        with dtype_policy(policy or keras.config.dtype_policy()):
            return cls(**config)


def copy_values(src: keras.Model, dst: keras.Model):
    """Copies every variable of `src` into the leading slice of the variable of the same key in `dst`,
    bit for bit (the whole variable when the shapes are equal).

    The rest of a wider `dst` variable keeps its initial value (an expansion's new weights: mask 0, the
    initializer's values), and so do `dst` variables that `src` lacks (a new task's fresh parts). A `src`
    variable without a place in `dst`, or a narrower one, is an error: nothing is dropped silently.
    """
    targets = keyed_variables(dst)
    for key, v in keyed_variables(src).items():
        if key not in targets:
            raise ValueError(f"variable {key!r} of {src.name} has no counterpart in {dst.name}")
        old_shape, new_shape = tuple(v.shape), tuple(targets[key].shape)
        if len(old_shape) != len(new_shape) or any(o > n for o, n in zip(old_shape, new_shape)):
            raise ValueError(f"variable {key!r}: shape {old_shape} in {src.name} does not fit "
                             f"{new_shape} in {dst.name}")
        assign_leading(targets[key], v.numpy())


def assign_leading(variable, value) -> None:
    """Writes `value` into the leading slice of `variable` (all of it when the shapes are equal); the
    rest of a larger `variable` keeps its values."""
    if tuple(variable.shape) != value.shape:
        grown = variable.numpy()
        grown[leading(value.shape)] = value
        value = grown
    variable.assign(value)
