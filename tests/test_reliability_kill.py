"""SIGKILL at random moments of a real ``python -m paenet.main`` run (a new workspace: creation, training,
two pruning rounds, finishing): rerun after each kill, it ends byte-identical to an uninterrupted run.
experiments/kill_runs.py runs the same at a larger count."""
import json
import signal
import sys
import time
from pathlib import Path

import numpy as np

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import kill_runs  # noqa: E402


def test_runs_killed_at_random_moments_end_as_the_uninterrupted_run(tmp_path):
    began = time.time()
    kill_runs.finish(kill_runs.start(tmp_path / "reference", "tiny_a"))
    span = time.time() - began
    killed = tmp_path / "killed"
    # One kill as soon as the run has checkpointed (it is surely mid-run then), then one at a random moment.
    process = kill_runs.start(killed, "tiny_a")
    while not list(killed.glob("active/ckpt-*.index")) and process.poll() is None:
        time.sleep(0.02)
    assert process.poll() is None, process.communicate()[1][-2000:]
    process.send_signal(signal.SIGKILL)
    process.communicate()
    seed = int(np.random.default_rng().integers(1 << 31))
    moment = np.random.default_rng(seed).uniform(0.3 * span, span)
    kill_runs.killed_run(killed, "tiny_a", [moment])
    assert kill_runs.contents(killed) == kill_runs.contents(tmp_path / "reference"), (seed, moment)


def test_a_run_killed_before_each_expansion_round_ends_as_the_uninterrupted_run(tmp_path):
    """Killed (the process ends at once) just before expansion round 1, its rerun just before round 2, that
    one's just before round 3: the last rerun ends with the uninterrupted run's summary and workspace."""
    reference, killed = kill_runs.expansion_kills(tmp_path)
    assert json.loads(killed) == json.loads(reference)
    assert len(json.loads(reference)["expansions"]) == kill_runs.GROWING_ROUNDS
    assert kill_runs.contents(tmp_path / "killed") == kill_runs.contents(tmp_path / "reference")
