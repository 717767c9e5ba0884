"""Cubic schedule and the exact per-layer magnitude pruner (DESIGN §3)."""
import math

import numpy as np
import pytest
import tensorflow as tf

from paenet.benchmarks.references import reference_prune, reference_select_releases
from paenet.models import SmallCNN, TaskSpec, layer_key
from paenet.pruning import CubicSchedule, TaskPruner, release_count, round_schedules, select_releases


def test_cubic_schedule_values():
    s = CubicSchedule(begin_step=10, end_step=50, frequency=10, initial_sparsity=0.1, final_sparsity=0.9)
    assert s.target(10) == pytest.approx(0.1) and s.target(50) == pytest.approx(0.9)
    for t in (20, 30, 40):
        assert s.target(t) == pytest.approx(0.9 + (0.1 - 0.9) * (1 - (t - 10) / 40) ** 3)
    assert [s.target(t) for t in (0, 9, 15, 51, 60)] == [None] * 5
    targets = [s.target(t) for t in range(10, 51, 10)]
    assert targets == sorted(targets)


def test_cubic_schedule_prunes_at_its_end_step_and_round_trips():
    s = CubicSchedule(0, 25, frequency=10, final_sparsity=0.6, power=2)
    assert [t for t in range(30) if s.target(t) is not None] == [0, 10, 20, 25]
    assert s.target(25) == 0.6
    assert CubicSchedule.from_config(s.get_config()) == s
    assert CubicSchedule(5, 5, final_sparsity=0.3).target(5) == 0.3


@pytest.mark.parametrize("kwargs", [dict(begin_step=5, end_step=4), dict(frequency=0),
                                    dict(initial_sparsity=0.5, final_sparsity=0.4), dict(final_sparsity=1.5)])
def test_cubic_schedule_rejects_bad_arguments(kwargs):
    with pytest.raises(ValueError):
        CubicSchedule(**{"begin_step": 0, "end_step": 10, **kwargs})


def test_round_schedules_chain_targets():
    rounds = round_schedules([0.1, 0.5, 0.9], steps_per_round=50, prune_steps=20, frequency=5)
    assert [(r.initial_sparsity, r.final_sparsity) for r in rounds] == [(0.0, 0.1), (0.1, 0.5), (0.5, 0.9)]
    assert all(r.end_step == 20 and r.frequency == 5 for r in rounds)


def test_release_count_rounds_half_up():
    assert [release_count(s, 10) for s in (0.0, 0.14, 0.15, 0.5, 1.0)] == [0, 1, 2, 5, 10]
    assert release_count(0.3, 7) == math.floor(0.3 * 7 + 0.5)


def test_selection_matches_the_sort_based_rule():
    rng = np.random.default_rng(0)
    for trial in range(400):
        n = int(rng.integers(1, 300))
        kernel = rng.normal(size=n).astype(np.float32)
        if trial % 3 == 0:
            kernel = np.round(kernel, 1).astype(np.float32)       # many ties
        if trial % 4 == 0:
            kernel[rng.random(n) < 0.2] = -0.0
        mask = rng.integers(0, 4, n).astype(np.uint8)
        kernel[mask == 0] = 0.0
        space = int(np.count_nonzero((mask == 0) | (mask == 2)))
        count = int(rng.integers(np.count_nonzero(mask == 0), space + 1))
        ours = select_releases(kernel, mask, 2, count)
        assert ours.sum() == count
        np.testing.assert_array_equal(ours, reference_select_releases(kernel, mask, 2, count), err_msg=str(trial))


@pytest.mark.parametrize("dtype", [np.float16, np.float64])
def test_selection_matches_the_sort_based_rule_in_other_float_widths(dtype):
    rng = np.random.default_rng(1)
    for trial in range(50):
        n = int(rng.integers(1, 300))
        kernel = np.round(rng.normal(size=n), 1).astype(dtype)
        kernel[rng.random(n) < 0.2] = -0.0
        mask = rng.integers(0, 3, n).astype(np.uint8)
        count = int(rng.integers(np.count_nonzero(mask == 0), np.count_nonzero(mask <= 1) + 1))
        np.testing.assert_array_equal(select_releases(kernel, mask, 1, count),
                                      reference_select_releases(kernel, mask, 1, count), err_msg=str(trial))


def test_ties_go_to_the_lower_flat_index_and_released_first():
    kernel = np.array([0.5, 0.0, 0.5, 0.5, 0.2, 0.0], np.float32)
    mask = np.array([1, 1, 1, 1, 1, 0], np.uint8)   # index 5 was released earlier
    assert np.flatnonzero(select_releases(kernel, mask, 1, 2)).tolist() == [1, 5]
    assert np.flatnonzero(select_releases(kernel, mask, 1, 4)).tolist() == [0, 1, 4, 5]
    with pytest.raises(ValueError, match="1 are released already"):
        select_releases(kernel, mask, 1, 0)


def _three_owner_model(owners=(1, 2, 3)):
    """Each weight's owner drawn from `owners` (task 2 owns a third of each layer by default: the pruner
    reads and writes its entries alone; with more 2s in `owners` it works on whole arrays)."""
    rng = np.random.default_rng(3)
    model = SmallCNN(widths=(8, 16), dense_units=16, input_shape=(16, 16, 3),
                     tasks=[TaskSpec("a", 2), TaskSpec("b", 2), TaskSpec("c", 2)]).build_variables()
    for layer in model.masked_layers():
        mask = rng.choice(np.array(owners, np.uint8), size=layer.mask.shape)
        layer.mask.assign(mask)
        layer.kernel.assign(np.round(layer.kernel.numpy(), 2))  # ties
    return model


