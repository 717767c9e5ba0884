"""A small, bounds-checked FlatBuffers reader and the part of the TFLite schema that holds weights.

TensorFlow is dropping ``tf.lite`` (its ``Interpreter`` warns that it is scheduled for deletion), so the
TFLite model is read here directly. Field numbers are those of ``tensorflow/lite/schema/schema.fbs``. Every
read is checked against the file's length, so a truncated file raises ``TruncatedError`` instead of
returning garbage.
"""
from __future__ import annotations

import dataclasses
import struct

import numpy as np

TFLITE_IDENTIFIER = b"TFL3"
# TensorType -> NumPy dtype, for the types weights come in.
TENSOR_TYPES = {0: "<f4", 1: "<f2", 2: "<i4", 3: "u1", 4: "<i8", 7: "<i2", 9: "i1"}
# BuiltinOperator codes used here.
CONV_2D, FULLY_CONNECTED, RESHAPE = 3, 9, 22


class TruncatedError(ValueError):
    """A read reached past the end of the buffer."""


class Table:
    """A FlatBuffers table at byte `pos` of `data`."""

    def __init__(self, data: bytes, pos: int):
        self.data = data
        self.pos = pos
        self.vtable = pos - _read(data, "<i", pos)
        self.vtable_size = _read(data, "<H", self.vtable)

    def _field(self, index: int) -> int | None:
        slot = 4 + 2 * index
        if slot + 2 > self.vtable_size:
            return None
        offset = _read(self.data, "<H", self.vtable + slot)
        return self.pos + offset if offset else None

    def scalar(self, index: int, fmt: str, default=0):
        at = self._field(index)
        return default if at is None else _read(self.data, fmt, at)

    def table(self, index: int) -> "Table | None":
        at = self._field(index)
        return None if at is None else Table(self.data, at + _read(self.data, "<I", at))

    def _vector(self, index: int) -> tuple[int, int]:
        at = self._field(index)
        if at is None:
            return 0, 0
        start = at + _read(self.data, "<I", at)
        return start + 4, _read(self.data, "<I", start)

    def tables(self, index: int) -> list["Table"]:
        start, count = self._vector(index)
        return [Table(self.data, start + 4 * k + _read(self.data, "<I", start + 4 * k)) for k in range(count)]

    def array(self, index: int, dtype) -> np.ndarray:
        start, count = self._vector(index)
        dtype = np.dtype(dtype)
        _check(self.data, start, count * dtype.itemsize)
        return np.frombuffer(self.data, dtype, count, start) if count else np.zeros(0, dtype)

    def string(self, index: int) -> str:
        return self.array(index, "u1").tobytes().decode("utf-8", errors="replace")


def _check(data: bytes, pos: int, size: int) -> None:
    if pos < 0 or pos + size > len(data):
        raise TruncatedError(f"a read of {size} bytes at offset {pos} goes past the end ({len(data)} bytes)")


def _read(data: bytes, fmt: str, pos: int):
    _check(data, pos, struct.calcsize(fmt))
    return struct.unpack_from(fmt, data, pos)[0]


@dataclasses.dataclass
class Tensor:
    """A tensor of a TFLite subgraph; `data` holds a constant's stored values (quantized or not)."""

    name: str
    shape: tuple[int, ...]
    type: int
    data: np.ndarray | None
    scale: np.ndarray
    zero_point: np.ndarray
    quantized_dimension: int


@dataclasses.dataclass
class Operator:
    code: int
    inputs: list[int]        # tensor indices; -1 for an omitted optional input
    outputs: list[int]


@dataclasses.dataclass
class TfliteModel:
    tensors: list[Tensor]
    operators: list[Operator]
    inputs: list[int]


def is_tflite(data: bytes) -> bool:
    return len(data) >= 8 and data[4:8] == TFLITE_IDENTIFIER


def parse_tflite(data: bytes) -> TfliteModel:
    """The first subgraph of a TFLite flatbuffer: its tensors (with constant data), operators and inputs."""
    model = Table(data, _read(data, "<I", 0))
    codes = [max(c.scalar(0, "<b"), c.scalar(3, "<i")) for c in model.tables(1)]  # deprecated / new code
    buffers = model.tables(4)
    subgraphs = model.tables(2)
    if not subgraphs:
        raise ValueError("the model has no subgraph")
    graph = subgraphs[0]
    tensors = []
    for t in graph.tables(0):
        shape = tuple(int(d) for d in t.array(0, "<i4"))
        ttype = t.scalar(1, "<b")
        buffer_index = t.scalar(2, "<I")
        if buffer_index >= len(buffers):
            raise ValueError(f"tensor {t.string(3)!r} refers to buffer {buffer_index} of {len(buffers)}")
        raw = buffers[buffer_index].array(0, "u1")
        data_values = None
        if raw.size:
            if ttype not in TENSOR_TYPES:
                raise ValueError(f"tensor {t.string(3)!r} has TFLite type {ttype}, which holds no weights")
            data_values = np.frombuffer(raw.tobytes(), TENSOR_TYPES[ttype]).reshape(shape)
        q = t.table(4)
        tensors.append(Tensor(
            name=t.string(3), shape=shape, type=ttype, data=data_values,
            scale=q.array(2, "<f4") if q else np.zeros(0, "<f4"),
            zero_point=q.array(3, "<i8") if q else np.zeros(0, "<i8"),
            quantized_dimension=q.scalar(6, "<i") if q else 0))
    operators = []
    for o in graph.tables(3):
        code_index = o.scalar(0, "<I")
        op = Operator(code=codes[code_index] if code_index < len(codes) else -1,
                      inputs=[int(i) for i in o.array(1, "<i4")], outputs=[int(i) for i in o.array(2, "<i4")])
        if op.code < 0 or not all(-1 <= i < len(tensors) for i in op.inputs + op.outputs):
            raise ValueError(f"operator {len(operators)} refers to an operator code or tensor that does not exist")
        operators.append(op)
    inputs = [int(i) for i in graph.array(1, "<i4")]
    if not all(0 <= i < len(tensors) for i in inputs):
        raise ValueError("the subgraph's inputs refer to tensors that do not exist")
    return TfliteModel(tensors, operators, inputs)


def dequantize(tensor: Tensor) -> np.ndarray:
    """The float values of a constant tensor: float as stored, or ``(q - zero_point) * scale`` computed in
    float64 (per tensor, or per channel along ``quantized_dimension``)."""
    if tensor.data is None:
        raise ValueError(f"tensor {tensor.name!r} holds no constant data")
    if tensor.type in (0, 1):
        return tensor.data.astype(np.float64)
    if tensor.scale.size == 0:
        raise ValueError(f"tensor {tensor.name!r} is an integer tensor without quantization parameters")

    def along_axis(values: np.ndarray) -> np.ndarray:
        values = values.astype(np.float64)
        if values.size == 1:
            return values.reshape(())
        shape = [1] * tensor.data.ndim
        shape[tensor.quantized_dimension] = values.size
        return values.reshape(shape)

    zero_point = tensor.zero_point if tensor.zero_point.size else np.zeros(1)
    return (tensor.data.astype(np.float64) - along_axis(zero_point)) * along_axis(tensor.scale)
