"""Convolution and dense layers whose kernel carries a uint8 task-ownership mask.

Every kernel entry has an owner in a ``uint8`` mask of the kernel's shape: 0 = free, k = task k. The
forward pass of task t reads only its *effective* kernel (DESIGN §1):

* ``sharing="cumulative"`` (PAE, the default): entries owned by tasks 1..t;
* ``sharing="first"``: entries owned by task 1 or by task t;
* a *picking* task t (CPG, ``pick_tasks``): entries owned by task t, plus the entries of tasks 1..t-1 that
  its picking mask selects. The mask is real-valued (``pick_t{t}``, initialised to ``PICK_INIT``) and
  binarised in the forward pass (``> PICK_THRESHOLD``) with a straight-through gradient, so it learns
  which old weights help task t; it is canonicalised to exactly 0/1 when the task finishes.

The forward pass never writes to the kernel or the mask; only the optimizer wrapper (``paenet.optim``)
and the pruner (``paenet.pruning``) do. Biases, where a layer has them, are per task.

After an expansion (``paenet.expansion``) a task finished at a smaller width keeps computing at that
width: ``task_shapes[t - 1]`` holds the kernel shape task t was finished with (None: the full kernel), and
its forward pass reads the leading slice of that shape. Its reduction shapes, and so its bits, never
change, whatever the convolution algorithm chosen for the wider kernel. A model whose inputs to a layer
come in another order than the kernel's rows passes that order with the call (``input_order``).
"""
from __future__ import annotations

import contextlib

import keras
import numpy as np
import tensorflow as tf

from paenet.distribute import worker_local_variables

MAX_TASKS = 255
SHARING_MODES = ("cumulative", "first")
PICK_INIT = 0.01        # CPG's initial picking-mask value (ivclab/CPG: DEFAULT_THRESHOLD * 2)
PICK_THRESHOLD = 0.005  # CPG's binarisation threshold


def check_sharing(sharing: str) -> str:
    if sharing not in SHARING_MODES:
        raise ValueError(f"sharing must be one of {SHARING_MODES}, got {sharing!r}")
    return sharing


def check_task(task, num_tasks: int) -> int:
    """Returns `task` as an int after checking that it names one of tasks 1..num_tasks."""
    if isinstance(task, bool) or not isinstance(task, (int, np.integer)):
        raise TypeError(f"task must be a Python int (a task number), got {task!r}")
    if not 1 <= task <= num_tasks:
        raise ValueError(f"task {task} does not exist: this model has tasks 1..{num_tasks}")
    return int(task)


class FinishedTaskError(RuntimeError):
    """A call would change a finished task's kernel entries, mask, picks, BatchNorm, biases or head."""


def check_unfinished(task: int, frozen_tasks: int, action: str, name: str | None = None) -> int:
    """Returns `task` once it is not one of the finished tasks 1..`frozen_tasks`; FinishedTaskError in one
    line naming the task and the refused `action` otherwise."""
    if task <= frozen_tasks:
        named = f"task {task}" + (f" ({name})" if name else "")
        raise FinishedTaskError(f"{named} is finished: {action} would change it, and a finished task never "
                                "changes (start a new task instead)")
    return task


def check_num_tasks(num_tasks: int) -> int:
    if not 0 <= num_tasks <= MAX_TASKS:
        raise ValueError(
            f"a uint8 ownership mask holds at most {MAX_TASKS} tasks; {num_tasks} were asked for")
    return int(num_tasks)


def leading(shape) -> tuple:
    """The index of the leading slice of `shape` in a tensor at least that large in every dimension."""
    return tuple(slice(0, d) for d in shape)


_RUN_TIME_ZERO = []     # the innermost selection_at_run_time's zero


@contextlib.contextmanager
def selection_at_run_time(zero):
    """Within it, each task's kernel is selected from the whole stored kernel and mask by int32 ops fed by
    `zero` (a uint8 scalar 0 that the graph computes from its input): a converter cannot fold each task's
    kernel into a constant of its own, so a multi-task LiteRT model stores every kernel and mask once
    (``paenet.litert``'s shared layout). The selected values are the same."""
    _RUN_TIME_ZERO.append(zero)
    try:
        yield
    finally:
        _RUN_TIME_ZERO.pop()


