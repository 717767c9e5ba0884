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
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from paenet.fileio import error_line, interrupted_replacements, recover_replaced, write_json_atomic
from paenet.records import IntegrityError, check_json_checksum, json_checksum, read_json, verify

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
        self.active_checkpoint = None       # the checkpoint prefix active_state chose / save_active wrote

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
                self.recover()
                yield self
            finally:
                fcntl.flock(f, fcntl.LOCK_UN)

    # Configuration and finished state.

    def recover(self) -> None:
        """Puts back what a run killed in the middle of replacing ``packing/`` left aside (the last good
        packing). Called under the lock."""
        if recover_replaced(str(self.packing_dir)):
            print(f"{self.path}: put back {PACKING}/ from an interrupted save", file=sys.stderr)

    def check_new(self) -> None:
        """Refuses to create a workspace where one was: a missing ``workspace.json`` beside finished
        tasks or an active one is a damaged workspace, never a new one."""
        if (self.path / ACTIVE).exists():
            raise WorkspaceError(f"{self.path / CONFIG} is missing but {ACTIVE}/ holds a task being packed: "
                                 f"restore {CONFIG} from a backup (WORKSPACE.md, Recovery)")
        state = self.packing_dir / "state.json"
        if not state.exists():
            return
        try:
            records = json.loads(state.read_text())["records"]
        except (ValueError, KeyError, TypeError):
            records = None
        if records != []:
            held = "an unreadable packing" if records is None else f"{len(records)} finished task(s)"
            raise WorkspaceError(f"{self.path / CONFIG} is missing but {PACKING}/ holds {held}: refusing to "
                                 f"create a new workspace over it; restore {CONFIG} from a backup, or move "
                                 f"{PACKING}/ away to start afresh (WORKSPACE.md, Recovery)")

    def config(self) -> dict:
        if not self.exists():
            raise WorkspaceError(f"{self.path} is not a PAENet workspace: {CONFIG} is missing")
        path = str(self.path / CONFIG)
        return check_json_checksum(read_json(path), path)

    def write_config(self, config: dict) -> None:
        """Writes ``workspace.json`` with a checksum of its content (``config`` checks it)."""
        self.path.mkdir(parents=True, exist_ok=True)
        write_json_atomic(str(self.path / CONFIG), {**config, "checksum": json_checksum(config)})

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
        """The JSON state of the active task's newest readable checkpoint (which ``restore_active`` then
        restores), or None when no task is active. Every tensor of it is read, so a truncated or
        bit-flipped checkpoint is found here: the one before it is used instead (reported on stderr), and
        when none can be read that is an IntegrityError naming them; never a silent restart."""
        self.active_checkpoint = None
        indexes = sorted(self.active_dir.glob("ckpt-*.index"), key=_checkpoint_number, reverse=True)
        failures = []
        for index in indexes:
            prefix = str(index)[:-len(".index")]
            try:
                state = _read_checkpoint(prefix)
            except IntegrityError as e:
                failures.append(str(e))
                continue
            if failures:
                print(f"{'; '.join(failures)}: resuming from {prefix} instead", file=sys.stderr)
            self.active_checkpoint = prefix
            return state
        if failures:
            raise IntegrityError("; ".join(failures) + f": no readable checkpoint left in {self.active_dir} "
                                 "(WORKSPACE.md, Recovery)")
        return None

    def save_active(self, packer, state: dict, number: int, iterator=None) -> None:
        """Checkpoints `packer`'s model, optimizer slots and data `iterator` with `state` (JSON); its
        finished tasks are verified first."""
        verify(packer.model, packer.records)
        state = {**state, "model": keras.saving.serialize_keras_object(packer.model)}
        checkpoint = self._checkpoint(packer, iterator, json.dumps(state))
        manager = tf.train.CheckpointManager(checkpoint, str(self.active_dir), max_to_keep=2)
        self.active_checkpoint = manager.save(checkpoint_number=number)
        # Only the snapshots the kept checkpoints name are needed to resume.
        needed = {state.get("best")} | {_read_checkpoint(p, check=False).get("best")
                                        for p in manager.checkpoints[:-1]}
        for old in self.active_dir.glob("best-*.npz"):
            if old.name not in needed:
                old.unlink()

    def restore_active(self, packer, iterator=None) -> None:
        """Restores the checkpoint ``active_state`` chose into `packer` (built from its state)."""
        self._checkpoint(packer, iterator, "").read(self.active_checkpoint).assert_existing_objects_matched()

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
        path = self.active_dir / name
        try:
            with np.load(path) as data:
                return {k.replace("|", "/"): data[k] for k in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise IntegrityError(f"{path}: unreadable ({e})") from e

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
        return read_json(str(path)) if path.exists() else []

    def add_evaluations(self, entries: list[dict]) -> None:
        """Adds a row of the accuracy matrix, replacing one of the same packing step (a finish that is
        completed again after a kill writes the same row once)."""
        steps = {e["after_task"] for e in entries}
        kept = [e for e in self.evaluations() if e["after_task"] not in steps]
        write_json_atomic(str(self.path / EVALUATIONS), kept + entries)


def _checkpoint_number(index: Path) -> int:
    return int(index.name[len("ckpt-"):-len(".index")])


def _read_checkpoint(prefix: str, check: bool = True) -> dict:
    """The JSON state of the active checkpoint `prefix`; with `check`, every tensor is read first (the
    checkpoint format's checksums find a damaged one). IntegrityError naming it if it cannot be read."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        if check:
            dtypes = reader.get_variable_to_dtype_map()
            tf.raw_ops.RestoreV2(prefix=prefix, tensor_names=list(dtypes), shape_and_slices=[""] * len(dtypes),
                                 dtypes=list(dtypes.values()))
        return json.loads(reader.get_tensor(STATE_KEY).decode())
    except (tf.errors.OpError, ValueError, UnicodeDecodeError) as e:
        raise IntegrityError(f"{prefix}: unreadable checkpoint ({error_line(e)})") from e


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
    if os.path.isfile(os.path.join(path, CONFIG)) and interrupted_replacements(os.path.join(path, PACKING)):
        with Workspace(path).locked():      # puts back a packing/ that a killed save left aside
            pass
    if is_packing(path):
        return Located(packing=path, workspace=None)
    if is_packing(os.path.join(path, PACKING)):
        return Located(packing=os.path.join(path, PACKING), workspace=path)
    raise WorkspaceError(f"{path} is not a PAENet workspace (no finished packing in {PACKING}/) nor a "
                         f"packing folder (no {' and '.join(PACKING_FILES)})")
