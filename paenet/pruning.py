"""Gradual magnitude pruning of the active task: Zhu & Gupta's cubic schedule and an exact per-layer pruner.

DESIGN §3. A task's *space* in a layer is every weight it may release: those it owns plus those already
released (mask 0) since its pruning phase began. A pruning step with target sparsity s leaves exactly
``floor(s * N_L + 0.5)`` of the space released in layer L, counted from the phase's start. Weights go in
the order (already released first, |w|, flat index) ascending, so ties fall to the lower flat index and
successive steps are monotone. Released weights are set to exactly 0.0 with mask 0; weights of other
tasks are never candidates and never written.

Speed (DESIGN §8: a whole Inception-ResNet-v1 update under 100 ms on CPU, after 20 tasks too): the pruner
reads each variable as a view of TensorFlow's buffer through a handle looked up once, selects with one integer
partition in scratch arrays reused by every layer and step, writes arrays that TensorFlow adopts without
a copy (recycled once nothing references them), and skips layers that a step leaves unchanged. Where the
task's space is under half of a layer (a network shared by many tasks) it keeps the space's indices from
the phase's start and reads, partitions and writes those entries alone.
"""
from __future__ import annotations

import dataclasses
import math
import sys

import numpy as np
import tensorflow as tf

from paenet.models.base import layer_key


