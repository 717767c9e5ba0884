"""Task records: what a finished task owns, how sparse it is, how well it does, and a digest of it.

The digest is a SHA-256 over the task's effective kernels (DESIGN §1 (a)), its picking bits if it picks
(CPG), and its task-specific variables (b), each framed by its key, dtype and shape. Any later change to what the task computes with changes the
digest; ``verify`` refuses a model whose finished tasks no longer match their records.
"""
from __future__ import annotations

import contextlib
import dataclasses
import hashlib
import json

import numpy as np

from paenet.config import DEFAULT_METHOD
from paenet.models.base import dtype_policy, layer_key


class IntegrityError(RuntimeError):
    """A finished task's weights or task-specific variables changed since its record was written."""


@dataclasses.dataclass
class TaskRecord:
    """The state of task `task` when it finished (JSON-serialisable)."""

    task: int
    name: str
    num_classes: int
    sharing: str
    digest: str
    owned: dict[str, int]                 # kernel weights the task owns, per layer
    space: dict[str, int] = dataclasses.field(default_factory=dict)         # N_L when pruning began
    sparsity: dict[str, float] = dataclasses.field(default_factory=dict)    # released / N_L
    metrics: dict[str, float] = dataclasses.field(default_factory=dict)
    pruning: list[dict] = dataclasses.field(default_factory=list)           # one entry per round
    expansions: list[dict] = dataclasses.field(default_factory=list)        # round, widths, parameters
    method: str = DEFAULT_METHOD          # the continual-learning method that packed it (paenet.methods)
    compute_dtype: str = "float32"        # the Keras dtype policy the task computes under (in its digest)

    def to_dict(self) -> dict:
        return dataclasses.asdict(self)

    @classmethod
    def from_dict(cls, d: dict) -> "TaskRecord":
        return cls(**d)


def _update(h, key: str, array: np.ndarray):
    h.update(f"{key}|{array.dtype.str}|{array.shape}\n".encode())
    h.update(np.ascontiguousarray(array).tobytes())


def task_digest(model, task: int) -> str:
    """SHA-256 (hex) of task `task`'s effective kernels and task-specific variables."""
    task = model.check_task(task)
    h = hashlib.sha256()
    if model.dtype_policy.name != "float32":        # (float32 digests stay what they were before policies)
        h.update(f"compute_dtype|{model.dtype_policy.name}\n".encode())
    for layer in sorted(model.masked_layers(), key=layer_key):
        _update(h, layer_key(layer), np.asarray(layer.effective_kernel(task)))
        bits = layer.pick_bits(task)
        if bits is not None:
            _update(h, f"{layer_key(layer)}/picks", bits)
    for key, value in sorted(model.task_values(task).items()):
        _update(h, key, value)
    return h.hexdigest()


@contextlib.contextmanager
def dtype_policy_of(records):
    """Keras' global dtype policy set, for the duration, to the one the finished tasks of `records`
    (dicts or ``TaskRecord``) were finished under: a model built inside computes as they did whatever
    the process's policy is. Unchanged for no records; IntegrityError when they disagree."""
    import keras
    policies = {r.get("compute_dtype", "float32") if isinstance(r, dict) else r.compute_dtype for r in records}
    if len(policies) > 1:
        raise IntegrityError(f"finished tasks recorded under different dtype policies {sorted(policies)}")
    with dtype_policy(policies.pop() if policies else keras.config.dtype_policy()):
        yield


def owned_counts(model, task: int) -> dict[str, int]:
    return {layer_key(l): int(np.count_nonzero(l.mask.numpy() == task)) for l in model.masked_layers()}


def verify(model, records=None) -> None:
    """Raises IntegrityError naming every finished task whose digest no longer matches its record; with
    no `records`, the digests the model holds for its finished tasks (``PackableModel.task_digests``,
    set when a ``Packer`` finished or adopted them), so that a change made behind every guard (a raw
    ``tf.Variable.assign``) is named wherever the records are not at hand."""
    if records is None:
        records = [TaskRecord(t, model.task_specs[t - 1].name, 0, model.sharing, digest, {})
                   for t, digest in enumerate(model.task_digests, start=1)]
    failed = []
    for record in records:
        if record.task > model.num_tasks or model.task_specs[record.task - 1].name != record.name:
            failed.append(f"task {record.task} ({record.name}) is missing from the model")
        elif task_digest(model, record.task) != record.digest:
            failed.append(f"task {record.task} ({record.name}): digest mismatch")
    if failed:
        raise IntegrityError("finished tasks changed since they were recorded, refusing to use them: "
                             + "; ".join(failed))


def json_checksum(obj) -> str:
    """SHA-256 (hex) of `obj`'s canonical JSON: guards the figures of a saved file (records, config)
    against a flipped bit or an edit, as ``task_digest`` guards the weights."""
    return hashlib.sha256(json.dumps(obj, sort_keys=True, separators=(",", ":")).encode()).hexdigest()


def check_json_checksum(obj: dict, path: str, key: str = "checksum") -> dict:
    """`obj` without its `key`, once that matches ``json_checksum`` of the rest; IntegrityError naming
    `path` otherwise."""
    if not isinstance(obj, dict) or key not in obj:
        raise IntegrityError(f"{path}: no {key} (not written by PAENet, or damaged)")
    rest = {k: v for k, v in obj.items() if k != key}
    if obj[key] != json_checksum(rest):
        raise IntegrityError(f"{path}: {key} mismatch: the file was changed or damaged since it was written")
    return rest


def read_json(path: str):
    """The JSON content of `path`; IntegrityError naming the file when it is damaged (truncated, a
    flipped bit that breaks its syntax)."""
    try:
        with open(path, "rb") as f:
            return json.loads(f.read().decode())
    except (UnicodeDecodeError, json.JSONDecodeError) as e:
        raise IntegrityError(f"{path}: unreadable ({e})") from e
