"""Nothing lost, nothing stuck: a workspace faulted at each crash window recovers and ends byte-identical
(outside its logs) to an uninterrupted run; finished tasks are never replaced by a changed model; a
missing config beside finished tasks is refused. Runs ``paenet.app.pack`` in this process on two tiny
tasks (tests/tiny_tasks.py); a kill is an exception no code catches, raised at the window."""
import os
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_tasks  # noqa: E402,F401  (registers tiny_a, tiny_b)

from paenet import app  # noqa: E402
from paenet.packing import Packer  # noqa: E402
from paenet.records import IntegrityError  # noqa: E402
from paenet.workspace import Workspace, WorkspaceError  # noqa: E402

TINY = dict(image_size=16, widths=(4, 8), dense_units=16, batch_size=16, goal=0.6, train_steps=8,
            targets=(0.3, 0.6), steps_per_round=6, prune_steps=3, prune_frequency=1, checkpoint_every=4,
            progress=False)


class Killed(BaseException):
    """Stands for SIGKILL: nothing catches it, nothing runs after it but the lock's release."""


def pack(workspace, task):
    return app.pack(app.Settings(workspace=str(workspace), task=task, **TINY))


def contents(workspace) -> dict:
    """Every file of the workspace but its logs and lock, by relative path."""
    root = Path(workspace)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock" and "logs" not in p.relative_to(root).parts}


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """Uninterrupted runs: the workspace after tiny_a, and after tiny_a then tiny_b."""
    root = tmp_path_factory.mktemp("reference")
    assert pack(root / "ws", "tiny_a")[0] == app.GOAL_MET
    shutil.copytree(root / "ws", root / "after_a")
    status, summary = pack(root / "ws", "tiny_b")
    assert status == app.GOAL_MET
    return {"after_a": root / "after_a", "final": root / "ws", "summary": summary}


def copy(src, tmp_path, name="ws"):
    shutil.copytree(src, tmp_path / name)
    return tmp_path / name


def kill_at(monkeypatch, cls, name, after=1, when=lambda *a, **k: True):
    """Makes ``cls.name`` raise Killed once it has run `after` times with `when` true (after: 0 kills
    before it runs)."""
    original, calls = getattr(cls, name), []

    def wrapped(*args, **kwargs):
        hit = when(*args, **kwargs)
        if hit and after == 0:
            raise Killed
        result = original(*args, **kwargs)
        calls.extend([1] if hit else [])
        if hit and len(calls) >= after:
            raise Killed
        return result
    monkeypatch.setattr(cls, name, wrapped)


def test_killed_between_saving_the_packing_and_clearing_active_the_rerun_completes_the_finish(
        reference, tmp_path, monkeypatch):
    ws = copy(reference["after_a"], tmp_path)
    kill_at(monkeypatch, Workspace, "add_evaluations", after=0)
    with pytest.raises(Killed):
        pack(ws, "tiny_b")
    monkeypatch.undo()
    assert (ws / "active").exists() and "tiny_b" in (ws / "packing" / "state.json").read_text()
    status, summary = pack(ws, "tiny_b")
    assert status == app.GOAL_MET and summary["digest"] == reference["summary"]["digest"]
    assert contents(ws) == contents(reference["final"]) and (ws / "logs" / "tiny_b").is_dir()


def test_a_finish_killed_after_its_evaluation_row_writes_the_row_once(reference, tmp_path, monkeypatch):
    ws = copy(reference["after_a"], tmp_path)
    kill_at(monkeypatch, Workspace, "finish_active", after=0)
    with pytest.raises(Killed):
        pack(ws, "tiny_b")
    monkeypatch.undo()
    assert pack(ws, "tiny_b")[0] == app.GOAL_MET
    assert contents(ws) == contents(reference["final"])


@pytest.mark.parametrize("new_too", [True, False])
def test_killed_between_the_two_renames_the_last_good_packing_comes_back(reference, tmp_path, new_too):
    """write_replacing moved the old packing into its scratch folder and was killed before the new one
    took its place (with the new one complete, or still being written)."""
    ws = copy(reference["after_a"], tmp_path)
    scratch = ws / ".tmp-packing-k1ll3d00"
    scratch.mkdir()
    if new_too:
        shutil.copytree(reference["final"] / "packing", scratch / "new")
    os.rename(ws / "packing", scratch / "old")
    status, _ = pack(ws, "tiny_b")
    assert status == app.GOAL_MET and not scratch.exists()
    assert contents(ws) == contents(reference["final"])


