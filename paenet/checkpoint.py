"""The one place that writes and reads run state: every checkpoint file name and format is here.

Two folders (WORKSPACE.md documents both for users):

* a packing folder (a workspace's ``packing/``): the finished state, ``model.json`` (the network's Keras
  config), ``variables/variables*`` (a ``tf.train.Checkpoint`` of every variable by key) and
  ``state.json`` (``Packer.state()``, with checksums of itself and of ``model.json``). ``save_packing`` /
  ``load_packing``.
* an active folder (a workspace's ``active/``): the task being packed, ``ActiveCheckpoints``. Each
  ``ckpt-N`` (``tf.train.CheckpointManager``, the two newest kept) holds in one file set, so that they
  always agree: the model's variables (picks included), both optimizers' slots (``ExactFreezingOptimizer``'s
  weights' and picks' optimizers), the data iterator's position and the JSON run state (``run_state``:
  the loop's state, ``Packer.state()`` and the trainer's phase loss, the model's config, the step count and
  the kept snapshot's name). ``best-N.npz`` is the goal loop's kept snapshot, ``start-N.npz`` the state a
  growth restarts the task from (CPG).
"""
from __future__ import annotations

import json
import os
import sys
import zipfile
from pathlib import Path

import keras
import numpy as np
import tensorflow as tf

from paenet.distribute import worker_local_variables
from paenet.fileio import error_line, write_json_atomic, write_replacing
from paenet.packing import Packer
from paenet.records import IntegrityError, check_json_checksum, dtype_policy_of, json_checksum, read_json, verify

MODEL_FILE = "model.json"
STATE_FILE = "state.json"
PACKING_FILES = (MODEL_FILE, STATE_FILE)
VARIABLES = os.path.join("variables", "variables")
STATE_KEY = "state/.ATTRIBUTES/VARIABLE_VALUE"
IDLE_PHASE_LOSS = [0.0, 0]      # a packing holds no training phase in progress


# The packing folder.

def is_packing(path) -> bool:
    return all(os.path.isfile(os.path.join(path, name)) for name in PACKING_FILES)


def save_packing(packer: Packer, directory) -> None:
    """Writes `packer`'s model config, variables and records to `directory`, replacing it atomically.
    Every finished task is verified first: a model whose finished task changed never replaces a good save."""
    verify(packer.model, packer.records)
    model_config = keras.saving.serialize_keras_object(packer.model)
    state = {**packer.state(), "phase_loss": IDLE_PHASE_LOSS, "model_checksum": json_checksum(model_config)}
    state["checksum"] = json_checksum(state)

    def write(tmp):
        os.makedirs(tmp)
        with open(os.path.join(tmp, MODEL_FILE), "w") as f:
            json.dump(model_config, f, indent=2)
        tf.train.Checkpoint(variables=_named_copies(packer.model)).write(os.path.join(tmp, VARIABLES))
        write_json_atomic(os.path.join(tmp, STATE_FILE), state)
    write_replacing(str(directory), write)


def load_packing(directory, optimizer="adam", **kwargs) -> Packer:
    """The packer ``save_packing`` wrote to `directory` (see ``Packer.from_state``; `kwargs` go to it);
    a damaged or edited file is an IntegrityError naming it."""
    directory = str(directory)
    for name in PACKING_FILES:
        if not os.path.exists(os.path.join(directory, name)):
            raise FileNotFoundError(f"{directory} is not a saved PAENet packing: {name} is missing")
    state_path = os.path.join(directory, STATE_FILE)
    state = check_json_checksum(read_json(state_path), state_path)
    path = os.path.join(directory, MODEL_FILE)
    model_config = read_json(path)
    if json_checksum(model_config) != state.pop("model_checksum"):
        raise IntegrityError(f"{path}: does not match the checksum {STATE_FILE} holds for it")
    try:
        model = _rebuild(model_config, state["records"])
    except IntegrityError:
        raise
    except Exception as e:
        raise IntegrityError(f"{path}: cannot rebuild the model: {e}") from e
    prefix = os.path.join(directory, VARIABLES)
    try:
        tf.train.Checkpoint(variables=model.checkpoint_variables()).read(prefix).assert_consumed()
    except (tf.errors.OpError, AssertionError, ValueError, IndexError) as e:    # (IndexError: a truncated file)
        raise IntegrityError(f"{prefix}: damaged, or not the checkpoint of this model: {error_line(e)}") from e
    return Packer.from_state(model, state, optimizer, **kwargs)


