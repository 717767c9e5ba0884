"""SIGKILL at random moments: does every killed ``python -m paenet.main`` run, run again, end byte-identical
to an uninterrupted one (the workspace outside its logs)?

    python3 experiments/kill_runs.py --runs=20 --kills=3 --root=/tmp/kills

Each run packs the two tiny tasks of tests/tiny_tasks.py (a new workspace, then a second task: creation,
training, pruning rounds and finishing all happen in the window) and is SIGKILLed `kills` times at
random moments, each rerun resuming the last; the script prints one line per run and the count.
tests/test_reliability_kill.py runs the same with a few kills.

    python3 experiments/kill_runs.py --expansions --root=/tmp/kills

kills a run that expands (a goal the task misses at every width: three expansion rounds, then a roll back)
just before each expansion round in turn, every rerun resuming the last, and compares the end (the summary
line and the workspace) with the uninterrupted run's.
"""
from __future__ import annotations

import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
TINY = ["--task_module=tiny_tasks", "--goal=0.6", "--image_size=16", "--widths=4,8", "--dense_units=16",
        "--batch_size=16", "--train_steps=8", "--targets=0.3,0.6", "--steps_per_round=6", "--prune_steps=3",
        "--prune_frequency=1", "--checkpoint_every=4", "--noprogress"]


# tiny_noise missing its goal at every width: three expansion rounds within the cap, then rolled back (exit 2:
# --on_miss=method, PAE's own answer; the rule at the cap's reserve rounds have their own kill test).
GROWING = [*TINY[:1], "--task_module=kill_at_step", "--goal=1.0", "--on_miss=method", *TINY[2:6], "--train_steps=3",
           "--targets=0.5", "--steps_per_round=4", "--prune_steps=2", "--prune_frequency=1", "--checkpoint_every=4",
           "--noprogress", "--expansion_ratio=1.25", "--expansion_cap=2.6", "--expansion_multiple=1"]
GROWING_ROUNDS = 3


def start(workspace, task: str, flags=TINY, env=None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONPATH": f"{REPO}{os.pathsep}{REPO / 'tests'}", "TF_CPP_MIN_LOG_LEVEL": "3",
           **(env or {})}
    return subprocess.Popen([sys.executable, "-m", "paenet.main", f"--workspace={workspace}", f"--task={task}",
                             *flags], env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def expansion_kills(root: Path) -> tuple[str, str]:
    """The summary lines of an uninterrupted growing run and of one killed just before each of its
    expansion rounds in turn (each rerun resuming the last); raises if a kill missed its round."""
    reference = start(root / "reference", "tiny_noise", GROWING)
    out, err = reference.communicate(timeout=900)
    if reference.returncode != 2:
        raise RuntimeError(f"the growing run ended {reference.returncode}, not 2 (rolled back): {err[-3000:]}")
    for round_ in range(1, GROWING_ROUNDS + 1):
        killed = start(root / "killed", "tiny_noise", GROWING, {"PAENET_KILL_AT_EXPANSION": str(round_)})
        _, err = killed.communicate(timeout=900)
        if killed.returncode != 9:
            raise RuntimeError(f"the run to kill before expansion {round_} ended {killed.returncode}: {err[-3000:]}")
    resumed = start(root / "killed", "tiny_noise", GROWING)
    last, err = resumed.communicate(timeout=900)
    if resumed.returncode != 2:
        raise RuntimeError(f"the resumed run ended {resumed.returncode}, not 2: {err[-3000:]}")
    return out.strip().splitlines()[-1], last.strip().splitlines()[-1]


def finish(process: subprocess.Popen) -> str:
    """Waits for `process`; returns its stdout, or raises with its stderr if it failed."""
    out, err = process.communicate(timeout=600)
    if process.returncode != 0:
        raise RuntimeError(f"paenet.main exited {process.returncode}: {err[-3000:]}")
    return out


def contents(workspace) -> dict:
    """Every file of the workspace but its logs and lock, by relative path."""
    root = Path(workspace)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock" and "logs" not in p.relative_to(root).parts}


def killed_run(workspace, task: str, moments) -> int:
    """Packs `task`, SIGKILLing the run `moments` seconds after each start; returns how many kills hit a
    running process. The last run goes to the end."""
    hits = 0
    for moment in moments:
        if _packed(workspace, task):        # the last kill came after the run had finished its work
            return hits
        process = start(workspace, task)
        try:
            process.wait(timeout=moment)
            finish(process)         # it ended before the kill: the task is packed
            return hits
        except subprocess.TimeoutExpired:
            process.send_signal(signal.SIGKILL)
            process.communicate()
            hits += 1
    if not _packed(workspace, task):
        finish(start(workspace, task))
    return hits


def _packed(workspace, task: str) -> bool:
    from paenet.checkpoint import packed_records
    return (not (Path(workspace) / "active").exists()
            and task in [r["name"] for r in packed_records(Path(workspace) / "packing") or []])


def main(runs: int, kills: int, root: Path, seed: int, expansions: bool = False) -> int:
    rng = np.random.default_rng(seed)
    shutil.rmtree(root, ignore_errors=True)
    if expansions:
        reference, killed = expansion_kills(root)
        same = reference == killed and contents(root / "reference") == contents(root / "killed")
        print(f"killed before each of {GROWING_ROUNDS} expansion rounds: {'identical' if same else 'DIFFERENT'}\n"
              f"uninterrupted: {reference}\nkilled:        {killed}")
        return 0 if same else 1
    began = time.time()
    for task in ("tiny_a", "tiny_b"):
        finish(start(root / "reference", task))
    span = (time.time() - began) / 2
    reference, identical = contents(root / "reference"), 0
    for run in range(runs):
        workspace = root / f"run{run}"
        hits = sum(killed_run(workspace, task, rng.uniform(0.05 * span, 0.45 * span, kills))
                   for task in ("tiny_a", "tiny_b"))
        same = contents(workspace) == reference
        identical += same
        print(f"run {run}: {hits} kills, {'identical' if same else 'DIFFERENT'}", flush=True)
    print(f"{identical}/{runs} killed runs ended byte-identical to the uninterrupted one")
    return 0 if identical == runs else 1


if __name__ == "__main__":
    import argparse
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--runs", type=int, default=20)
    parser.add_argument("--kills", type=int, default=3, help="kills per task of a run")
    parser.add_argument("--root", type=Path, default=Path("/tmp/paenet_kills"))
    parser.add_argument("--seed", type=int, default=0)
    parser.add_argument("--expansions", action="store_true", help="kill before each expansion round instead")
    args = parser.parse_args()
    sys.exit(main(args.runs, args.kills, args.root, args.seed, args.expansions))
