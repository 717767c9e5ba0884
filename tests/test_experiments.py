"""The experiment flag files parse with paenet.main's flags and name registered tasks; each starts with the
command that runs it and the paper's figures it aims at."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
FLAGFILES = sorted((REPO / "experiments").glob("*.flags"))


@pytest.mark.parametrize("flagfile", FLAGFILES, ids=lambda p: p.name)
def test_flag_file_parses(flagfile):
    text = flagfile.read_text()
    assert text.startswith("#") and ("Run:" in text or "Run all" in text)
    result = subprocess.run([sys.executable, "-m", "paenet.main", f"--flagfile={flagfile}", "--list_tasks"],
                            cwd=REPO, capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)})
    assert result.returncode == 0, result.stderr[-2000:]
    tasks = {line.split("\t")[0] for line in result.stdout.splitlines()}
    named = [l.split("=", 1)[1] for l in text.splitlines() if l.startswith("--task=")]
    assert all(t in tasks for t in named), (named, tasks)


def test_every_experiment_names_existing_flag_files():
    sys.path.insert(0, str(REPO / "experiments"))
    import run
    for experiment in run.EXPERIMENTS.values():
        for name in experiment["flagfiles"]:
            assert (REPO / "experiments" / f"{name}.flags").exists()