_READ_ONCE = []         # the innermost masks_read_once's {id(mask variable): (task, effective, owned)}


@contextlib.contextmanager
def masks_read_once(layers, task: int):
    """Within it, the masks of `layers` are compared with task `task` once, here: the entries the task
    reads (``effective_condition``) and owns (``owned_condition``), which every step traced inside reuses.
    For a compiled loop of training steps, during which no mask changes (the pruner runs between calls):
    two uint8 comparisons a kernel a step fewer, the same values."""
    _READ_ONCE.append({id(l.mask): (task, effective_condition(l.mask, task, l.sharing), owned_condition(l.mask, task))
                       for l in layers})
    try:
        yield
    finally:
        _READ_ONCE.pop()


def _read_once(mask, task: int):
    known = _READ_ONCE[-1].get(id(mask)) if _READ_ONCE else None
    return known[1:] if known is not None and known[0] == task else None


def owned_condition(mask, task: int):
    """Boolean tensor of `mask`'s shape: the entries task `task` owns (``masks_read_once``'s when it holds
    the mask)."""
    known = _read_once(mask, task)
    return known[1] if known is not None else tf.equal(mask, tf.constant(task, tf.uint8))


def _owners(mask, task: int):
    """(`mask`, `task`) as tensors to compare: uint8, or int32 fed by the run-time zero."""
    mask = tf.convert_to_tensor(mask, tf.uint8)
    if not _RUN_TIME_ZERO:
        return mask, tf.constant(task, tf.uint8)
    return tf.cast(tf.bitwise.bitwise_xor(mask, _RUN_TIME_ZERO[-1]), tf.int32), tf.constant(task, tf.int32)


def effective_condition(mask, task: int, sharing: str = "cumulative"):
    """Boolean tensor of `mask`'s shape: the kernel entries that task `task` reads."""
    check_sharing(sharing)
    mask, t = _owners(mask, task)
    if sharing == "cumulative":
        return (mask >= 1) & (mask <= t)
    return (mask == 1) | (mask == t)


def effective_kernel(kernel, mask, task: int, sharing: str = "cumulative"):
    """The kernel task `task` uses: its entries, with every other entry +0.0 (never -0.0)."""
    kernel = tf.convert_to_tensor(kernel)
    return tf.where(effective_condition(mask, task, sharing), kernel, tf.zeros([], kernel.dtype))


@tf.custom_gradient
def binarize_picks(picks):
    """1.0 where a picking mask is above ``PICK_THRESHOLD``, else 0.0; the gradient passes straight
    through (CPG's binariser)."""
    bits = tf.cast(picks > PICK_THRESHOLD, picks.dtype)
    return bits, lambda upstream: upstream


def picked_kernel(kernel, mask, task: int, picks):
    """The kernel of picking task `task`: its own entries, plus the entries of tasks 1..task-1 where
    `picks` binarises to 1; every other entry +0.0. Gradients reach `picks` through the old entries.

    Written as a sum of two disjoint terms so that the value is exact: an own entry adds +0.0 from the
    other term, and an unpicked old entry is ±0.0 + +0.0 = +0.0.
    """
    kernel = tf.convert_to_tensor(kernel)
    mask, t = _owners(mask, task)
    zero = tf.zeros([], kernel.dtype)
    own = tf.where(mask == t, kernel, zero)
    old = tf.where((mask >= 1) & (mask < t), kernel, zero)
    return own + old * tf.cast(binarize_picks(tf.convert_to_tensor(picks)), kernel.dtype)


def permuted_rows(kernel, order):
    """`kernel` with row ``order[i]`` of its input axis (the second to last) as row i. The gradient is the
    inverse permutation (a gather's own gradient would be a scatter)."""
    axis = len(kernel.shape) - 2
    inverse = np.argsort(order)

    @tf.custom_gradient
    def permute(k):
        return tf.gather(k, order, axis=axis), lambda upstream: tf.gather(upstream, inverse, axis=axis)

    return permute(kernel)


