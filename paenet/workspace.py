"""The workspace: one folder holding one packed network, its records, checkpoints, logs and exports.

Layout (WORKSPACE.md documents it for users):

* ``workspace.json``: how the workspace was created (base model, input size, optimizer, seed).
* ``packing/``: the last finished state, a ``Packer.save`` folder (digests verified on every load).
* ``active/``: only while a task is being packed: ``checkpoint``/``ckpt-N.*`` (model, optimizer slots,
  data iterator and the JSON loop state, all in one checkpoint so they always agree), ``best-N.npz`` (the
  pruning state the goal loop keeps) and ``logs/`` (its TensorBoard events). Finishing the task moves the
  logs to ``logs/<task>/`` and deletes ``active/``; rolling it back deletes ``active/``, which leaves
  the workspace byte-identical to before the task started.
* ``evaluations.json``: every task evaluated after every packing step (the accuracy matrix).
* ``.lock``: held (``flock``) by the run using the workspace; a second run is refused.
* ``exports/``, ``report/``, ``lfw_roc.json``: written by ``paenet.export`` and ``paenet.report``.

``locate`` lets those commands take either a workspace or a bare ``Packer.save`` folder.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import json
import os
import shutil
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from paenet.fileio import write_json_atomic

CONFIG = "workspace.json"
PACKING = "packing"
ACTIVE = "active"
LOGS = "logs"
EVALUATIONS = "evaluations.json"
LOCK = ".lock"
LFW_ROC = "lfw_roc.json"
EXPORTS = "exports"
REPORT = "report"
PACKING_FILES = ("model.json", "state.json")
STATE_KEY = "state/.ATTRIBUTES/VARIABLE_VALUE"


class WorkspaceError(RuntimeError):
    """The workspace cannot be used as asked: missing, not a workspace, in use, busy with another task."""


class Workspace:
    def __init__(self, path):
        self.path = Path(path)

    def exists(self) -> bool:
        return (self.path / CONFIG).exists()

    @contextlib.contextmanager
    def locked(self):
        """Holds the workspace's lock for the duration; refuses if another run holds it."""
        self.path.mkdir(parents=True, exist_ok=True)
        with open(self.path / LOCK, "a") as f:
            try:
                fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
            except BlockingIOError:
                raise WorkspaceError(f"{self.path} is in use by another PAENet run (it holds {LOCK})") from None
            try:
                yield self
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # Configuration and finished state.

    def config(self) -> dict:
        if not self.exists():
            raise WorkspaceError(f"{self.path} is not a PAENet workspace: {CONFIG} is missing")
        return json.loads((self.path / CONFIG).read_text())

    def write_config(self, config: dict) -> None:
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(str(self.path / CONFIG), config)

    @property
    def packing_dir(self) -> Path:
        return self.path / PACKING

    def save_finished(self, packer) -> None:
        packer.save(str(self.packing_dir))

    def load_finished(self, optimizer, **kwargs):
        from paenet.packing import Packer
        return Packer.load(str(self.packing_dir), optimizer, **kwargs)

    # The active task.

    @property
    def active_dir(self) -> Path:
        return self.path / ACTIVE

    @property
    def active_logs(self) -> Path:
        return self.active_dir / LOGS

    def active_state(self) -> dict | None:
        """The JSON state of the active task's latest checkpoint, or None when no task is active."""
        latest = tf.train.latest_checkpoint(str(self.active_dir)) if self.active_dir.exists() else None
        if latest is None:
            return None
        return json.loads(tf.train.load_checkpoint(latest).get_tensor(STATE_KEY).decode())

    def save_active(self, packer, state: dict, number: int, iterator=None) -> None:
        """Checkpoints `packer`'s model, optimizer slots and data `iterator` with `state` (JSON)."""
        state = {**state, "model": keras.saving.serialize_keras_object(packer.model)}
        checkpoint = self._checkpoint(packer, iterator, json.dumps(state))
        manager = tf.train.CheckpointManager(checkpoint, str(self.active_dir), max_to_keep=2)
        manager.save(checkpoint_number=number)
        # Only the snapshot the latest checkpoint names is needed to resume.
        for old in self.active_dir.glob("best-*.npz"):
            if old.name != state.get("best"):
                old.unlink()

    def restore_active(self, packer, iterator=None) -> None:
        """Restores the latest active checkpoint into `packer` (built from that checkpoint's state)."""
        latest = tf.train.latest_checkpoint(str(self.active_dir))
        self._checkpoint(packer, iterator, "").read(latest).assert_existing_objects_matched()

    @staticmethod
    def _checkpoint(packer, iterator, state: str) -> tf.train.Checkpoint:
        objects = {"variables": packer.model.checkpoint_variables(),
                   "optimizer": {f"{i:04d}": v.value for i, v in enumerate(packer.optimizer.variables)},
                   "state": tf.Variable(state, dtype=tf.string)}
        if iterator is not None:
            objects["iterator"] = iterator
        return tf.train.Checkpoint(**objects)

    def save_best(self, snapshot: dict, number: int) -> str:
        """Writes the goal loop's kept snapshot; returns its file name. Older ones stay until a checkpoint
        that names this one is written (``save_active``)."""
        self.active_dir.mkdir(parents=True, exist_ok=True)
        name = f"best-{number}.npz"
        tmp = self.active_dir / f".tmp-{name}"
        with open(tmp, "wb") as f:
            np.savez(f, **{k.replace("/", "|"): v for k, v in snapshot.items()})
        os.replace(tmp, self.active_dir / name)
        return name

    def load_best(self, name: str) -> dict:
        with np.load(self.active_dir / name) as data:
            return {k.replace("|", "/"): data[k] for k in data.files}

    def finish_active(self, task_name: str) -> None:
        """Keeps the finished task's logs and removes its active folder."""
        if self.active_logs.exists():
            target = self.path / LOGS / task_name
            if target.exists():
                shutil.rmtree(target)
            target.parent.mkdir(parents=True, exist_ok=True)
            os.replace(self.active_logs, target)
        self.discard_active()

    def discard_active(self) -> None:
        if self.active_dir.exists():
            shutil.rmtree(self.active_dir)

    # Evaluations.

    def evaluations(self) -> list[dict]:
        path = self.path / EVALUATIONS
        return json.loads(path.read_text()) if path.exists() else []

    def add_evaluations(self, entries: list[dict]) -> None:
        write_json_atomic(str(self.path / EVALUATIONS), self.evaluations() + entries)


