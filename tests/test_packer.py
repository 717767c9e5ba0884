"""Packer unit behaviour: how a new task's own parts start, taking over an imported task, rolling back."""
import numpy as np
import pytest
import tensorflow as tf

from paenet.models import TaskSpec
from paenet.packing import Packer
from paenet.training import Trainer
from tiny_models import one_block_cnn, tiny_cnn

RNG = np.random.default_rng(2)


def _one_task_packer(task_parts):
    packer = Packer(tiny_cnn(name="p"), "adam",
                    task_parts=task_parts)
    packer.start_task(TaskSpec("one", 3))
    x = RNG.normal(size=(8, 16, 16, 3)).astype(np.float32)
    Trainer(packer, progress=False).train(tf.data.Dataset.from_tensors((x, RNG.integers(0, 3, 8))), 5)
    packer.prune(0.5)
    packer.finish()
    return packer, x


@pytest.mark.parametrize("task_parts", ["fresh", "inherit"])
def test_a_new_tasks_batchnorm_starts_fresh_or_inherited(task_parts):
    packer, x = _one_task_packer(task_parts)
    packer.start_task(TaskSpec("two", 2))
    model = packer.model
    for one, two in zip(model.task_variables(1), model.task_variables(2)):
        if "heads" in two.path:
            continue
        if task_parts == "inherit":
            assert one.numpy().tobytes() == two.numpy().tobytes(), two.path
        else:
            assert np.all(two.numpy() == (1.0 if "variance" in two.path else 0.0)), two.path
    assert np.all(model.heads.bias_t2.numpy() == 0)
    if task_parts == "inherit":
        # Its claimed weights are 0.0, so it computes task 1's features exactly.
        def features(task):
            pooled = tf.reduce_mean(_trunk(model, x, task), axis=(1, 2))
            return model.dense_bn(model.dense(pooled, task=task), task=task).numpy()
        assert features(2).tobytes() == features(1).tobytes()


def _trunk(model, x, task):
    for i in (1, 2):
        x = tf.nn.max_pool2d(tf.nn.relu(getattr(model, f"conv{i}_bn")(getattr(model, f"conv{i}")(x, task=task),
                                                                       task=task)), 2, 2, "VALID")
    return x


def test_resume_task_takes_over_an_imported_task_and_cannot_roll_it_back():
    model = one_block_cnn(tasks=[TaskSpec("face", 2)]).build_variables()
    packer = Packer(model, "sgd")
    with pytest.raises(ValueError, match="only task 1"):
        packer.resume_task(2)
    packer.resume_task(1)
    assert packer.active_task == 1 and not packer.can_roll_back
    with pytest.raises(RuntimeError, match="resumed from disk"):
        packer.rollback()


def test_rollback_restores_the_packer_exactly():
    packer, _ = _one_task_packer("fresh")
    model, records, base = packer.model, list(packer.records), packer.base_parameters
    packer.start_task(TaskSpec("two", 2))
    assert packer.can_roll_back
    packer.rollback()
    assert packer.model is model and packer.records == records and packer.base_parameters == base
    assert packer.active_task is None
