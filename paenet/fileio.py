"""Writing files so that a crash leaves either the old version or the new one, never half of one."""
from __future__ import annotations

import json
import os
import re
import shutil
import tempfile


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


FILE_MODE = 0o666 & ~_umask()     # what open() gives a new file: mkstemp's 0600 would hide it from the group


def write_json_atomic(path: str, obj) -> None:
    """Writes `obj` as JSON to `path` so that a crash leaves either the old file or the new one; the
    file's mode is the one ``open`` gives (0644 under the usual umask)."""
    directory = os.path.dirname(os.path.abspath(path))
    fd, tmp = tempfile.mkstemp(prefix=_scratch_prefix(path), dir=directory)     # (recover_replaced finds it)
    try:
        os.fchmod(fd, FILE_MODE)
        with os.fdopen(fd, "w") as f:
            json.dump(obj, f, indent=2, sort_keys=True)
            f.flush()
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        os.unlink(tmp)
        raise


def write_replacing(path: str, write) -> str:
    """Makes the file or folder `path` by calling ``write(tmp)`` for a temporary sibling, then moves it
    into place. The previous `path` is moved aside first and deleted only once the new one is in place:
    a crash between the two renames leaves it in the ``.tmp-<name>-*/old`` sibling, which
    ``recover_replaced`` moves back. Returns `path`."""
    path = os.path.abspath(path)
    os.makedirs(os.path.dirname(path), exist_ok=True)
    scratch = tempfile.mkdtemp(prefix=_scratch_prefix(path), dir=os.path.dirname(path))
    try:
        new = os.path.join(scratch, "new")
        write(new)
        if os.path.lexists(path):
            os.rename(path, os.path.join(scratch, "old"))
        os.replace(new, path)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    return path


def _scratch_prefix(path: str) -> str:
    return f".tmp-{os.path.basename(path)}-"


def interrupted_replacements(path: str) -> list[str]:
    """The scratch folders an interrupted ``write_replacing(path, ...)`` (or files an interrupted
    ``write_json_atomic(path, ...)``) left beside `path`."""
    directory, prefix = os.path.dirname(os.path.abspath(path)), _scratch_prefix(path)
    return sorted(os.path.join(directory, n) for n in os.listdir(directory)
                  if n.startswith(prefix)) if os.path.isdir(directory) else []


def recover_replaced(path: str) -> bool:
    """Finishes what a killed ``write_replacing(path, ...)`` left: when `path` is missing, the previous
    version kept in the scratch folder's ``old`` is moved back (the interrupted write never took
    effect); then the scratch folders are deleted. Only call it while no other writer can be at work
    (the workspace lock). Returns whether `path` was put back."""
    restored = False
    for scratch in interrupted_replacements(path):
        if not os.path.isdir(scratch):
            os.unlink(scratch)
            continue
        old = os.path.join(scratch, "old")
        if not os.path.lexists(path) and os.path.lexists(old):
            os.rename(old, path)
            restored = True
        shutil.rmtree(scratch)
    return restored


def error_line(error: BaseException) -> str:
    """An exception's message on one line, without TensorFlow's op decorations (for a one-line report
    of a file that cannot be read)."""
    text = getattr(error, "message", None) or str(error) or type(error).__name__
    text = re.sub(r"\{\{[^}]*\}\}\s*|\s*\[Op:\w+\]", "", text)
    return " ".join(text.split())
