"""Reading FaceNet's frozen GraphDef (``20180402-114759.pb``): the parameters are ``Const`` nodes.

A parameter is a constant that feeds, through ``Identity``/``Switch`` nodes only (the ``.../read`` and
``tf.cond`` plumbing that freezing leaves), the filter of a ``Conv2D``, the weights of a ``MatMul``, the bias
of a ``BiasAdd``, or the offset, mean or variance of an inference-mode ``FusedBatchNorm``. Freezing names
each constant after its variable, so these are FaceNet's checkpoint names. Every inference BatchNorm is
checked to be FaceNet's form (epsilon 1e-3, no scale), since the model could not reproduce another.
"""
from __future__ import annotations

import numpy as np
import tensorflow as tf
from google.protobuf.message import DecodeError

from paenet.facenet_import.source import FacenetImportError, Source
from paenet.models.inception_resnet_v1 import BN_EPSILON

PARAMETER_INPUTS = {"Conv2D": (1,), "MatMul": (1,), "BiasAdd": (1,)}
BATCH_NORMS = ("FusedBatchNorm", "FusedBatchNormV2", "FusedBatchNormV3")
BATCH_NORM_PARAMETERS = (2, 3, 4)           # offset (beta), mean, variance; input 1 is the scale
PASS_THROUGH = ("Identity", "Switch")


def _node_name(tensor: str) -> str:
    return tensor.lstrip("^").split(":")[0]


def _constant(nodes: dict, tensor: str):
    """The Const node that `tensor` is, seen through Identity/Switch nodes; None if it is computed."""
    node = nodes.get(_node_name(tensor))
    while node is not None and node.op in PASS_THROUGH:
        node = nodes.get(_node_name(node.input[0]))
    return node if node is not None and node.op == "Const" else None


def _check_batch_norm(path: str, nodes: dict, node) -> None:
    epsilon = node.attr["epsilon"].f
    if not np.isclose(epsilon, BN_EPSILON, rtol=1e-6, atol=0.0):
        raise FacenetImportError(f"{path}: {node.name} has BatchNorm epsilon {epsilon}; FaceNet's "
                                 f"Inception-ResNet-v1 (and this model) uses {BN_EPSILON}")
    scale = _constant(nodes, node.input[1])
    if scale is None or not np.all(tf.make_ndarray(scale.attr["value"].tensor) == 1.0):
        raise FacenetImportError(f"{path}: {node.name} has a BatchNorm scale (gamma) other than 1; FaceNet's "
                                 "BatchNorm (scale=False), and this model's, has none")


def read_graph_def(path: str) -> Source:
    """The parameters of the frozen GraphDef at `path`, by their constants' names."""
    with open(path, "rb") as f:
        data = f.read()
    graph_def = tf.compat.v1.GraphDef()
    try:
        graph_def.ParseFromString(data)
    except DecodeError as e:
        raise FacenetImportError(f"{path}: not a GraphDef, or a truncated one ({len(data)} bytes): {e}") from None
    nodes = {node.name: node for node in graph_def.node}
    parameters = set()
    for node in graph_def.node:
        if node.op in PARAMETER_INPUTS:
            inputs = PARAMETER_INPUTS[node.op]
        elif node.op in BATCH_NORMS and "is_training" in node.attr and not node.attr["is_training"].b:
            _check_batch_norm(path, nodes, node)
            inputs = BATCH_NORM_PARAMETERS
        else:
            continue
        for i in inputs:
            constant = _constant(nodes, node.input[i]) if i < len(node.input) else None
            if constant is not None:
                parameters.add(constant.name)
    if not parameters:
        raise FacenetImportError(f"{path}: not a frozen GraphDef of a network: no constant feeds a Conv2D, "
                                 f"MatMul, BiasAdd or FusedBatchNorm ({len(nodes)} nodes)")
    values = {name: tf.make_ndarray(nodes[name].attr["value"].tensor) for name in sorted(parameters)}
    return Source(path=path, format="graphdef", values=values)
