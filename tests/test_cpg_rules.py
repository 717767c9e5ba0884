"""CPG's own rules as ivclab/CPG runs them, on tiny models with validators that return chosen accuracies:
the sparsest passing round over all rounds, the pick learning rate's schedule, a restart from the task's
start after each growth, and the retraining of re-initialised picks after pruning, kept only if it helps."""
import keras
import numpy as np
import pytest

from paenet.data.arrays import array_dataset
from paenet.expansion import ExpansionPolicy
from paenet.goal import Goal, GoalLoop, LoopObserver, LoopState, PackingPlan
from paenet.layers import PICK_INIT
from paenet.methods import CPG
from paenet.models import SmallCNN, TaskSpec
from paenet.packing import Packer

SIZE = 12
RNG = np.random.default_rng(4)
IMAGES = RNG.normal(size=(64, SIZE, SIZE, 3)).astype(np.float32)
LABELS = RNG.integers(0, 3, 64)
TRAIN = array_dataset(IMAGES, LABELS, 16, training=True, seed=0)
PLAN = PackingPlan(train_steps=20, targets=(0.3, 0.5, 0.7, 0.9), steps_per_round=4, prune_steps=2, frequency=1,
                   expansion=ExpansionPolicy("uniform", 1.5, 2.0, 1))


def _packer():
    keras.utils.set_random_seed(0)
    return Packer(SmallCNN(widths=(4,), dense_units=4, input_shape=(SIZE, SIZE, 3), name="m"))


class Scripted:
    """A validator returning `accuracy(stage label)` of the loop it is attached to."""

    def __init__(self, accuracy):
        self.accuracy, self.loop = accuracy, None

    def __call__(self, model, task):
        return self.accuracy(self.loop.state.stage)


def _run(packer, name, accuracy, method="cpg", goal=0.5, plan=PLAN, observer=None, steps_per_call=1):
    validate = Scripted(accuracy)
    loop = GoalLoop(packer, TaskSpec(name, 3), TRAIN, validate, Goal(absolute=goal), plan, method=method,
                    observer=observer, progress=False, steps_per_call=steps_per_call)
    validate.loop = loop
    return loop, loop.run()


def _rounds(*values):
    """Training validates at 0.9, then the pruning rounds at `values` in turn; anything else at 0.1."""
    it = iter(values)
    return lambda stage: 0.9 if stage == "train" else next(it) if stage == "prune" else 0.1


def _one_task_packer():
    packer = _packer()
    _run(packer, "one", _rounds(0.9, 0.9, 0.9, 0.9), method="packnet")
    return packer


def test_cpg_keeps_the_sparsest_round_that_meets_the_goal_over_all_rounds():
    """Round 2 (0.5) misses, round 3 (0.7) meets the goal, round 4 misses: CPG keeps round 3, the state
    right after it; PackNet stops at round 2 and keeps round 1."""
    accuracies = (0.8, 0.3, 0.7, 0.2)
    _, cpg = _run(_packer(), "one", _rounds(*accuracies))
    _, packnet = _run(_packer(), "one", _rounds(*accuracies), method="packnet")
    assert [r["sparsity"] for r in cpg.record.pruning] == [0.3, 0.5, 0.7, 0.9]
    assert cpg.record.metrics["chosen_sparsity"] == 0.7 and cpg.val_accuracy == 0.7
    for key, space in cpg.record.space.items():        # 30% of its space kept, not round 4's 10%
        assert abs(cpg.record.owned[key] - 0.3 * space) <= 1
    assert [r["sparsity"] for r in packnet.record.pruning] == [0.3, 0.5]
    assert packnet.record.metrics["chosen_sparsity"] == 0.3


class Rates(LoopObserver):
    def __init__(self):
        self.seen = []

    def on_step(self, loop, loss):
        optimizer = loop.packer.optimizer
        self.seen.append((loop.state.stage, loop.state.phase_step, float(optimizer.learning_rate.numpy()),
                          float(optimizer.pick_learning_rate.numpy())))


def test_the_pick_learning_rate_drops_to_a_fifth_halfway_and_stops_at_seventy_percent():
    packer = _one_task_packer()
    observer = Rates()
    _run(packer, "two", lambda stage: 0.9, observer=observer)
    configured = float(np.float32(5e-4))
    expected = {step: np.float32(configured if step < 10 else 0.2 * configured if step < 14 else 0.0)
                for step in range(1, 21)}
    # the rate each step leaves for the next one: steps 10..13 train at a fifth, 14.. not at all
    assert {step: np.float32(pick) for stage, step, _, pick in observer.seen if stage == "train"} == expected
    assert CPG().pick_schedule(100, owns_weights=False) == [(50, 0.2)]    # no room of its own: picks go on


def test_several_steps_a_call_end_where_the_schedule_changes_the_pick_rate(monkeypatch):
    """The benchmark's compiled calls of many steps end where the pick rate changes (steps 10 and 14 of
    a 20-step phase), so every step trains at the rate one step a call would."""
    import paenet.goal
    calls = []

    class Counting(paenet.goal.Trainer):
        def _run(self, batches, count):
            calls.append(count)
            return super()._run(batches, count)

    packer = _one_task_packer()
    monkeypatch.setattr(paenet.goal, "Trainer", Counting)
    _run(packer, "two", lambda stage: 0.9, steps_per_call=6)
    assert calls[:4] == [6, 4, 4, 6]


