"""Gradual magnitude pruning of the active task: Zhu & Gupta's cubic schedule and an exact per-layer pruner.

DESIGN §3. A task's *space* in a layer is every weight it may release: those it owns plus those already
released (mask 0) since its pruning phase began. A pruning step with target sparsity s leaves exactly
``floor(s * N_L + 0.5)`` of the space released in layer L, counted from the phase's start. Weights go in
the order (already released first, |w|, flat index) ascending, so ties fall to the lower flat index and
successive steps are monotone. Released weights are set to exactly 0.0 with mask 0; weights of other
tasks are never candidates and never written.
"""
from __future__ import annotations

import dataclasses
import math

import numpy as np

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
    """Boolean array of `kernel`'s shape: the `count` entries of task `task`'s space to be released.

    Exact and O(N): one partition (NumPy's SIMD introselect) finds the count-th key of
    (released first, |w|); ties at that key go to the lowest flat indices.
    """
    flat_mask = mask.reshape(-1)
    key = np.abs(kernel.reshape(-1).astype(np.float32))
    key[flat_mask != task] = np.inf                  # other tasks' weights: never candidates
    released = flat_mask == 0
    key[released] = -1.0                             # released already: always first
    already, space = int(np.count_nonzero(released)), int(np.count_nonzero(np.isfinite(key)))
    if not already <= count <= space:
        raise ValueError(f"cannot release {count} weights: {already} are released already and the "
                         f"task's space holds {space} (targets must not decrease)")
    if count == 0:
        return np.zeros(kernel.shape, bool)
    kth = np.partition(key, count - 1)[count - 1]
    release = key < kth
    ties = np.flatnonzero(key == kth)[: count - int(np.count_nonzero(release))]
    release[ties] = True
    return release.reshape(kernel.shape)


class TaskPruner:
    """Prunes task `task` of `model` layer by layer, each to the same target sparsity of its own space.

    The space sizes N_L are fixed when the pruner is made: make it when the task's pruning phase begins.
    """

    def __init__(self, model, task: int):
        self.task = model.check_task(task)
        self.layers = {layer_key(l): l for l in model.masked_layers()}
        self.space = {}
        for key, layer in self.layers.items():
            mask = layer.mask.numpy()
            self.space[key] = int(np.count_nonzero((mask == 0) | (mask == task)))

    def prune(self, sparsity: float) -> dict[str, int]:
        """Releases weights until each layer's space is `sparsity` released; returns counts per layer."""
        counts = {}
        for key, layer in self.layers.items():
            count = release_count(sparsity, self.space[key])
            kernel, mask = layer.kernel.numpy(), layer.mask.numpy()
            try:
                release = select_releases(kernel, mask, self.task, count)
            except ValueError as e:
                raise ValueError(f"layer {key}, target sparsity {sparsity}: {e}") from e
            kernel[release] = 0.0
            mask[release] = 0
            layer.kernel.assign(kernel)
            layer.mask.assign(mask)
            counts[key] = count
        return counts

    def sparsity(self) -> dict[str, float]:
        """Achieved sparsity per layer: released weights over the layer's space."""
        return {key: (int(np.count_nonzero(l.mask.numpy() == 0)) / self.space[key] if self.space[key] else 0.0)
                for key, l in self.layers.items()}

