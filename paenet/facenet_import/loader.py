"""An ``InceptionResnetV1`` from a FaceNet file: task 1, "face", holds the file's network.

The file decides the shapes: each conv's width is its kernel's last dimension, the embedding size the
Bottleneck's, the head's class count that of ``Logits/weights``, the number of each repeated block the
highest block index its names use (FaceNet: 5, 10, 5). Every value is then checked (present,
same shape as the model's variable, floating point) before any is assigned, and the model is returned only
when all went in, so a failed import leaves no half-filled model behind.
"""
from __future__ import annotations

import dataclasses
import logging
import os
import re

import numpy as np

from paenet.facenet_import.checkpoint import find_checkpoint, read_checkpoint
from paenet.facenet_import.graph_def import read_graph_def
from paenet.facenet_import.source import FacenetImportError, Source
from paenet.facenet_import.tflite import read_tflite
from paenet.models.base import TaskSpec
from paenet.models.inception_resnet_v1 import (FACE_TASK, ROOT, InceptionResnetV1, count_blocks,
                                               facenet_variables, facenet_widths)
from paenet.packing import claim_free_weights
from paenet.records import TaskRecord, owned_counts, task_digest

DEFAULT_INPUT_SIZE = 160
BOTTLENECK = f"{ROOT}/Bottleneck/weights"
LOGITS = ("Logits/weights", "Logits/biases")
CHECKPOINT_FILE = re.compile(r"\.(index|data-\d{5}-of-\d{5})$")

log = logging.getLogger(__name__)


@dataclasses.dataclass(frozen=True)
class FacenetImport:
    """An imported FaceNet.

    Attributes:
      model: an ``InceptionResnetV1`` with one task, "face", which owns every kernel weight (mask 1); it
        has a head when the file's ``Logits`` were imported, else its output is the embedding.
      path, format: the file read ("checkpoint", "graphdef" or "tflite").
      consumed: the file's variables that went into the model, each into exactly one variable.
      unused: the file's variables that did not (``Logits`` when skipped, anything the graph lacks).
    """

    model: InceptionResnetV1
    path: str
    format: str
    consumed: tuple[str, ...]
    unused: tuple[str, ...]

    def record(self) -> TaskRecord:
        """The face task's record, so that a ``Packer`` can take the imported model as finished task 1."""
        spec = self.model.task_specs[0]
        return TaskRecord(task=1, name=spec.name, num_classes=spec.num_classes, sharing=self.model.sharing,
                          digest=task_digest(self.model, 1), owned=owned_counts(self.model, 1))


def read_facenet_file(path) -> Source:
    """The parameters of a FaceNet file: a checkpoint (its prefix, one of its files, or a directory
    holding it), a frozen GraphDef (``.pb``) or a TFLite model (``.tflite``)."""
    path = os.fspath(path)
    if os.path.isdir(path):
        return read_checkpoint(find_checkpoint(path))
    reader = {".pb": read_graph_def, ".tflite": read_tflite}.get(os.path.splitext(path)[1].lower())
    if reader is None:
        return read_checkpoint(CHECKPOINT_FILE.sub("", path))
    if not os.path.isfile(path):
        raise FacenetImportError(f"{path}: no such file")
    return reader(path)


def load_facenet(path, logits: bool | int = True, input_size: int | None = None, sharing: str = "cumulative",
                 name: str | None = None) -> FacenetImport:
    """Imports the FaceNet at `path` (see ``read_facenet_file``) as task 1 ("face") of a new model.

    Args:
      logits: True imports the face head (``Logits``) when the file has one; False (or 0) leaves the task
        headless and reports ``Logits`` as unused; a class count n gives the task an n-class head, the
        file's when its ``Logits`` has n classes (training on the identities it was trained on, in the same
        order), else a fresh one (the file's ``Logits`` then unused).
      input_size: the model's input side; default the file's own (TFLite states one), else 160.
      sharing: the model's sharing mode for later tasks.
      name: the model's name.
    Raises:
      FacenetImportError: naming the file and every missing variable or shape mismatch.
    """
    source = read_facenet_file(path)
    present = [n for n in LOGITS if n in source.values]
    file_classes = _last_dim(source, present[0]) if present else 0
    classes = file_classes if logits is True else int(logits)
    model = _model_for(source, classes, classes == file_classes,
                       input_size or source.input_size or DEFAULT_INPUT_SIZE, sharing, name)
    targets = facenet_variables(model, task=1)
    if classes and classes != file_classes:
        log.warning("%s: a fresh %d-class face head (the file's Logits has %d classes)", source.path, classes,
                 file_classes)
        targets = {k: v for k, v in targets.items() if k not in LOGITS}
    _check_values(source, targets)
    for key, variable in targets.items():
        variable.assign(np.asarray(source.values[key], np.float32))
    claim_free_weights(model, 1)
    consumed = sorted(n for n in (source.file_name(k) for k in targets) if n is not None)
    unused = sorted({source.file_name(k) for k in source.values if k not in targets} - {None}
                    | set(source.unmapped))
    if unused:
        log.warning("%s: %d variable(s) not imported: %s", source.path, len(unused), ", ".join(unused[:10]))
    return FacenetImport(model, source.path, source.format, tuple(consumed), tuple(unused))


def _require(source: Source, names) -> None:
    missing = [n for n in names if n not in source.values]
    if missing:
        more = f" and {len(missing) - 5} more" if len(missing) > 5 else ""
        raise FacenetImportError(f"{source.path}: the {source.format} lacks {len(missing)} variable(s) the "
                                 f"model needs: {', '.join(missing[:5])}{more}")


def _last_dim(source: Source, name: str) -> int:
    shape = np.shape(source.values[name])
    if not shape:
        raise FacenetImportError(f"{source.path}: {name} is a scalar, not a kernel")
    return int(shape[-1])


def _model_for(source: Source, classes: int, file_head: bool, input_size: int, sharing: str,
               name) -> InceptionResnetV1:
    """An empty model with the file's depth, widths and embedding size, and a `classes`-class head (none
    for 0; `file_head`: the file's, which must then be complete)."""
    blocks = count_blocks(source.values)
    kernels = {scope: f"{ROOT}/{scope}/weights" for scope in facenet_widths(blocks)}
    _require(source, [*kernels.values(), BOTTLENECK, *(LOGITS if classes and file_head else ())])
    try:
        return InceptionResnetV1(
            input_size=input_size, widths={s: _last_dim(source, k) for s, k in kernels.items()},
            embedding_size=_last_dim(source, BOTTLENECK), block_counts=blocks,
            tasks=[TaskSpec(FACE_TASK, classes)], sharing=sharing,
            **({"name": name} if name else {})).build_variables()
    except ValueError as e:
        raise FacenetImportError(f"{source.path}: its shapes do not make an Inception-ResNet-v1: {e}") from None


def _check_values(source: Source, targets: dict) -> None:
    _require(source, targets)
    problems = []
    for key, variable in targets.items():
        value = source.values[key]
        if not np.issubdtype(np.asarray(value).dtype, np.floating):
            problems.append(f"{key}: dtype {np.asarray(value).dtype} in the file, a float is needed")
        elif tuple(np.shape(value)) != tuple(variable.shape):
            problems.append(f"{key}: shape {tuple(np.shape(value))} in the file, {tuple(variable.shape)} "
                            "in the model")
    if problems:
        more = f"; and {len(problems) - 5} more" if len(problems) > 5 else ""
        raise FacenetImportError(f"{source.path}: {len(problems)} variable(s) do not fit the model (shape "
                                 f"or dtype mismatch): {'; '.join(problems[:5])}{more}")