def packed_records(directory) -> list | None:
    """The record dicts of a packing folder's ``state.json``, parsed and nothing more (a quick look at
    which tasks are finished; ``load_packing`` verifies them); None where there is no ``state.json``.
    ValueError if it cannot be parsed."""
    path = Path(directory) / STATE_FILE
    if not path.exists():
        return None
    try:
        records = json.loads(path.read_text())["records"]
    except (KeyError, TypeError) as e:
        raise ValueError(f"{path}: no list of records") from e
    if not isinstance(records, list):
        raise ValueError(f"{path}: no list of records")
    return records


def _named_copies(model) -> dict:
    # Copies named by their keys: a variable's own name can hold a per-process counter (a dropout's seed
    # generator), which would make two saves of the same values differ in bytes.
    # Plain variables on every worker: a multi-worker strategy cannot broadcast a uint8 mask.
    with worker_local_variables():
        return {k: tf.Variable(v, name=k, trainable=False) for k, v in model.checkpoint_variables().items()}


def _rebuild(model_config: dict, records: list):
    with dtype_policy_of(records):
        return keras.saving.deserialize_keras_object(model_config).build_variables()


# The active folder.

def run_state(facts: dict, loop_state: dict, packer: Packer, trainer, global_step: int, best: str | None,
              start: str | None = None) -> dict:
    """The JSON run state of a checkpoint: the run's `facts` (task, goal, plan, method), the loop's
    state, the packer's state with the `trainer`'s phase loss, the training steps so far and the names
    of the kept snapshot and of the restart point (if any)."""
    return {**facts, "loop": loop_state, "packer": {**packer.state(), "phase_loss": list(trainer.phase_loss)},
            "global_step": global_step, "best": best, **({"start": start} if start else {})}