class MaskedKernelLayer(keras.layers.Layer):
    """Base of the masked layers: a float kernel, its uint8 mask and optional per-task biases.

    Subclasses give the kernel's shape and the op that applies it.
    """

    def __init__(self, units: int, use_bias: bool = False, num_tasks: int = 1,
                 sharing: str = "cumulative", kernel_initializer="glorot_uniform",
                 bias_initializer="zeros", **kwargs):
        super().__init__(**kwargs)
        if units < 1:
            raise ValueError(f"{self.name}: the number of output units must be positive, got {units}")
        self.units = int(units)
        self.use_bias = bool(use_bias)
        self.num_tasks = check_num_tasks(num_tasks)
        self.sharing = check_sharing(sharing)
        self.kernel_initializer = keras.initializers.get(kernel_initializer)
        self.bias_initializer = keras.initializers.get(bias_initializer)
        # Both set by the model before it builds the layer (PackableModel), not part of the layer config.
        self.task_shapes = ()
        self.pick_tasks = ()
        self.frozen_tasks = 0       # tasks 1..frozen_tasks are finished (PackableModel.frozen_tasks)

    def kernel_shape(self, input_shape) -> tuple:
        raise NotImplementedError

    def apply_kernel(self, inputs, kernel):
        raise NotImplementedError

    def build(self, input_shape):
        shape = self.kernel_shape(input_shape)
        self.kernel = self.add_weight(name="kernel", shape=shape, initializer=self.kernel_initializer)
        with worker_local_variables():      # no collective broadcasts uint8 (paenet.distribute)
            self.mask = self.add_weight(name="mask", shape=shape, dtype="uint8", initializer="zeros",
                                        trainable=False)
        for t in range(1, self.num_tasks + 1):
            if self.use_bias:
                setattr(self, f"bias_t{t}", self.add_weight(
                    name=f"bias_t{t}", shape=(self.units,), initializer=self.bias_initializer))
        for t in self.pick_tasks:
            # float32 under any policy: a bf16 mask could not hold 0.01 against a 0.005 threshold exactly.
            setattr(self, f"pick_t{t}", self.add_weight(
                name=f"pick_t{t}", shape=shape, initializer=keras.initializers.Constant(PICK_INIT),
                dtype="float32", autocast=False))

    def pick_variable(self, task: int):
        """Task `task`'s picking mask, or None when the task does not pick."""
        check_task(task, self.num_tasks)
        return getattr(self, f"pick_t{task}") if task in self.pick_tasks else None

    def pickable(self, task: int) -> np.ndarray:
        """Where task `task` may pick, at the shape it computes with: the entries of tasks 1..task-1."""
        mask = self.mask.numpy()[leading(self.task_shape(task))]
        return (mask >= 1) & (mask < task)

    def pick_bits(self, task: int) -> np.ndarray | None:
        """Task `task`'s binarised picking mask over the entries it may pick from, at the shape it computes
        with (bool; False elsewhere), or None when the task does not pick."""
        picks = self.pick_variable(task)
        if picks is None:
            return None
        return (picks.numpy()[leading(self.task_shape(task))] > PICK_THRESHOLD) & self.pickable(task)

    def store_pick_bits(self, task: int, bits: np.ndarray) -> None:
        """Sets task `task`'s picking mask to exactly 1.0 where `bits` (over the entries it may pick from,
        at its shape) and 0.0 everywhere else: how a finished task's picks are kept (refused once it
        is finished)."""
        check_unfinished(check_task(task, self.num_tasks), self.frozen_tasks, "store_pick_bits")
        picks = self.pick_variable(task)
        value = np.zeros(picks.shape, np.float32)
        value[leading(bits.shape)] = bits & self.pickable(task)
        picks.assign(value)

    def task_variables(self, task: int) -> list:
        """The variables that belong to `task` alone (its bias, if any)."""
        check_task(task, self.num_tasks)
        return [getattr(self, f"bias_t{task}")] if self.use_bias else []

    def task_shape(self, task: int) -> tuple:
        """The kernel shape task `task` computes with."""
        check_task(task, self.num_tasks)
        shape = self.task_shapes[task - 1] if task <= len(self.task_shapes) else None
        return tuple(shape) if shape else tuple(self.kernel.shape)

    def effective_kernel(self, task: int):
        """Task `task`'s effective kernel, at the shape it computes with."""
        shape = self.task_shape(task)
        kernel, mask, picks = self.kernel, self.mask, self.pick_variable(task)
        if shape != tuple(kernel.shape) and _RUN_TIME_ZERO and picks is None:   # from the whole stored kernel
            return effective_kernel(kernel, mask, task, self.sharing)[leading(shape)]
        if shape != tuple(kernel.shape):
            kernel, mask = tf.convert_to_tensor(kernel)[leading(shape)], tf.convert_to_tensor(mask)[leading(shape)]
            picks = None if picks is None else tf.convert_to_tensor(picks)[leading(shape)]
        if picks is not None:
            return picked_kernel(kernel, mask, task, picks)
        known = _read_once(mask, task)
        if known is not None:
            return tf.where(known[0], kernel, tf.zeros([], kernel.dtype))
        return effective_kernel(kernel, mask, task, self.sharing)

    def call(self, inputs, task: int, input_order=None):
        """Task `task`'s output; `input_order` (see ``permuted_rows``), when given, is the order in which
        the inputs' channels meet the kernel's rows."""
        kernel = self.effective_kernel(task)
        if input_order is not None:
            kernel = permuted_rows(kernel, input_order)
        if inputs.shape[-1] != kernel.shape[-2]:
            raise ValueError(f"{self.name}: task {task} computes with a kernel of shape {tuple(kernel.shape)} "
                             f"but got inputs of shape {tuple(inputs.shape)}")
        outputs = self.apply_kernel(inputs, kernel)
        if self.use_bias:
            outputs = tf.nn.bias_add(outputs, getattr(self, f"bias_t{task}")[: kernel.shape[-1]])
        return outputs

    def get_config(self):
        return {
            **super().get_config(),
            "use_bias": self.use_bias,
            "num_tasks": self.num_tasks,
            "sharing": self.sharing,
            "kernel_initializer": keras.initializers.serialize(self.kernel_initializer),
            "bias_initializer": keras.initializers.serialize(self.bias_initializer),
        }


