"""Where the app's files lie in a workspace, and how ``paenet.export`` and ``paenet.report`` find the packing
in the path they are given.

A workspace (see WORKSPACE.md) keeps its latest finished packing in ``packing/`` (a ``Packer.save``
folder), the accuracy log ``evaluations.json``, an optional ``lfw_roc.json``, TensorBoard logs in
``logs/`` and exports in ``exports/``. Export and report also accept a bare ``Packer.save`` folder, which
has no workspace files and no default output folder. ``write_replacing`` puts a new output in place of
the old one only once it is complete.
"""
from __future__ import annotations

import dataclasses
import os
import shutil
import tempfile

PACKING = "packing"
EVALUATIONS = "evaluations.json"
LFW_ROC = "lfw_roc.json"
EXPORTS = "exports"
REPORT = "report"
PACKING_FILES = ("model.json", "state.json")


class WorkspaceError(ValueError):
    """A path that is neither a workspace nor a packing folder, or a missing output folder."""


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


def write_replacing(path: str, write) -> str:
    """Makes the output file or folder `path` by calling ``write(tmp)`` for a temporary sibling, then moves
    it into place: a crash leaves the previous output or none, never a half-written one. Returns `path`."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=".tmp-", dir=os.path.dirname(path))
    try:
        tmp = os.path.join(scratch, os.path.basename(path))
        write(tmp)
        if os.path.isdir(path) and not os.path.islink(path):
            shutil.rmtree(path)
        os.replace(tmp, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return path
