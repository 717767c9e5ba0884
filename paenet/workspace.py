"""The workspace: one folder holding one packed network, its records, checkpoints, logs and exports.

Layout (WORKSPACE.md documents it for users):

* ``workspace.json``: how the workspace was created (base model, input size, optimizer, seed).
* ``packing/``: the last finished state, a ``paenet.checkpoint.save_packing`` folder (digests verified on
  every load).
* ``active/``: only while a task is being packed: its checkpoints (``paenet.checkpoint.ActiveCheckpoints``)
  and ``logs/`` (its TensorBoard events). Finishing the task moves the logs to ``logs/<task>/`` and
  deletes ``active/``; rolling it back deletes ``active/``, which leaves the workspace byte-identical to
  before the task started.
* ``evaluations.json``: every task evaluated after every packing step (the accuracy matrix).
* ``.lock``: held (``flock``) by the run using the workspace; a second run is refused.
* ``exports/``, ``report/``, ``lfw_roc.json``: written by ``paenet.export`` and ``paenet.report``.

``locate`` lets those commands take either a workspace or a bare packing folder. Every file format of the
run state is ``paenet.checkpoint``'s; this module delegates to it.
"""
from __future__ import annotations

import contextlib
import dataclasses
import fcntl
import os
import shutil
import sys
from pathlib import Path

from paenet import checkpoint
from paenet.checkpoint import PACKING_FILES, is_packing
from paenet.fileio import interrupted_replacements, recover_replaced, write_json_atomic
from paenet.records import check_json_checksum, json_checksum, read_json

CONFIG = "workspace.json"
PACKING = "packing"
ACTIVE = "active"
LOGS = "logs"
EVALUATIONS = "evaluations.json"
LOCK = ".lock"
LFW_ROC = "lfw_roc.json"
EXPORTS = "exports"
REPORT = "report"


class WorkspaceError(RuntimeError):
    """The workspace cannot be used as asked: missing, not a workspace, in use, busy with another task."""


class Workspace:
    def __init__(self, path):
        self.path = Path(path)
        self.checkpoints = checkpoint.ActiveCheckpoints(self.active_dir)

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
        try:
            records = checkpoint.packed_records(self.packing_dir)
            if records is None:
                return
        except ValueError:
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
        checkpoint.save_packing(packer, self.packing_dir)

    def load_finished(self, optimizer, **kwargs):
        return checkpoint.load_packing(self.packing_dir, optimizer, **kwargs)

    # The active task.

    @property
    def active_dir(self) -> Path:
        return self.path / ACTIVE

    @property
    def active_logs(self) -> Path:
        return self.active_dir / LOGS

    def save_active(self, packer, state: dict, number: int, iterator=None) -> None:
        """Checkpoints the active task (``ActiveCheckpoints.save``; ``checkpoints`` reads them back)."""
        self.checkpoints.save(packer, state, number, iterator)

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
        return read_evaluations(str(path)) if path.exists() else []

    def add_evaluations(self, entries: list[dict]) -> None:
        """Adds a row of the accuracy matrix, replacing one of the same packing step (a finish that is
        completed again after a kill writes the same row once); the file carries a checksum of its
        entries."""
        steps = {e["after_task"] for e in entries}
        kept = [e for e in self.evaluations() if e["after_task"] not in steps]
        rows = {"entries": kept + entries}
        write_json_atomic(str(self.path / EVALUATIONS), {**rows, "checksum": json_checksum(rows)})


def read_evaluations(path: str) -> list[dict]:
    """The entries of an ``evaluations.json``, once its checksum matches (IntegrityError naming it
    otherwise). A bare list, as written before the file carried a checksum, is read as it is."""
    content = read_json(path)
    if isinstance(content, list):
        return content
    entries = check_json_checksum(content, path).get("entries")
    if not isinstance(entries, list):
        raise WorkspaceError(f"{path}: expected a list of evaluation entries")
    return entries


@dataclasses.dataclass(frozen=True)
class Located:
    """A packing folder, and the workspace holding it (None for a bare packing folder)."""

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
    """The packing of `path`: a workspace (its ``packing/``) or a bare packing folder itself."""
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