@dataclasses.dataclass(frozen=True)
class CubicSchedule:
    """Target sparsity over training steps (Zhu & Gupta 2017).

    ``s(t) = s_f + (s_i - s_f) * (1 - (t - t0) / (t_end - t0)) ** power`` for t in [t0, t_end]. Pruning
    happens at t0, t0 + frequency, ... and at t_end itself (so the final target is always reached);
    steps outside [t0, t_end] prune nothing.
    """

    begin_step: int
    end_step: int
    frequency: int = 1
    initial_sparsity: float = 0.0
    final_sparsity: float = 0.5
    power: int = 3

    def __post_init__(self):
        if not 0 <= self.begin_step <= self.end_step:
            raise ValueError(f"need 0 <= begin_step <= end_step, got {self.begin_step}, {self.end_step}")
        if self.frequency < 1:
            raise ValueError(f"frequency must be >= 1, got {self.frequency}")
        if not 0.0 <= self.initial_sparsity <= self.final_sparsity <= 1.0:
            raise ValueError("need 0 <= initial_sparsity <= final_sparsity <= 1, got "
                             f"{self.initial_sparsity}, {self.final_sparsity}")
        if self.power < 1:
            raise ValueError(f"power must be >= 1, got {self.power}")

    def sparsity(self, step: int) -> float:
        """s(step), held at the initial value before t0 and at the final value after t_end."""
        if step <= self.begin_step:
            return self.initial_sparsity if self.end_step > self.begin_step else self.final_sparsity
        if step >= self.end_step:
            return self.final_sparsity
        progress = (step - self.begin_step) / (self.end_step - self.begin_step)
        return self.final_sparsity + (self.initial_sparsity - self.final_sparsity) * (1.0 - progress) ** self.power

    def target(self, step: int) -> float | None:
        """The sparsity to prune to at `step`, or None where the schedule does not prune."""
        if not self.begin_step <= step <= self.end_step:
            return None
        if (step - self.begin_step) % self.frequency and step != self.end_step:
            return None
        return self.sparsity(step)

    def get_config(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_config(cls, config: dict) -> "CubicSchedule":
        return cls(**config)


def round_schedules(targets, steps_per_round: int, prune_steps: int, frequency: int) -> list[CubicSchedule]:
    """PAE's rounds: round i prunes from targets[i-1] (0 before the first) to targets[i] every
    `frequency` steps over its first `prune_steps` steps, then retrains to `steps_per_round`."""
    if not 0 <= prune_steps < steps_per_round:
        raise ValueError(f"need 0 <= prune_steps < steps_per_round, got {prune_steps}, {steps_per_round}")
    schedules, previous = [], 0.0
    for target in targets:
        schedules.append(CubicSchedule(0, prune_steps, frequency, previous, target))
        previous = target
    return schedules


def release_count(sparsity: float, space: int) -> int:
    """How many of a layer's `space` weights are released at target `sparsity`: floor(s * N + 0.5)."""
    if not 0.0 <= sparsity <= 1.0:
        raise ValueError(f"sparsity must be in [0, 1], got {sparsity}")
    return min(space, math.floor(sparsity * space + 0.5))


def select_releases(kernel: np.ndarray, mask: np.ndarray, task: int, count: int) -> np.ndarray:
    """Boolean array of `kernel`'s shape: the `count` entries of task `task`'s space to be released."""
    workspace = _Workspace(kernel.size, kernel.dtype.itemsize)
    released, new = workspace.select(kernel.reshape(-1), mask.reshape(-1), task, count)
    release = released.copy()
    release[new] = True
    return release.reshape(kernel.shape)


class _Workspace:
    """Scratch arrays for layers of up to `size` floats of up to `itemsize` bytes, reused by every layer
    and every step: a fresh array's first touch (a page fault per 4 KiB) costs more than the selection's
    arithmetic on it.

    A float's bits read as an unsigned integer of its width, less the sign bit, order like its |w|
    (-0.0 and +0.0 alike), and NumPy's SIMD introselect partitions those integers twice as fast as floats.
    """

    def __init__(self, size: int, itemsize: int):
        self._key, self._work = np.empty(size * itemsize, np.uint8), np.empty(size * itemsize, np.uint8)
        self._release, self._flags = np.empty(size, bool), np.empty(size, bool)
        self._written = {}                     # nbytes -> the buffers `fresh` has handed out

    def fresh(self, like: np.ndarray) -> np.ndarray:
        """An uninitialised array of `like`'s shape and dtype, aligned as TensorFlow wants (64 bytes), so
        that ``AssignVariableOp`` adopts it as the variable's value instead of copying it.

        Its buffer is one this workspace handed out before that nothing references any more, else a new
        one: every view of a buffer, TensorFlow's included (it holds the array it adopts until no tensor
        uses it), references the buffer's owner, so an owner referenced by this workspace alone is free.
        Reuse saves the first touch of new pages, which cost a whole-network update as much as the rest.
        """
        buffers = self._written.setdefault(like.nbytes, [])
        for i in range(len(buffers)):
            if sys.getrefcount(buffers[i]) == 2:        # the list's reference and the call's argument
                raw = buffers[i]
                break
        else:
            raw = np.empty(like.nbytes + 64, np.uint8)
            buffers.append(raw)
        start = -raw.__array_interface__["data"][0] % 64
        return raw[start:start + like.nbytes].view(like.dtype).reshape(like.shape)

    def select(self, kernel: np.ndarray, mask: np.ndarray, task: int, count: int) -> tuple[np.ndarray, np.ndarray]:
        """(released, new) for a flat `kernel` and `mask`, where the task's space is most of the layer:
        boolean views into this workspace, `released` the entries released already (mask 0) and `new`
        those the step releases, so that released | new marks the `count` entries of task `task`'s
        space released after the step. Non-candidates sort above every |w| through the sign bit."""
        n = kernel.size
        released = np.equal(mask, 0, out=self._release[:n])
        owns = np.equal(mask, task, out=self._flags[:n])
        new = _new_releases(count, int(np.count_nonzero(released)), int(np.count_nonzero(owns)))
        if new == 0:
            return released, np.logical_and(owns, False, out=owns)
        bits = _bits(kernel)
        sign = _sign(bits)
        key = np.bitwise_and(bits, ~sign, out=_scratch(self._key, bits))
        if not owns.all():
            np.bitwise_or(key, np.multiply(np.logical_not(owns, out=owns), sign, out=_scratch(self._work, bits)),
                          out=key)
        return released, self._lowest(key, new)

    def select_in(self, kernel: np.ndarray, mask: np.ndarray, space: np.ndarray, task: int,
                  count: int) -> tuple[np.ndarray, np.ndarray]:
        """(new, zeros) for a flat `kernel` and `mask` whose entries at ascending flat indices `space`
        are the task's space (a layer shared by many tasks): ascending flat indices of the entries the
        step releases, and of those released already whose value is not +0.0. Reads nothing else."""
        owner = np.take(mask, space)
        released, owns = owner == 0, owner == task
        already, owned = int(np.count_nonzero(released)), int(np.count_nonzero(owns))
        if already + owned != space.size:
            raise ValueError(f"{space.size - already - owned} weights of the task's space were taken by "
                             "another task since its pruning phase began")
        new = _new_releases(count, already, owned)
        bits = np.take(_bits(kernel), space)
        zeros = np.compress(released & (bits != 0), space)           # (compress: boolean indexing is slower)
        if new == 0:
            return np.empty(0, np.intp), zeros
        key = np.bitwise_and(np.compress(owns, bits), ~_sign(bits))
        return np.compress(self._lowest(key, new), np.compress(owns, space)), zeros

    def _lowest(self, key: np.ndarray, new: int) -> np.ndarray:
        """Boolean view into this workspace marking the `new` smallest of `key` (ties to the lowest
        index). Exact and O(N): one partition finds the new-th smallest key; keys below it go, and of
        those equal to it the lowest indices."""
        work = _scratch(self._work, key)[: key.size]
        np.copyto(work, key)
        work.partition(new - 1)
        kth = work[new - 1]
        extra = int(np.count_nonzero(np.equal(work[new:], kth, out=self._flags[: key.size - new])))
        release = np.less_equal(key, kth, out=self._flags[: key.size])
        if extra:                                                      # ties at kth: the highest indices stay
            release[np.flatnonzero(key == kth)[-extra:]] = False
        return release

    def kept(self, kernel: np.ndarray, mask: np.ndarray, release: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """Fresh arrays (see `fresh`): flat `kernel` and `mask` with the `release` entries set to +0.0
        and 0 (`release` is overwritten). Multiplying the bits by 0 or 1 writes exactly +0.0, and it is
        vectorised where a masked store is not."""
        keep = np.logical_not(release, out=release)
        bits = _bits(kernel)
        kept = np.multiply(bits, keep, out=self.fresh(bits))
        return kept.view(kernel.dtype), np.multiply(mask, keep, out=self.fresh(mask))

    def write_entries(self, variable: "_Variable", values: np.ndarray, indices: np.ndarray, value) -> None:
        """Sets `variable`, whose value is `values` (flat), to a fresh copy of `values` with the entries at
        `indices` set to `value`. (TensorFlow's scatter ops cost far more per entry on kernels of rank > 1.)"""
        fresh = self.fresh(values)
        np.copyto(fresh, values)
        fresh[indices] = value
        variable.assign(fresh)


def _new_releases(count: int, already: int, owned: int) -> int:
    """How many of the task's `owned` weights a step to `count` released must release."""
    new = count - already
    if not 0 <= new <= owned:
        raise ValueError(f"cannot release {count} weights: {already} are released already and the "
                         f"task's space holds {already + owned} (targets must not decrease)")
    return new


def _sign(bits: np.ndarray):
    """The sign bit of unsigned integers `bits`' width."""
    return bits.dtype.type(1) << bits.dtype.type(8 * bits.itemsize - 1)


def _scratch(buffer: np.ndarray, like: np.ndarray) -> np.ndarray:
    """The start of byte array `buffer` viewed as an array of `like`'s size and dtype."""
    return buffer[: like.nbytes].view(like.dtype)


def _bits(values: np.ndarray) -> np.ndarray:
    """Floats `values` viewed as unsigned integers of their width."""
    return values.view(f"u{values.dtype.itemsize}")


def _mirrored(variable) -> bool:
    """Whether Keras variable `variable` is mirrored by a ``tf.distribute`` strategy."""
    return isinstance(getattr(variable, "value", None), tf.distribute.DistributedValues)


class _Variable:
    """A kernel or mask as the pruner reads and writes it: through its handle, looked up once (through
    Keras the lookup costs as much as the read), or as a whole where a ``tf.distribute`` strategy mirrors
    it (its handle is the first replica's alone, and out of reach in cross-replica context)."""

    def __init__(self, variable):
        self.variable, self.shape = variable, tuple(variable.shape)
        self.handle = None if _mirrored(variable) else variable.handle
        self.dtype = tf.as_dtype(variable.dtype)

    def read(self) -> np.ndarray:
        """The value as a flat read-only view of TensorFlow's buffer: ``.numpy()`` would copy it, and
        TensorFlow copies on write, so the view stays valid."""
        if self.handle is None:
            return self.variable.numpy().reshape(-1)
        return np.asarray(tf.raw_ops.ReadVariableOp(resource=self.handle, dtype=self.dtype)).reshape(-1)

    def assign(self, value: np.ndarray) -> None:
        """The variable := flat `value` (the raw op skips the checks of ``assign``)."""
        if self.handle is None:
            self.variable.assign(value.reshape(self.shape))
        else:
            tf.raw_ops.AssignVariableOp(resource=self.handle, value=value.reshape(self.shape))


class TaskPruner:
    """Prunes task `task` of `model` layer by layer, each to the same target sparsity of its own space.

    The space of every layer is fixed when the pruner is made: make it when the task's pruning phase
    begins (a finished task is refused: FinishedTaskError). Where the space is under half of a layer (a network shared by many tasks) the pruner keeps
    its flat indices and reads and writes those entries alone.
    """

    def __init__(self, model, task: int):
        self.task = model.check_unfinished(task, "TaskPruner")
        self.layers = {layer_key(l): l for l in model.masked_layers()}
        self.space, self._indices = {}, {}
        for key, layer in self.layers.items():
            mask = layer.mask.numpy().reshape(-1)
            space = (mask == 0) | (mask == task)
            self.space[key] = int(np.count_nonzero(space))
            if 2 * self.space[key] < mask.size:
                self._indices[key] = np.flatnonzero(space)
        self._variables = {key: (_Variable(l.kernel), _Variable(l.mask)) for key, l in self.layers.items()}
        kernels = [l.kernel for l in self.layers.values()]
        self._workspace = _Workspace(max((k.shape.num_elements() for k in kernels), default=0),
                                     max((np.dtype(k.dtype).itemsize for k in kernels), default=4))

    def prune(self, sparsity: float) -> dict[str, int]:
        """Releases weights until each layer's space is `sparsity` released; returns counts per layer."""
        counts = {}
        for key in self.layers:
            counts[key] = release_count(sparsity, self.space[key])
            try:
                self._prune_layer(key, counts[key])
            except ValueError as e:
                raise ValueError(f"layer {key}, target sparsity {sparsity}: {e}") from e
        return counts

    def _prune_layer(self, key: str, count: int) -> None:
        """Releases `count` weights of layer `key`, and sets released weights that are not +0.0 to +0.0;
        writes the layer only where that changes it."""
        kernel_variable, mask_variable = self._variables[key]
        kernel, mask = kernel_variable.read(), mask_variable.read()
        space = self._indices.get(key)
        if space is None:                      # the space is most of the layer: whole arrays
            released, new = self._workspace.select(kernel, mask, self.task, count)
            kept_kernel, kept_mask = self._workspace.kept(kernel, mask, np.logical_or(new, released, out=new))
            kernel_variable.assign(kept_kernel)
            mask_variable.assign(kept_mask)
            return
        new, zeros = self._workspace.select_in(kernel, mask, space, self.task, count)
        if new.size or zeros.size:
            self._workspace.write_entries(kernel_variable, kernel, np.concatenate([new, zeros]), 0.0)
        if new.size:
            self._workspace.write_entries(mask_variable, mask, new, 0)

    def sparsity(self) -> dict[str, float]:
        """Achieved sparsity per layer: released weights over the layer's space."""
        return {key: (int(np.count_nonzero(l.mask.numpy() == 0)) / self.space[key] if self.space[key] else 0.0)
                for key, l in self.layers.items()}