def _pair(value, what: str) -> tuple[int, int]:
    pair = (value, value) if isinstance(value, int) else tuple(int(v) for v in value)
    if len(pair) != 2 or min(pair) < 1:
        raise ValueError(f"{what} must be a positive int or a pair of them, got {value!r}")
    return pair


@keras.saving.register_keras_serializable(package="paenet")
class MaskedConv2D(MaskedKernelLayer):
    """2-D convolution (NHWC) over a masked kernel of shape [kh, kw, in, filters]."""

    def __init__(self, filters: int, kernel_size, strides=1, padding: str = "same", **kwargs):
        super().__init__(units=filters, **kwargs)
        self.filters = self.units
        self.kernel_size = _pair(kernel_size, "kernel_size")
        self.strides = _pair(strides, "strides")
        if padding.lower() not in ("same", "valid"):
            raise ValueError(f"padding must be 'same' or 'valid', got {padding!r}")
        self.padding = padding.lower()

    def kernel_shape(self, input_shape):
        if len(input_shape) != 4 or input_shape[-1] is None:
            raise ValueError(f"{self.name} expects NHWC inputs with known channels, got {input_shape}")
        return (*self.kernel_size, int(input_shape[-1]), self.filters)

    def apply_kernel(self, inputs, kernel):
        return tf.nn.conv2d(inputs, kernel, strides=(1, *self.strides, 1), padding=self.padding.upper())

    def compute_output_shape(self, input_shape):
        n, h, w, _ = input_shape

        def out(size, k, s):
            if size is None:
                return None
            return -(-size // s) if self.padding == "same" else (size - k) // s + 1

        return (n, out(h, self.kernel_size[0], self.strides[0]),
                out(w, self.kernel_size[1], self.strides[1]), self.filters)

    def get_config(self):
        return {**super().get_config(), "filters": self.filters, "kernel_size": self.kernel_size,
                "strides": self.strides, "padding": self.padding}


@keras.saving.register_keras_serializable(package="paenet")
class MaskedDense(MaskedKernelLayer):
    """Dense layer over a masked kernel of shape [in, units]; inputs of rank 2."""

    def kernel_shape(self, input_shape):
        if len(input_shape) != 2 or input_shape[-1] is None:
            raise ValueError(f"{self.name} expects [batch, features] inputs, got {input_shape}")
        return (int(input_shape[-1]), self.units)

    def apply_kernel(self, inputs, kernel):
        return tf.matmul(inputs, kernel)

    def compute_output_shape(self, input_shape):
        return (input_shape[0], self.units)

    def get_config(self):
        return {**super().get_config(), "units": self.units}
