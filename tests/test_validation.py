"""`python -m paenet.main` checks every flag before anything runs or is written: one line naming the
flag and its value, exit status 1, no workspace folder made, an existing one unchanged."""
import os
import subprocess
import sys
from pathlib import Path

import pytest

from main_in_process import run_main

REPO = Path(__file__).resolve().parents[1]

GOOD = ["--task=face_nonface", "--goal=0.5", "--noprogress"]



@pytest.mark.parametrize("bad, named", [
    (["--steps_per_round=0"], "--steps_per_round=0"),
    (["--prune_frequency=0"], "--prune_frequency=0"),
    (["--targets=0.6,0.3"], "--targets=0.6,0.3"),
    (["--targets=0.3,1.5"], "--targets=0.3,1.5: 1.5 must be in (0, 1]"),
    (["--targets=0,0.5"], "--targets=0.0,0.5: 0.0 must be in (0, 1]"),
    (["--targets=0.3,x"], "--targets=0.3,x"),
    (["--prune_steps=100", "--steps_per_round=100"], "--prune_steps=100"),
    (["--batch_size=0"], "--batch_size=0"),
    (["--image_size=-8"], "--image_size=-8"),
    (["--checkpoint_every=0"], "--checkpoint_every=0"),
    (["--train_steps=0"], "--train_steps=0"),
    (["--goal=1.2"], "--goal=1.2"),
    (["--goal=-0.1"], "--goal=-0.1"),
    (["--goal=nan"], "--goal=nan"),
    (["--goal_margin=-0.02"], "--goal_margin=-0.02"),
    (["--learning_rate=-0.001"], "--learning_rate=-0.001"),
    (["--dropout=1.0"], "--dropout=1.0"),
    (["--dropout=-0.1"], "--dropout=-0.1"),
    (["--expansion_ratio=1.0"], "--expansion_ratio=1.0"),
    (["--expansion_cap=0.5"], "--expansion_cap=0.5"),
    (["--expansion_multiple=0"], "--expansion_multiple=0"),
    (["--fold=5"], "--fold=5"),
    (["--fold=-1"], "--fold=-1"),
    (["--widths=16,0,64"], "--widths=16,0,64: 0 must be a positive integer"),
    (["--widths=16,3.5"], "--widths=16,3.5"),
    (["--seed=-1"], "--seed=-1"),
    (["--base=facenet"], "--facenet=None"),
    (["--task_module=no_such_paenet_module"], "--task_module=no_such_paenet_module"),
])
def test_a_bad_flag_is_refused_in_one_line_before_anything_is_written(tmp_path, capsys, bad, named):
    workspace = tmp_path / "new"
    goal = [] if any(a.startswith("--goal") for a in bad) else ["--goal=0.5"]
    args = [f"--workspace={workspace}", "--task=face_nonface", "--noprogress", *goal, *bad]
    status, lines = run_main(args, capsys)
    assert status == 1 and len(lines) == 1, lines
    assert lines[0].startswith("paenet.main: error: ") and named in lines[0], lines
    assert not workspace.exists()


def test_a_workspace_path_that_is_a_file_is_refused(tmp_path, capsys):
    path = tmp_path / "file"
    path.write_text("not a workspace")
    status, lines = run_main([f"--workspace={path}", *GOOD], capsys)
    assert status == 1 and len(lines) == 1 and "is a file" in lines[0] and str(path) in lines[0], lines
    assert path.read_text() == "not a workspace"


def test_a_missing_goal_makes_no_workspace(tmp_path, capsys):
    workspace = tmp_path / "new"
    status, lines = run_main([f"--workspace={workspace}", "--task=face_nonface"], capsys)
    assert status == 1 and len(lines) == 1 and "--goal" in lines[0], lines
    assert not workspace.exists()


def test_the_command_line_answers_a_bad_list_in_one_line(tmp_path):
    """The same through a real process: exit status 1, one error line, no traceback, nothing written."""
    workspace = tmp_path / "new"
    result = subprocess.run([sys.executable, "-m", "paenet.main", f"--workspace={workspace}", *GOOD,
                             "--widths=16,a"], capture_output=True, text=True, timeout=300,
                            env={**os.environ, "PYTHONPATH": str(REPO), "TF_CPP_MIN_LOG_LEVEL": "2"})
    errors = [l for l in result.stderr.splitlines() if l.startswith("paenet.main")]
    assert result.returncode == 1 and "Traceback" not in result.stderr and errors == ["paenet.main: error: --widths=16,a: must be a list of integers"]
    assert not workspace.exists()
