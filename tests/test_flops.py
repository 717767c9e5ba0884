"""FLOPs per image from the layer shapes, against a hand count and against tf.profiler's independent count
of the conv and matmul float ops in the frozen inference graph."""
import tensorflow as tf
from tensorflow.python.framework.convert_to_constants import convert_variables_to_constants_v2

from paenet.evaluation.flops import forward_flops
from paenet.expansion import expand, uniform_widths
from paenet.models import InceptionResnetV1, SmallCNN, TaskSpec
from paenet.packing import claim_free_weights


def profiler_flops(model, task: int) -> int:
    """tf.profiler's float_ops of the Conv2D and MatMul ops of task `task`'s frozen inference graph."""
    spec = tf.TensorSpec((1, *model.image_shape), tf.float32)
    concrete = tf.function(lambda x: model(x, task=task, training=False), autograph=False).get_concrete_function(spec)
    frozen = convert_variables_to_constants_v2(concrete)
    builder = tf.compat.v1.profiler.ProfileOptionBuilder
    options = builder(builder.float_operation()).with_empty_output().build()
    options["account_type_regexes"] = ["Conv2D", "MatMul"]
    return tf.compat.v1.profiler.profile(frozen.graph, options=options).total_float_ops


def test_small_cnn_count_is_the_hand_count_and_the_profilers():
    model = SmallCNN(widths=(8, 16), dense_units=32, input_shape=(32, 32, 3),
                     tasks=[TaskSpec("a", 10)]).build_variables()
    convs = 32 * 32 * 8 * (3 * 3 * 3) + 16 * 16 * 16 * (3 * 3 * 8)   # output elements x kh kw cin
    dense = 16 * 32 + 32 * 10                                          # features -> dense -> head
    assert forward_flops(model, 1) == 2 * (convs + dense) == profiler_flops(model, 1)


def test_inception_count_follows_each_tasks_shapes_and_matches_the_profiler():
    model = InceptionResnetV1(input_size=80, width_multiplier=0.0625, block_counts=(1, 1, 1),
                              tasks=[TaskSpec("old", 3), TaskSpec("new", 5)]).build_variables()
    claim_free_weights(model, 1)
    narrow = forward_flops(model, 2)
    wide = expand(model, uniform_widths(model.width_config(), 1.5, 1), active_task=2)
    old, new = forward_flops(wide, 1), forward_flops(wide, 2)
    assert old == profiler_flops(wide, 1)
    assert old < narrow < new            # task 1 computes at its frozen widths (and has the smaller head)
