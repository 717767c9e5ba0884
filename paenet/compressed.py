"""The compressed export: a packed model in the fewest bytes that still rebuild it exactly.

Masks are packed to the bits they need, free kernel entries (mask 0: pruned or never claimed, always
0.0 in a packed model) are not stored, everything else is stored as it is. The file is an uncompressed
NumPy ``.npz`` (a zip of ``.npy`` members, read with ``allow_pickle=False``):

| member | what |
| --- | --- |
| ``header`` | uint8 array of UTF-8 JSON: ``format`` ("paenet-compressed"), ``version`` (1), ``model`` (the model's Keras serialisation, as a packing's ``model.json``), ``records`` (every finished task's ``TaskRecord``), ``mask_bits``, ``masked`` (per masked layer in model order: ``key``, ``shape``, ``stored`` = kernel entries stored) |
| ``mask/<layer key>`` | the layer's ownership mask, ``mask_bits`` bits per entry, most significant bit first, entries in C order, packed by ``np.packbits`` (the last byte zero-padded) |
| ``kernel/<layer key>`` | the kernel entries whose mask is not 0, in C order, at the kernel's dtype |
| ``picks/<layer key>/t<t>`` | a finished picking task's picks (CPG), 1 bit per entry it may pick from (the entries of tasks 1..t-1 at its kernel shape), in C order, packed by ``np.packbits`` |
| ``variable/<key>`` | every other variable (per-task BatchNorm, biases, heads) as it is |

``mask_bits`` is ceil(log2(num_tasks + 1)): enough for the owners 0..num_tasks. ``load_compressed`` puts
0.0 in every free entry and 0.0 in every pick entry outside the packed bits (as ``Packer.finish`` stores
them), and verifies every record's digest, so a rebuilt model is the packed one. A model whose picking
task is still active (its picks not yet bits) is refused.
"""
from __future__ import annotations

import json

import keras
import numpy as np

from paenet.models.base import layer_key, variable_key
from paenet.records import IntegrityError, TaskRecord, dtype_policy_of, verify
from paenet.fileio import write_replacing

FORMAT = "paenet-compressed"
VERSION = 1


def mask_bits(num_tasks: int) -> int:
    """Bits per mask entry for owners 0..num_tasks: ceil(log2(num_tasks + 1)), at least 1."""
    return max(1, int(num_tasks).bit_length())


def pack_bits(values: np.ndarray, bits: int) -> np.ndarray:
    """The low `bits` bits of every entry of `values` (C order), most significant first, as packed bytes."""
    shifts = np.arange(bits - 1, -1, -1, dtype=np.uint8)
    return np.packbits((values.reshape(-1, 1) >> shifts) & 1)


def unpack_bits(packed: np.ndarray, bits: int, count: int) -> np.ndarray:
    """The `count` uint8 entries that ``pack_bits`` packed at `bits` bits each."""
    planes = np.unpackbits(packed, count=count * bits).reshape(count, bits)
    return (planes << np.arange(bits - 1, -1, -1, dtype=np.uint8)).sum(axis=1, dtype=np.uint8)


def save_compressed(model, records, path: str) -> str:
    """Writes `model` and its finished tasks' `records` to the compressed file `path` (replacing it),
    once every finished task is verified against its record (IntegrityError before anything is written)."""
    verify(model, records)
    bits = mask_bits(model.num_tasks)
    arrays, masked, masked_keys = {}, [], set()
    for layer in model.masked_layers():
        key, mask, kernel = layer_key(layer), layer.mask.numpy(), layer.kernel.numpy()
        arrays[f"mask/{key}"] = pack_bits(mask, bits)
        arrays[f"kernel/{key}"] = kernel[mask != 0]
        masked.append({"key": key, "shape": list(mask.shape), "stored": int(np.count_nonzero(mask))})
        masked_keys |= {variable_key(layer.kernel), variable_key(layer.mask)}
        for t in model.pick_tasks:
            if t > len(records):
                raise ValueError(f"task {t} is still picking: finish it before a compressed export")
            arrays[f"picks/{key}/t{t}"] = np.packbits(layer.pick_bits(t)[layer.pickable(t)])
            masked_keys.add(variable_key(layer.pick_variable(t)))
    for v in model.variables:
        if variable_key(v) not in masked_keys:
            arrays[f"variable/{variable_key(v)}"] = v.numpy()
    header = {"format": FORMAT, "version": VERSION, "model": keras.saving.serialize_keras_object(model),
              "records": [r.to_dict() for r in records], "mask_bits": bits, "masked": masked}
    arrays["header"] = np.frombuffer(json.dumps(header).encode(), np.uint8)

    def write(tmp):
        with open(tmp, "wb") as f:
            np.savez(f, **arrays)

    return write_replacing(path, write)


def _member(archive, name: str, path: str) -> np.ndarray:
    if name not in archive.files:
        raise IntegrityError(f"{path}: member {name!r} is missing")
    return archive[name]


def load_compressed(path: str):
    """Rebuilds the model that ``save_compressed`` wrote; returns ``(model, records)``.

    Raises IntegrityError when the file does not match its own model, or a finished task's digest fails.
    """
    with np.load(path, allow_pickle=False) as archive:
        header = json.loads(_member(archive, "header", path).tobytes().decode())
        if header.get("format") != FORMAT or header.get("version") != VERSION:
            raise IntegrityError(f"{path}: not a {FORMAT} file of version {VERSION}")
        with dtype_policy_of(header["records"]):
            model = keras.saving.deserialize_keras_object(header["model"]).build_variables()
        model.frozen_tasks = 0      # its tasks are being written: finished again once verified below
        layers = {layer_key(l): l for l in model.masked_layers()}
        if [m["key"] for m in header["masked"]] != list(layers):
            raise IntegrityError(f"{path}: masked layers {[m['key'] for m in header['masked']]} do not match "
                                 f"the model's {list(layers)}")
        masked_keys = set()
        for entry in header["masked"]:
            layer = layers[entry["key"]]
            shape = tuple(layer.mask.shape)
            if tuple(entry["shape"]) != shape:
                raise IntegrityError(f"{path}: layer {entry['key']} has shape {entry['shape']}, the model {shape}")
            mask = unpack_bits(_member(archive, f"mask/{entry['key']}", path), header["mask_bits"],
                               int(np.prod(shape))).reshape(shape)
            values = _member(archive, f"kernel/{entry['key']}", path)
            if values.shape != (int(np.count_nonzero(mask)),):
                raise IntegrityError(f"{path}: layer {entry['key']}: {values.shape} kernel values for "
                                     f"{np.count_nonzero(mask)} owned entries")
            kernel = np.zeros(shape, values.dtype)
            kernel[mask != 0] = values
            layer.kernel.assign(kernel)
            layer.mask.assign(mask)
            masked_keys |= {variable_key(layer.kernel), variable_key(layer.mask)}
            for t in model.pick_tasks:
                pickable = layer.pickable(t)
                bits = np.zeros(pickable.shape, bool)
                bits[pickable] = np.unpackbits(_member(archive, f"picks/{entry['key']}/t{t}", path),
                                               count=int(pickable.sum())).astype(bool)
                layer.store_pick_bits(t, bits)
                masked_keys.add(variable_key(layer.pick_variable(t)))
        for v in model.variables:
            if variable_key(v) not in masked_keys:
                v.assign(_member(archive, f"variable/{variable_key(v)}", path))
    records = [TaskRecord.from_dict(r) for r in header["records"]]
    verify(model, records)
    model.mark_finished(records)
    return model, records