def _snapshot_values(packer):
    return {k: v.copy() for k, v in packer.snapshot_task().items()}


class Growth(LoopObserver):
    """Keeps the restart points, the trained state at each growth and the state right after it."""

    def __init__(self):
        self.starts, self.trained, self.grown = [], [], []

    def on_start(self, loop, snapshot):
        self.starts.append({k: v.copy() for k, v in snapshot.items()})

    def on_phase_end(self, loop):
        if loop.state.stage == "expand":
            self.trained.append(_snapshot_values(loop.packer))

    def on_event(self, loop, name, value):
        if name == "expansion":
            self.grown.append(_snapshot_values(loop.packer))


def test_after_a_growth_cpg_trains_again_from_the_tasks_start_in_the_wider_network():
    packer = _one_task_packer()
    observer = Growth()
    _, outcome = _run(packer, "two", lambda stage: 0.0 if stage == "train" else 0.5, goal=0.8, observer=observer)
    assert outcome.status == "below_goal" and len(outcome.expansions) >= 1
    start, trained, grown = observer.starts[0], observer.trained[0], observer.grown[0]
    assert any(not np.array_equal(trained[k], v) for k, v in start.items())      # training moved it
    for key, value in start.items():          # its own weights, BatchNorm, head and picks as they started
        assert np.array_equal(grown[key][tuple(slice(0, n) for n in value.shape)], value), key
    picks = [k for k in start if "pick_t2" in k]
    assert picks and all(np.all(start[k] == np.float32(PICK_INIT)) for k in picks)
    assert len(observer.starts) == 1 + len(outcome.expansions)


class NoRetraining(CPG):
    def retraining(self, plan, picks):
        return None


@pytest.mark.parametrize("retrained", [0.5, 0.95])
def test_retraining_after_pruning_is_kept_only_where_validation_improves(retrained):
    """Pruned at 0.8, retrained: never better (0.5), the task finishes bit-identical to the same run without
    retraining; better (0.95), the retrained state is kept with the same weights released."""
    results = {}
    for method in (CPG(), NoRetraining()):
        packer, observer = _one_task_packer(), Rates()
        accuracy = {"train": 0.9, "prune": 0.8, "retrain": retrained}
        _, outcome = _run(packer, "two", accuracy.get, method=method, observer=observer)
        results[type(method).__name__] = (packer, outcome, observer)
    packer, outcome, observer = results["CPG"]
    plain_packer, plain, _ = results["NoRetraining"]
    retraining = CPG().retraining(PLAN, picks=True)
    steps = [(step, lr, pick) for stage, step, lr, pick in observer.seen if stage == "retrain"]
    assert [h[0] for h in outcome.history if h[0].startswith("retrain")]
    configured = (float(np.float32(1e-3)), float(np.float32(5e-4)))      # Keras Adam's, the pick optimizer's
    assert steps and {(lr, pick) for _, lr, pick in steps} == {
        (float(np.float32(retraining.learning_rate * configured[0])),
         float(np.float32(retraining.pick_learning_rate * configured[1])))}
    assert outcome.record.owned == plain.record.owned and outcome.record.pruning == plain.record.pruning
    if retrained < 0.8:
        assert outcome.val_accuracy == 0.8 and outcome.record.digest == plain.record.digest
        for mine, theirs in zip(packer.model.variables, plain_packer.model.variables):
            assert np.array_equal(mine.numpy(), theirs.numpy()), mine.path
        assert len(steps) == retraining.every * retraining.patience      # stopped after `patience` validations
    else:
        assert outcome.val_accuracy == 0.95 and outcome.record.digest != plain.record.digest
        assert outcome.record.metrics["val_accuracy"] == 0.95


def test_restart_picks_reinitialises_them_and_makes_them_trainable_again():
    packer = _one_task_packer()
    packer.start_task(TaskSpec("two", 3), picks=True)
    for picks in packer.model.pick_variables(2):
        picks.assign(np.full(picks.shape, 0.3, np.float32))
    packer.prune(0.5)                                   # the pruning phase fixes the picks
    assert not set(map(id, packer.model.pick_variables(2))) & set(map(id, packer.optimizer.trainable_variables))
    masks = [layer.mask.numpy().copy() for layer in packer.model.masked_layers()]
    packer.restart_picks()
    assert all(np.all(p.numpy() == np.float32(PICK_INIT)) for p in packer.model.pick_variables(2))
    assert set(map(id, packer.model.pick_variables(2))) <= set(map(id, packer.optimizer.trainable_variables))
    assert all(np.array_equal(m, layer.mask.numpy()) for m, layer in zip(masks, packer.model.masked_layers()))


def test_a_loop_resumed_in_the_retraining_trains_the_picks_again():
    """A packer reloaded in its pruning phase has its picks fixed; resumed in the retraining they train."""
    packer = _one_task_packer()
    packer.start_task(TaskSpec("two", 3), picks=True)
    packer.prune(0.5)
    state = LoopState(stage="retrain", phase_step=1, target=0.5, best={"sparsity": 0.5, "val_accuracy": 0.8},
                      retrain={"at": 1, "best": 0.8, "since": 0})
    GoalLoop(packer, TaskSpec("two", 3), TRAIN, None, Goal(absolute=0.5), PLAN, state=state, method="cpg")
    assert set(map(id, packer.model.pick_variables(2))) <= set(map(id, packer.optimizer.trainable_variables))