def is_packing(path: str) -> bool:
    return all(os.path.isfile(os.path.join(path, name)) for name in PACKING_FILES)


@dataclasses.dataclass(frozen=True)
class Located:
    """A packing folder, and the workspace holding it (None for a bare ``Packer.save`` folder)."""

    packing: str
    workspace: str | None

    def file(self, name: str) -> str | None:
        """Path of the workspace file `name`, or None when there is no workspace or no such file."""
        if self.workspace is None:
            return None
        path = os.path.join(self.workspace, name)
        return path if os.path.exists(path) else None

    def output(self, given: str | None, default: str) -> str:
        """`given`, or the workspace's folder `default`; a bare packing folder needs `given`."""
        if given:
            return given
        if self.workspace is None:
            raise WorkspaceError(f"{self.packing} is a bare packing folder, not a workspace: give --output")
        return os.path.join(self.workspace, default)


def locate(path: str) -> Located:
    """The packing of `path`: a workspace (its ``packing/``) or a ``Packer.save`` folder itself."""
    if not path:
        raise WorkspaceError("no workspace given: pass --workspace=DIR")
    if not os.path.isdir(path):
        raise WorkspaceError(f"{path}: no such workspace folder")
    if is_packing(path):
        return Located(packing=path, workspace=None)
    if is_packing(os.path.join(path, PACKING)):
        return Located(packing=os.path.join(path, PACKING), workspace=path)
    raise WorkspaceError(f"{path} is not a PAENet workspace (no finished packing in {PACKING}/) nor a "
                         f"packing folder (no {' and '.join(PACKING_FILES)})")
