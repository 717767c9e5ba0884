"""PAE's training recipe: L2 on the kernel entries the task owns, and validation during a training phase
with plateau decay (lr x 0.1 and the best state restored; the second plateau ends the phase)."""
import numpy as np
import pytest
import tensorflow as tf

from paenet.config import PackingPlan
from paenet.data.arrays import array_dataset
from paenet.goal import Goal, GoalLoop, LoopObserver
from paenet.models import TaskSpec
from paenet.packing import Packer
from paenet.training import make_train_step, owned_l2
from tiny_models import one_block_cnn

SIZE = 8


def _data(n=32, seed=0):
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 2, n)
    images = rng.normal(0, 1, (n, SIZE, SIZE, 3)).astype(np.float32) + labels[:, None, None, None]
    return images, labels


def _packer_with_two_tasks():
    packer = Packer(one_block_cnn(SIZE, name="m"))
    packer.start_task(TaskSpec("one", 2))
    packer.prune(0.5)
    packer.finish()
    packer.start_task(TaskSpec("two", 2))
    return packer


def test_the_l2_penalty_counts_exactly_the_entries_the_task_owns():
    packer = _packer_with_two_tasks()
    model = packer.model
    images, labels = _data()
    x, y = tf.constant(images[:16]), tf.constant(labels[:16])
    make_train_step(model, packer.optimizer, 2)(x, y)       # the claimed entries start at 0.0
    expected = sum(float(np.sum(np.where(l.mask.numpy() == 2, l.kernel.numpy(), 0.0) ** 2)) / 2
                   for l in model.masked_layers())
    assert 0 < expected < sum(float(np.sum(l.kernel.numpy() ** 2)) / 2 for l in model.masked_layers())
    assert float(owned_l2(model, 2)) == pytest.approx(expected, rel=1e-5)

    snapshot = packer.snapshot_task()
    plain = float(make_train_step(model, packer.optimizer, 2)(x, y))
    packer.restore_task(snapshot)
    penalised = float(make_train_step(model, packer.optimizer, 2, l2=1000.0)(x, y))
    assert penalised - plain == pytest.approx(1000.0 * expected, rel=1e-3)


class _Rates(LoopObserver):
    """Records the learning rate at every step."""

    def __init__(self):
        self.rates = []

    def on_step(self, loop, loss):
        self.rates.append(float(loop.current_packer.optimizer.learning_rate.numpy()))


def test_a_plateau_decays_the_rate_restores_the_best_state_and_the_second_one_ends_the_phase():
    packer = Packer(one_block_cnn(SIZE, name="m"),
                    optimizer={"class_name": "Adam", "config": {"learning_rate": 0.01}})
    images, labels = _data()
    scripted = iter([0.5, 0.7, 0.6, 0.65])     # best at step 4; no gain at steps 6 and 8: two plateaus
    seen = {}

    def validate(model, task):
        step = loop.state.phase_step
        seen[step] = packer.snapshot_task()
        return next(scripted)

    plan = PackingPlan(train_steps=40, targets=(0.5,), steps_per_round=2, prune_steps=1, frequency=1,
                       eval_every=2, plateau_patience=1)
    observer = _Rates()
    loop = GoalLoop(packer, TaskSpec("one", 2), array_dataset(images, labels, 8, training=True), validate,
                    Goal(absolute=0.0), plan, observer=observer, progress=False)
    packer.start_task(TaskSpec("one", 2))
    loop.state.stage = "train"
    loop.state.target = 0.0
    accuracy = loop._train_phase(loop.trainer, packer, "train")

    assert accuracy == 0.7 and sorted(seen) == [2, 4, 6, 8]
    assert observer.rates[:6] == pytest.approx([0.01] * 6)
    assert observer.rates[6:] == pytest.approx([0.001] * 2)     # decayed after the plateau at step 6, and
    assert len(observer.rates) == 8                             # the second plateau, at step 8, ended the phase
    best = seen[4]
    assert all(np.array_equal(v, best[k]) for k, v in packer.snapshot_task().items())
    assert float(packer.optimizer.learning_rate.numpy()) == pytest.approx(0.01)
    assert [h[0] for h in loop.state.history][-1] == "train" and loop.state.plateau is None