def test_pruner_hits_the_schedule_exactly_and_touches_nothing_else():
    model = _three_owner_model()
    pruner = TaskPruner(model, 2)
    others = {layer_key(l): (l.kernel.numpy(), l.mask.numpy()) for l in model.masked_layers()}
    previous = {k: np.zeros(m.shape, bool) for k, (_, m) in others.items()}
    schedule = CubicSchedule(0, 30, frequency=10, final_sparsity=0.7)
    for step in range(31):
        target = schedule.target(step)
        if target is None:
            continue
        counts = pruner.prune(target)
        for layer in model.masked_layers():
            key = layer_key(layer)
            kernel, mask = layer.kernel.numpy(), layer.mask.numpy()
            kernel0, mask0 = others[key]
            released = mask == 0
            assert counts[key] == released.sum() == release_count(target, pruner.space[key])
            assert np.all(kernel[released] == 0.0)
            assert np.all(mask0[released] == 2), "only task 2's weights are released"
            keep = ~released
            assert kernel[keep].tobytes() == kernel0[keep].tobytes() and np.array_equal(mask[keep], mask0[keep])
            assert np.all(released[previous[key]]), "released sets only grow"
            previous[key] = released
    assert all(s == pytest.approx(0.7, abs=1 / pruner.space[k]) for k, s in pruner.sparsity().items())
    with pytest.raises(ValueError, match="targets must not decrease"):
        pruner.prune(0.2)


@pytest.mark.parametrize("owners", [(1, 2, 3), (1, 2, 2, 2, 2, 3)])
def test_pruner_writes_what_the_sort_based_rule_writes(owners):
    """Bit for bit, step after step, with ties, -0.0 and released weights that are not +0.0 (which a
    step sets to +0.0 even when it releases nothing new), in layers of several sizes that share the
    pruner's scratch arrays; task 2 owning a third of each layer and two thirds of it."""
    model = _three_owner_model(owners)
    layers = model.masked_layers()
    rng = np.random.default_rng(4)
    for layer in layers:
        kernel, mask = layer.kernel.numpy(), layer.mask.numpy()
        kernel[rng.random(kernel.shape) < 0.1] = -0.0
        layer.kernel.assign(kernel)
    pruner = TaskPruner(model, 2)

    def state():
        return [(l.kernel.numpy().tobytes(), l.mask.numpy().tobytes()) for l in layers]

    def set_state(values):
        for layer, (kernel, mask) in zip(layers, values):
            layer.kernel.assign(np.frombuffer(kernel, np.float32).reshape(layer.kernel.shape))
            layer.mask.assign(np.frombuffer(mask, np.uint8).reshape(layer.mask.shape))

    for target, freed in ((0.3, None), (0.3, -0.0), (0.3, 0.25), (0.6, 0.5), (0.6, None)):
        if freed is not None:                    # a released weight in the first layer that is not +0.0
            kernel, mask = layers[0].kernel.numpy(), layers[0].mask.numpy()
            kernel[mask == 0] = np.where(np.arange(np.count_nonzero(mask == 0)) == 0, freed, 0.0)
            layers[0].kernel.assign(kernel)
        before = state()
        pruner.prune(target)
        ours = state()
        set_state(before)
        reference_prune(model, 2, pruner.space, target)
        assert state() == ours, (target, freed)


@pytest.mark.parametrize("owners", [(1, 2, 3), (1, 2, 2, 2, 2, 3)])
def test_pruner_recycles_its_buffers_but_never_one_a_held_value_shares(owners):
    """The arrays a step hands TensorFlow are reused once nothing references them: values read before a
    step (tensors, and NumPy views of them, which share TensorFlow's buffer) keep their bits through every
    later step, while steps that leave nothing held allocate no new buffer."""
    model = _three_owner_model(owners)
    pruner = TaskPruner(model, 2)
    variables = [v for l in model.masked_layers() for v in (l.kernel, l.mask)]
    held = []
    for target in (0.2, 0.4, 0.6):
        for var in variables:
            tensor, bits = tf.convert_to_tensor(var), var.numpy().tobytes()
            held += [(tensor, bits), (np.asarray(tensor), bits)]
            del tensor
        pruner.prune(target)
    for value, bits in held:
        assert np.asarray(value).tobytes() == bits
    buffers = pruner._workspace._written
    shared = [v for v, _ in held if isinstance(v, np.ndarray)
              and any(np.shares_memory(v, b) for bs in buffers.values() for b in bs)]
    assert shared, "held arrays share the pruner's buffers: the check above could fail"
    del held, shared
    pruner.prune(0.7)
    allocated = sum(map(len, buffers.values()))
    for target in (0.75, 0.8, 0.85):
        pruner.prune(target)
    assert sum(map(len, buffers.values())) == allocated


def test_pruner_refuses_a_space_another_task_took_since_the_phase_began():
    """Task 2 owns a third of each layer, so the pruner keeps its space's indices; an entry of that
    space claimed by task 3 afterwards is one error naming the layer, and nothing is written."""
    model = _three_owner_model()
    pruner = TaskPruner(model, 2)
    layer = model.masked_layers()[0]
    mask = layer.mask.numpy()
    mask.reshape(-1)[np.flatnonzero(mask == 2)[0]] = 3
    layer.mask.assign(mask)
    before = [(l.kernel.numpy().tobytes(), l.mask.numpy().tobytes()) for l in model.masked_layers()]
    with pytest.raises(ValueError, match=f"layer {layer_key(layer)}, target sparsity 0.5: 1 weights of the "
                                         "task's space were taken by another task"):
        pruner.prune(0.5)
    assert [(l.kernel.numpy().tobytes(), l.mask.numpy().tobytes()) for l in model.masked_layers()] == before