def test_killed_before_a_new_workspace_is_complete_the_rerun_creates_it_the_same(reference, tmp_path, monkeypatch):
    """Also: one seed gives one workspace, whatever ran in the process before (tests ran before this one)."""
    ws = tmp_path / "ws"
    kill_at(monkeypatch, Workspace, "write_config", after=0)
    with pytest.raises(Killed):
        pack(ws, "tiny_a")
    monkeypatch.undo()
    assert (ws / "packing").is_dir() and not (ws / "workspace.json").exists()
    assert pack(ws, "tiny_a")[0] == app.GOAL_MET
    assert contents(ws) == contents(reference["after_a"])


def _stage(workspace_state: dict) -> tuple:
    loop = workspace_state["loop"]
    return loop["stage"], loop["phase_step"]


@pytest.mark.parametrize("stage, truncate", [("prune", False), ("train", True), ("prune", True)])
def test_a_run_killed_mid_phase_resumes_to_the_same_bytes(reference, tmp_path, monkeypatch, stage, truncate):
    """Killed after a checkpoint in the middle of a phase (the pruning round's mean loss spans the kill);
    with `truncate` the newest checkpoint is then cut mid-file and the run resumes from the one before."""
    ws = copy(reference["after_a"], tmp_path)
    kill_at(monkeypatch, Workspace, "save_active", after=2 if truncate else 1,
            when=lambda self, packer, state, number, iterator=None: _stage(state)[0] == stage
            and 0 < _stage(state)[1])
    with pytest.raises(Killed):
        pack(ws, "tiny_b")
    monkeypatch.undo()
    if truncate:
        newest = max((ws / "active").glob("ckpt-*.data-*"), key=lambda p: int(p.name[5:].split(".")[0]))
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    status, summary = pack(ws, "tiny_b")
    assert status == app.GOAL_MET and summary["history"] == reference["summary"]["history"]
    assert contents(ws) == contents(reference["final"])


def test_no_readable_checkpoint_is_an_integrity_error_not_a_restart(reference, tmp_path, monkeypatch):
    ws = copy(reference["after_a"], tmp_path)
    kill_at(monkeypatch, Workspace, "save_active", after=3)
    with pytest.raises(Killed):
        pack(ws, "tiny_b")
    monkeypatch.undo()
    for data in (ws / "active").glob("ckpt-*.data-*"):
        data.write_bytes(data.read_bytes()[:-7])
    before = contents(ws)
    with pytest.raises(IntegrityError, match=r"active/ckpt-\d+: unreadable checkpoint"):
        pack(ws, "tiny_b")
    assert contents(ws) == before


def test_a_missing_config_beside_finished_tasks_is_refused(reference, tmp_path):
    ws = copy(reference["after_a"], tmp_path)
    (ws / "workspace.json").unlink()
    before = contents(ws)
    with pytest.raises(WorkspaceError, match=r"workspace.json is missing but packing/ holds 1 finished task"):
        pack(ws, "tiny_b")
    assert contents(ws) == before


@pytest.mark.parametrize("name", ["workspace.json", "evaluations.json"])
def test_a_truncated_workspace_file_is_refused_naming_it(reference, tmp_path, name):
    ws = copy(reference["after_a"], tmp_path)
    (ws / name).write_bytes((ws / name).read_bytes()[:40])
    before = contents(ws)
    with pytest.raises(IntegrityError, match=f"{name}: unreadable"):
        pack(ws, "tiny_b")
    assert contents(ws) == before


def test_save_verifies_finished_tasks_before_replacing_anything(reference, tmp_path):
    ws = copy(reference["final"], tmp_path)
    packer = Packer.load(str(ws / "packing"), progress=False)
    before = contents(ws)
    kernel = packer.model.masked_layers()[0].kernel
    owned = packer.model.masked_layers()[0].mask.numpy() == 1
    kernel.assign(np.where(owned, kernel.numpy() + 1.0, kernel.numpy()))
    with pytest.raises(IntegrityError, match=r"task 1 \(tiny_a\): digest mismatch"):
        packer.save(str(ws / "packing"))
    assert contents(ws) == before and not list(ws.glob(".tmp-*"))
