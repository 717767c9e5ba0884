"""Reading a TFLite FaceNet whose BatchNorm and residual scales are folded into its convs (DESIGN §6).

A converter folds ``conv → BatchNorm(scale=False)`` into a conv with bias, ``W·x + b``, and the residual
scale s of a block into that block's up-projection. Both unfold exactly into FaceNet's parameterisation:

* conv (or the Bottleneck dense) + BatchNorm: ``weights = W``, ``beta = b``, ``moving_mean = 0``,
  ``moving_variance = 1 − ε``, so that BatchNorm computes ``(x − 0) / sqrt(1 − ε + ε) + b = x + b``;
* a block up-projection (``…/Conv2d_1x1`` after the concat): ``weights = W / s``, ``biases = b / s``.

Weights are dequantized (uint8/int8, and int32 biases) in float64 and stored as float32; conv kernels go
from TFLite's OHWI to HWIO, the dense kernel from [out, in] to [in, out]. A layer is recognised by the name
of its weights tensor, ``InceptionResnetV1/<scope>/weights`` (``…/weights/transpose`` for the dense), and its
bias is whatever tensor its operator takes as bias.
"""
from __future__ import annotations

import re

import numpy as np

from paenet.facenet_import.tflite_model import (CONV_2D, FULLY_CONNECTED, RESHAPE, TruncatedError, dequantize,
                                              is_tflite, parse_tflite)
from paenet.facenet_import.source import FacenetImportError, Source
from paenet.models.inception_resnet_v1 import BN_EPSILON, ROOT, count_blocks, residual_scales

WEIGHTS_NAME = re.compile(rf"{ROOT}/(?P<scope>.+)/weights(/transpose)?")


def read_tflite(path: str) -> Source:
    """The FaceNet parameters of the TFLite model at `path`, unfolded into FaceNet's parameterisation."""
    with open(path, "rb") as f:
        data = f.read()
    if not is_tflite(data):
        raise FacenetImportError(f"{path}: not a TFLite model (no 'TFL3' file identifier)")
    try:
        model = parse_tflite(data)
    except TruncatedError as e:
        raise FacenetImportError(f"{path}: truncated or corrupt TFLite file: {e}") from None
    except ValueError as e:
        raise FacenetImportError(f"{path}: unusable TFLite model: {e}") from None
    values, origin = {}, {}

    def put(name: str, value: np.ndarray, tensor: str | None):
        if name in values:
            raise FacenetImportError(f"{path}: two operators hold the parameters of {name}")
        values[name], origin[name] = value.astype(np.float32), tensor

    scales = residual_scales(count_blocks(t.name for t in model.tensors))
    for op in model.operators:
        if op.code not in (CONV_2D, FULLY_CONNECTED) or len(op.inputs) < 2:
            continue
        weights = model.tensors[op.inputs[1]]
        found = WEIGHTS_NAME.fullmatch(weights.name)
        if not found or weights.data is None:
            continue                    # not a FaceNet layer: its constants are reported as unused
        scope = f"{ROOT}/{found.group('scope')}"
        try:
            kernel = dequantize(weights)
            kernel = kernel.transpose(1, 2, 3, 0) if op.code == CONV_2D else kernel.T
            bias_tensor = model.tensors[op.inputs[2]] if len(op.inputs) > 2 and op.inputs[2] >= 0 else None
            bias = dequantize(bias_tensor) if bias_tensor is not None else np.zeros(kernel.shape[-1])
        except ValueError as e:
            raise FacenetImportError(f"{path}: {e}") from None
        bias_name = bias_tensor.name if bias_tensor is not None else None
        scale = scales.get(found.group("scope"))
        if scale is not None:
            put(f"{scope}/weights", kernel / scale, weights.name)
            put(f"{scope}/biases", bias / scale, bias_name)
        else:
            put(f"{scope}/weights", kernel, weights.name)
            put(f"{scope}/BatchNorm/beta", bias, bias_name)
            put(f"{scope}/BatchNorm/moving_mean", np.zeros_like(bias), None)
            put(f"{scope}/BatchNorm/moving_variance", np.full_like(bias, 1.0 - BN_EPSILON), None)
    shapes = {op.inputs[1] for op in model.operators if op.code == RESHAPE and len(op.inputs) > 1}
    constants = [t.name for i, t in enumerate(model.tensors) if t.data is not None and i not in shapes]
    used = set(origin.values())
    return Source(path=path, format="tflite", values=values, origin=origin,
                  unmapped=[name for name in constants if name not in used],
                  input_size=_input_size(model))


def _input_size(model) -> int | None:
    """The side of the model's square NHWC image input, if it has one."""
    if not model.inputs:
        return None
    shape = model.tensors[model.inputs[0]].shape
    return shape[1] if len(shape) == 4 and shape[1] == shape[2] else None
