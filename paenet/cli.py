"""One line, exit status 1, for every error a command's user can cause: a bad flag value, a missing,
damaged or foreign file (checkpoint, GraphDef, image, pairs.txt, workspace file), a read-only folder, a
full disk. The commands' ``main`` functions run their work through ``report_errors``."""
from __future__ import annotations

import sys


def user_errors() -> tuple:
    """The exception types that mean bad input or a bad file rather than a bug in PAENet."""
    import tensorflow as tf
    from PIL import Image

    from paenet.facenet_import import FacenetImportError
    from paenet.records import IntegrityError
    from paenet.workspace import WorkspaceError
    return (ValueError, KeyError, OSError, IntegrityError, WorkspaceError, FacenetImportError,
            tf.errors.OpError, Image.DecompressionBombError)


def report_errors(program: str, work):
    """Returns ``work()``; an error of ``user_errors`` is printed as ``program: message`` on one
    line and ends the process with status 1."""
    from paenet.fileio import error_line
    try:
        return work()
    except user_errors() as e:
        message = e.args[0] if isinstance(e, KeyError) and e.args else error_line(e)
        print(f"{program}: {message}", file=sys.stderr)
        sys.exit(1)
