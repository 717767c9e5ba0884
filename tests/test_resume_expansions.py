"""A run killed just before any of its expansion rounds, or in the training after one, resumes to the same
end as the uninterrupted run: the same validation history, the same expansions, the same workspace.
What a resumed run draws (an expansion's new weights) comes from the state its checkpoint holds
(``paenet.packing.seed_from_state``). Runs ``paenet.app.pack`` in this process on a tiny task."""
import dataclasses
import sys
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_tasks  # noqa: E402,F401  (registers tiny_a, tiny_b)

from paenet import app  # noqa: E402
from paenet.config import PackingPlan  # noqa: E402
from paenet.expansion import ExpansionPolicy  # noqa: E402
from paenet.monitor import WorkspaceObserver  # noqa: E402
from paenet.packing import Packer  # noqa: E402
from test_reliability import TINY, Killed, contents, kill_at  # noqa: E402

# A goal the task misses at every width: it expands until the cap (three rounds) and is rolled back.
GROWING = {**TINY, "goal": 1.0, "plan": PackingPlan(
    train_steps=3, targets=(0.5,), steps_per_round=4, prune_steps=2, frequency=1,
    expansion=ExpansionPolicy("uniform", ratio=1.25, cap=2.6, multiple=1))}
ROUNDS = 3


def pack(workspace):
    return app.pack(app.Settings(workspace=str(workspace), task="tiny_b", **GROWING))


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    ws = tmp_path_factory.mktemp("growing") / "ws"
    status, summary = pack(ws)
    assert len(summary["expansions"]) == ROUNDS, summary
    return {"workspace": ws, "status": status, "summary": summary}


@pytest.mark.parametrize("round_, window", [(1, "before"), (2, "before"), (3, "before"), (2, "after")])
def test_a_run_killed_at_any_expansion_round_resumes_to_the_same_end(reference, tmp_path, monkeypatch,
                                                                     round_, window):
    ws = tmp_path / "ws"
    if window == "before":      # just before the round's expansion, after the checkpoint that precedes it
        kill_at(monkeypatch, Packer, "expand", after=0, when=lambda self, policy: len(self.expansions) == round_ - 1)
    else:                       # in the retraining after it, once a checkpoint of the wider network is written
        kill_at(monkeypatch, WorkspaceObserver, "on_step", after=1,
                when=lambda self, loop, loss: len(loop.packer.expansions) == round_ and loop.state.phase_step == 2)
    with pytest.raises(Killed):
        pack(ws)
    monkeypatch.undo()
    status, summary = pack(ws)
    assert (status, summary) == (reference["status"], reference["summary"])
    assert contents(ws) == contents(reference["workspace"])
