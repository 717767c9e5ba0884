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


def test_steps_per_call_runs_the_same_steps_in_calls_that_end_at_every_pruning_step_and_stop():
    """A compiled loop of many steps (``Trainer(steps_per_call=...)``) runs the same steps on the same
    batches as one call a step, each call ending at the next pruning step or `stops` entry, and reports
    every step to ``on_step``. (Not bit for bit: TensorFlow fuses a convolution's ops differently inside
    a loop, and Adam turns the rounding of a near-zero gradient into a step of its learning rate.)"""
    from paenet.pruning import round_schedules
    rng = np.random.default_rng(3)
    data = tf.data.Dataset.from_tensor_slices((rng.random((64, 16, 16, 3), np.float32),
                                               rng.integers(0, 3, 64))).batch(8)
    schedule = round_schedules((0.5,), 14, 6, 2)[0]          # prunes before steps 0, 2, 4 and 6
    calls = []

    class Counting(Trainer):
        def _run(self, batches, count):
            calls.append(count)
            return super()._run(batches, count)

    results = []
    for per_call in (1, 4):
        tf.keras.utils.set_random_seed(1)
        packer = Packer(tiny_cnn(), "adam")
        packer.start_task(TaskSpec("a", 3))
        seen = []
        calls.clear()
        trainer = Counting(packer, progress=False, steps_per_call=per_call)
        trainer.train(data, 14, schedule, on_step=lambda step, value: seen.append((step, np.isfinite(value))), stops={9})
        pruned = [float(np.mean(l.mask.numpy() == 0)) for l in packer.model.masked_layers()]
        following = next(trainer.batches(data))[1].numpy()
        results.append((seen, pruned, list(calls), following))
    (seen_1, pruned_1, calls_1, next_1), (seen_4, pruned_4, calls_4, next_4) = results
    assert calls_1 == [1] * 14 and calls_4 == [2, 2, 2, 3, 4, 1]
    assert seen_1 == seen_4 == [(step, True) for step in range(1, 15)]
    assert np.array_equal(next_1, next_4)           # as many batches drawn
    assert pruned_1 == pruned_4 and min(pruned_4) > 0.4


def test_a_compiled_loop_reads_the_masks_at_each_call_so_that_no_entry_it_does_not_own_moves():
    """Many steps a call (the masks compared with the task once a call, ``masks_read_once``): task 1's
    entries stay bit-identical, and the entries pruned between two calls stay 0.0
    through the next (they would move if a call reused the comparisons of the call before)."""
    packer, x = _one_task_packer("fresh")
    first = [(l.kernel.numpy(), l.mask.numpy() == 1) for l in packer.model.masked_layers()]
    packer.start_task(TaskSpec("two", 2))
    data = tf.data.Dataset.from_tensors((x, RNG.integers(0, 2, 8)))
    trainer = Trainer(packer, progress=False, steps_per_call=4)
    trainer.train(data, 4)
    packer.prune(0.5)
    trainer.train(data, 8, start=4)
    for layer, (kernel, owned_by_one) in zip(packer.model.masked_layers(), first):
        after, mask = layer.kernel.numpy(), layer.mask.numpy()
        assert after[owned_by_one].tobytes() == kernel[owned_by_one].tobytes(), layer.name
        assert np.any(mask == 0) and np.all(after[mask == 0] == 0.0), layer.name
        assert np.any(after[mask == 2] != 0.0), layer.name
