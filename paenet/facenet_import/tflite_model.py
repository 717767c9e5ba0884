"""A TFLite model's first subgraph as data: its tensors (with the constants' stored values and their
quantization), operators and inputs, read through the LiteRT interpreter (``ai_edge_litert``), which
verifies the FlatBuffer before reading it."""
from __future__ import annotations

import dataclasses

import numpy as np

TFLITE_IDENTIFIER = b"TFL3"
CONV_2D, FULLY_CONNECTED, RESHAPE = "CONV_2D", "FULLY_CONNECTED", "RESHAPE"


class TruncatedError(ValueError):
    """The file is not a whole, valid TFLite FlatBuffer."""


@dataclasses.dataclass
class Tensor:
    """A tensor of a TFLite subgraph; `data` holds a constant's stored values (quantized or not)."""

    name: str
    shape: tuple[int, ...]
    data: np.ndarray | None
    scale: np.ndarray
    zero_point: np.ndarray
    quantized_dimension: int


@dataclasses.dataclass
class Operator:
    code: str                # the builtin operator's name, e.g. "CONV_2D"
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
    """The first subgraph of the TFLite model `data`: its tensors (constants with their data: every tensor
    that no operator computes and that is no input), operators and inputs."""
    from ai_edge_litert.interpreter import Interpreter
    try:
        interpreter = Interpreter(model_content=data)
    except ValueError as e:
        raise TruncatedError(str(e)) from None
    operators = [Operator(o["op_name"], [int(i) for i in o["inputs"]], [int(i) for i in o["outputs"]])
                 for o in interpreter._get_ops_details()]    # the interpreter's only listing of the operators
    inputs = [int(d["index"]) for d in interpreter.get_input_details()]
    computed = {i for o in operators for i in o.outputs} | set(inputs)
    tensors = []
    for detail in sorted(interpreter.get_tensor_details(), key=lambda d: d["index"]):
        index, q = int(detail["index"]), detail["quantization_parameters"]
        data_values = None
        if index not in computed:
            try:
                data_values = np.array(interpreter.get_tensor(index))
            except ValueError:          # a tensor without stored values
                pass
        tensors.append(Tensor(name=detail["name"], shape=tuple(int(d) for d in detail["shape"]), data=data_values,
                              scale=np.asarray(q["scales"], np.float32), zero_point=np.asarray(q["zero_points"]),
                              quantized_dimension=int(q["quantized_dimension"])))
    if [i for i, t in enumerate(tensors)] != list(range(len(tensors))):
        raise ValueError("the model's tensors are not numbered 0..n-1")
    return TfliteModel(tensors, operators, inputs)


def dequantize(tensor: Tensor) -> np.ndarray:
    """The float values of a constant tensor: float as stored, or ``(q - zero_point) * scale`` computed in
    float64 (per tensor, or per channel along ``quantized_dimension``)."""
    if tensor.data is None:
        raise ValueError(f"tensor {tensor.name!r} holds no constant data")
    if tensor.data.dtype.kind == "f":
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