class ActiveCheckpoints:
    """The checkpoints of the task being packed, in `directory`."""

    def __init__(self, directory):
        self.directory = Path(directory)
        self.prefix = None          # the checkpoint ``latest_state`` chose / ``save`` wrote

    def latest_state(self) -> dict | None:
        """The JSON state (``run_state``) of the newest readable checkpoint (which ``restore`` then
        restores), or None when there is none. Every tensor of it is read, so a truncated or bit-flipped
        checkpoint is found here: the one before it is used instead (reported on stderr), and when none
        can be read that is an IntegrityError naming them; never a silent restart."""
        self.prefix = None
        indexes = sorted(self.directory.glob("ckpt-*.index"), key=_checkpoint_number, reverse=True)
        failures = []
        for index in indexes:
            prefix = str(index)[:-len(".index")]
            try:
                state = _read_state(prefix)
            except IntegrityError as e:
                failures.append(str(e))
                continue
            if failures:
                print(f"{'; '.join(failures)}: resuming from {prefix} instead", file=sys.stderr)
            self.prefix = prefix
            return state
        if failures:
            raise IntegrityError("; ".join(failures) + f": no readable checkpoint left in {self.directory} "
                                 "(WORKSPACE.md, Recovery)")
        return None

    def save(self, packer: Packer, state: dict, number: int, iterator=None) -> None:
        """Checkpoints `packer`'s model and optimizer slots and the data `iterator` with `state` (a
        ``run_state``) as ``ckpt-<number>``; its finished tasks are verified first. Snapshots no kept
        checkpoint names are deleted."""
        verify(packer.model, packer.records)
        state = {**state, "model": keras.saving.serialize_keras_object(packer.model)}
        checkpoint = _checkpoint(packer, iterator, json.dumps(state))
        manager = tf.train.CheckpointManager(checkpoint, str(self.directory), max_to_keep=2)
        self.prefix = manager.save(checkpoint_number=number)
        states = [state] + [_read_state(p, check=False) for p in manager.checkpoints[:-1]]
        needed = {s.get(key) for s in states for key in ("best", "start")}
        for old in [*self.directory.glob("best-*.npz"), *self.directory.glob("start-*.npz")]:
            if old.name not in needed:
                old.unlink()

    def restore_packer(self, state: dict, optimizer, **kwargs) -> Packer:
        """The packer of `state` (what ``latest_state`` returned), its model rebuilt and its variables
        read from the chosen checkpoint (`kwargs` go to ``Packer.from_state``)."""
        model = _rebuild(state["model"], state["packer"]["records"])
        tf.train.Checkpoint(variables=model.checkpoint_variables()).read(self.prefix).expect_partial()
        return Packer.from_state(model, state["packer"], optimizer, **kwargs)

    def restore(self, packer: Packer, trainer, dataset, state: dict) -> None:
        """Restores the chosen checkpoint into `packer` (built from `state`) and `trainer`: variables,
        optimizer slots, the position of its iterator over `dataset` (if any) and its phase loss."""
        iterator = trainer.batches(dataset) if dataset is not None else None
        _checkpoint(packer, iterator, "").read(self.prefix).assert_existing_objects_matched()
        trainer.phase_loss = list(state["packer"].get("phase_loss", IDLE_PHASE_LOSS))

    def save_best(self, snapshot: dict, number: int, kind: str = "best") -> str:
        """Writes the goal loop's kept snapshot (or, `kind` "start", its restart point); returns its file
        name. Older ones stay until a checkpoint that names this one is written (``save``)."""
        self.directory.mkdir(parents=True, exist_ok=True)
        name = f"{kind}-{number}.npz"
        tmp = self.directory / f".tmp-{name}"
        with open(tmp, "wb") as f:
            np.savez(f, **{k.replace("/", "|"): v for k, v in snapshot.items()})
        os.replace(tmp, self.directory / name)
        return name

    def load_best(self, name: str) -> dict:
        path = self.directory / name
        try:
            with np.load(path) as data:
                return {k.replace("|", "/"): data[k] for k in data.files}
        except (OSError, ValueError, zipfile.BadZipFile, EOFError) as e:
            raise IntegrityError(f"{path}: unreadable ({e})") from e


def _checkpoint(packer: Packer, iterator, state: str) -> tf.train.Checkpoint:
    with worker_local_variables():         # (a multi-worker strategy cannot broadcast a string)
        text = tf.Variable(state, dtype=tf.string)
    objects = {"variables": packer.model.checkpoint_variables(),
               "optimizer": {f"{i:04d}": v.value for i, v in enumerate(packer.optimizer.variables)},
               "state": text}
    if iterator is not None:
        objects["iterator"] = iterator
    return tf.train.Checkpoint(**objects)


def _checkpoint_number(index: Path) -> int:
    return int(index.name[len("ckpt-"):-len(".index")])


def _read_state(prefix: str, check: bool = True) -> dict:
    """The JSON state of the active checkpoint `prefix`; with `check`, every tensor is read first (the
    checkpoint format's checksums find a damaged one). IntegrityError naming it if it cannot be read."""
    try:
        reader = tf.train.load_checkpoint(prefix)
        if check:
            dtypes = reader.get_variable_to_dtype_map()
            tf.raw_ops.RestoreV2(prefix=prefix, tensor_names=list(dtypes), shape_and_slices=[""] * len(dtypes),
                                 dtypes=list(dtypes.values()))
        return json.loads(reader.get_tensor(STATE_KEY).decode())
    except (tf.errors.OpError, ValueError, IndexError, UnicodeDecodeError) as e:
        raise IntegrityError(f"{prefix}: unreadable checkpoint ({error_line(e)})") from e
