"""Reading FaceNet's TF1 checkpoint (``model-20180402-114759.ckpt-275``): variables by their own names."""
from __future__ import annotations

import glob
import os
import re

import tensorflow as tf

from paenet.facenet_import.source import FacenetImportError, Source


def _message(error: Exception) -> str:
    return (getattr(error, "message", None) or str(error)).strip().splitlines()[0]


def find_checkpoint(directory: str) -> str:
    """The checkpoint prefix in `directory`: the one a ``checkpoint`` state file names, else, as FaceNet's
    ``get_model_filenames``, the ``*.ckpt-N`` with the highest N (the released archive has no state file)."""
    latest = tf.train.latest_checkpoint(directory)
    if latest:
        return latest
    prefixes = sorted(p[: -len(".index")] for p in glob.glob(os.path.join(glob.escape(directory), "*.index")))
    if not prefixes:
        raise FacenetImportError(f"{directory}: no checkpoint in this directory (no *.index file); pass a "
                                 "checkpoint prefix, a .pb or a .tflite file")

    def step(prefix: str) -> int:
        found = re.search(r"-(\d+)$", prefix)
        return int(found.group(1)) if found else -1

    best = max(step(p) for p in prefixes)
    candidates = [p for p in prefixes if step(p) == best]
    if len(candidates) > 1:
        raise FacenetImportError(f"{directory}: several checkpoints and no way to choose: "
                                 f"{[os.path.basename(p) for p in candidates]}; pass one prefix")
    return candidates[0]


def read_checkpoint(prefix: str) -> Source:
    """Every variable of the checkpoint at `prefix`, read in full (so a truncated data file fails here)."""
    try:
        reader = tf.train.load_checkpoint(prefix)
    except (tf.errors.OpError, ValueError) as e:
        raise FacenetImportError(f"{prefix}: not a TensorFlow checkpoint, or its .index file is truncated "
                                 f"or corrupt: {_message(e)}") from None
    values = {}
    for name in sorted(reader.get_variable_to_shape_map()):
        try:
            values[name] = reader.get_tensor(name)
        except (tf.errors.OpError, IndexError, ValueError) as e:   # a short data file: IndexError
            raise FacenetImportError(f"{prefix}: cannot read variable {name}: the checkpoint's data file is "
                                     f"truncated or corrupt: {_message(e)}") from None
    return Source(path=prefix, format="checkpoint", values=values)
