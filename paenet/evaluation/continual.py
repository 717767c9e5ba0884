"""Continual-learning metrics over an accuracy matrix (as Avalanche and GEM define them).

``R[i, j]`` is the accuracy on task j measured after packing task i (1-based; only i >= j exists for a
packed network, which cannot run a task before it is packed). With T tasks packed:

* backward transfer BWT = mean over j < T of ``R[T, j] - R[j, j]`` (negative = forgetting);
* forgetting = mean over j < T of ``max over j <= l < T of R[l, j]`` minus ``R[T, j]``;
* forward transfer as GEM defines it = mean over j > 1 of ``R[j - 1, j] - b[j]``: the accuracy on task j of
  the network packed up to task j - 1 (task j's own parts just made, nothing of it trained) against
  ``b[j]``, a randomly initialised network's (``record_before`` holds ``R[j - 1, j]``);
* accuracy vs an individually trained model = mean over j of ``R[j, j] - baseline[j]``.

PAENet's finished tasks are bit-exact, so its BWT and forgetting are exactly 0.
"""
from __future__ import annotations

import numpy as np


class AccuracyMatrix:
    """Accuracy of each task after each packing step; unmeasured entries are NaN."""

    def __init__(self, task_names):
        self.task_names = list(task_names)
        n = len(self.task_names)
        self.values = np.full((n, n), np.nan)
        self.before = np.full(n, np.nan)

    @property
    def num_tasks(self) -> int:
        return len(self.task_names)

    def record(self, after: int, task: int, accuracy: float) -> None:
        """Accuracy on task `task` measured after packing task `after` (both 1-based, task <= after)."""
        if not 1 <= task <= after <= self.num_tasks:
            raise ValueError(f"need 1 <= task ({task}) <= after ({after}) <= {self.num_tasks}")
        self.values[after - 1, task - 1] = float(accuracy)

    def record_before(self, task: int, accuracy: float) -> None:
        """Accuracy on task `task` (1-based) before any of its training: GEM's ``R[task - 1, task]``."""
        if not 1 <= task <= self.num_tasks:
            raise ValueError(f"need 1 <= task ({task}) <= {self.num_tasks}")
        self.before[task - 1] = float(accuracy)

    def _last_row(self) -> np.ndarray:
        if self.num_tasks < 2:
            raise ValueError("transfer between tasks needs at least 2 tasks")
        missing = [(i + 1, j + 1) for i in range(self.num_tasks) for j in range(i + 1)
                   if np.isnan(self.values[i, j])]
        if missing:
            raise ValueError(f"accuracy matrix entries (after, task) missing: {missing}")
        return self.values[-1]

    def backward_transfer(self) -> float:
        last = self._last_row()
        return float(np.mean(last[:-1] - np.diag(self.values)[:-1]))

    def forgetting(self) -> float:
        last = self._last_row()
        best = [np.max(self.values[j:-1, j]) for j in range(self.num_tasks - 1)]
        return float(np.mean(np.asarray(best) - last[:-1]))

    def forward_transfer(self, baselines) -> float:
        """Mean over tasks of (accuracy right after packing it) - (accuracy of `baselines`, one per task:
        the same task trained alone, from scratch or fine-tuned)."""
        baselines = np.asarray(baselines, np.float64)
        if baselines.shape != (self.num_tasks,):
            raise ValueError(f"need one baseline per task ({self.num_tasks}), got {baselines.shape}")
        self._last_row()
        return float(np.mean(np.diag(self.values) - baselines))

    def gem_forward_transfer(self, random) -> float:
        """GEM's FWT: mean over tasks j >= 2 of ``R[j - 1, j] - random[j]`` (`random`: one accuracy per task,
        a randomly initialised network's)."""
        random = np.asarray(random, np.float64)
        if random.shape != (self.num_tasks,):
            raise ValueError(f"need one random-network accuracy per task ({self.num_tasks}), got {random.shape}")
        if self.num_tasks < 2 or np.isnan(self.before[1:]).any():
            raise ValueError("GEM's forward transfer needs R[j - 1, j] of every task j >= 2 (record_before)")
        return float(np.mean(self.before[1:] - random[1:]))

    def to_dict(self) -> dict:
        return {"tasks": self.task_names,
                "accuracy": [[None if np.isnan(v) else float(v) for v in row] for row in self.values],
                "before": [None if np.isnan(v) else float(v) for v in self.before]}
