"""FLOPs per image of a task's forward pass, counted from the shapes its layers compute with.

Every convolution and matrix product of task t's inference pass is traced at batch 1 (the masked convs
and dense layers at the kernel shapes task t computes with, after an expansion too, its up-projections,
Bottleneck and head) and counted as 2 FLOPs per multiply-accumulate: a conv gives output elements x
kh x kw x in-channels MACs, a [m, k] x [k, n] product m x k x n. BatchNorm, ReLU, pooling and the
residual adds are left out (the usual convention; well under 1% of Inception-ResNet-v1's count).

A train step costs about ``TRAIN_FLOPS_PER_FORWARD`` times the forward pass: the forward pass, then
gradients with respect to both the inputs and the weights of every layer, each as costly as the forward.
"""
from __future__ import annotations

import math

import tensorflow as tf

TRAIN_FLOPS_PER_FORWARD = 3


def forward_flops(model, task: int) -> int:
    """FLOPs per image of task `task`'s forward pass through `model` (a ``PackableModel``)."""
    task = model.check_task(task)
    spec = tf.TensorSpec((1, *model.image_shape), tf.float32)
    graph = tf.function(lambda x: model(x, task=task, training=False),
                        autograph=False).get_concrete_function(spec).graph
    return sum(op_flops(op) for op in graph.get_operations())


def op_flops(op) -> int:
    """2 x the multiply-accumulates of a ``Conv2D`` or ``MatMul`` graph op of known shapes; 0 for others."""
    if op.type == "Conv2D":
        kh, kw, channels, _ = op.inputs[1].shape
        return 2 * math.prod(op.outputs[0].shape) * kh * kw * channels
    if op.type == "MatMul":
        a, b = (tuple(t.shape) for t in op.inputs)
        m, k = a[::-1] if op.get_attr("transpose_a") else a
        n = b[0] if op.get_attr("transpose_b") else b[1]
        return 2 * m * k * n
    return 0
