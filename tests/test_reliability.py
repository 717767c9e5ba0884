"""Nothing lost, nothing stuck: a workspace faulted at each crash window recovers and ends byte-identical
(outside its logs) to an uninterrupted run; finished tasks are never replaced by a changed model; a
missing config beside finished tasks is refused. Runs ``paenet.app.pack`` in this process on two tiny
tasks (tests/tiny_tasks.py); a kill is an exception no code catches, raised at the window."""
import os
import re
import shutil
import sys
from pathlib import Path

import numpy as np
import pytest

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_tasks  # noqa: E402,F401  (registers tiny_a, tiny_b)

from paenet import app, fileio  # noqa: E402
from paenet.checkpoint import load_packing, save_packing  # noqa: E402
from paenet.packing import Packer  # noqa: E402
from paenet.records import IntegrityError  # noqa: E402
from paenet.training import Trainer  # noqa: E402
from paenet.workspace import Workspace, WorkspaceError  # noqa: E402
from paenet.config import PackingPlan  # noqa: E402
from tiny_models import TINY as TINY_BACKBONES, tiny_cnn  # noqa: E402

TINY = dict(**TINY_BACKBONES["small_cnn"], batch_size=16, goal=0.6, checkpoint_every=4, progress=False,
            plan=PackingPlan(train_steps=8, targets=(0.3, 0.6), steps_per_round=6, prune_steps=3, frequency=1))


class Killed(BaseException):
    """Stands for SIGKILL: nothing catches it, nothing runs after it but the lock's release."""


def pack(workspace, task):
    return app.pack(app.Settings(workspace=str(workspace), task=task, **TINY))


def contents(workspace) -> dict:
    """Every file of the workspace but its logs and lock, by relative path."""
    root = Path(workspace)
    return {str(p.relative_to(root)): p.read_bytes() for p in sorted(root.rglob("*"))
            if p.is_file() and p.name != ".lock" and "logs" not in p.relative_to(root).parts}


def copy(src, tmp_path):
    shutil.copytree(src, tmp_path / "ws")
    return tmp_path / "ws"


@pytest.fixture(scope="module")
def reference(tmp_path_factory):
    """An uninterrupted run packing tiny_a into a new workspace."""
    ws = tmp_path_factory.mktemp("reference") / "ws"
    status, summary = pack(ws, "tiny_a")
    assert status == app.GOAL_MET
    return {"workspace": ws, "summary": summary}


def kill_at(monkeypatch, cls, name, after=1, when=lambda *a, **k: True):
    """Makes ``cls.name`` raise Killed once it has run `after` times with `when` true (after=0: as it is
    called the first time)."""
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


def kill_between_the_renames(monkeypatch):
    """Kills ``write_replacing`` after it moved the old packing aside and before the new one took its
    place (its clean-up, which a kill would not run, is switched off)."""
    rename = os.replace

    def replace(src, dst, *args, **kwargs):
        if os.path.basename(dst) == "packing" and os.path.exists(os.path.join(os.path.dirname(src), "old")):
            raise Killed
        return rename(src, dst, *args, **kwargs)
    monkeypatch.setattr(fileio.os, "replace", replace)
    monkeypatch.setattr(fileio.shutil, "rmtree", lambda *a, **k: None)


@pytest.mark.parametrize("window", ["between the renames", "after the packing is saved"])
def test_a_finish_killed_at_any_window_is_completed_by_the_rerun(reference, tmp_path, monkeypatch, window):
    """Killed while replacing packing/ (the last good one waits in .tmp-packing-*/old), or after packing/
    holds the task and its evaluation row is written but before active/ is cleared: the rerun puts the
    packing back or completes the finish, with the row written once and the logs kept."""
    ws = tmp_path / "ws"
    if window == "between the renames":
        kill_between_the_renames(monkeypatch)
    else:
        kill_at(monkeypatch, Workspace, "finish_active", after=0)
    with pytest.raises(Killed):
        pack(ws, "tiny_a")
    monkeypatch.undo()
    assert (ws / "active").exists()
    assert (not (ws / "packing").exists() and list(ws.glob(".tmp-packing-*/old"))
            if window == "between the renames" else "tiny_a" in (ws / "packing" / "state.json").read_text())
    status, summary = pack(ws, "tiny_a")
    assert status == app.GOAL_MET and summary["digest"] == reference["summary"]["digest"]
    assert contents(ws) == contents(reference["workspace"]) and (ws / "logs" / "tiny_a").is_dir()


def test_killed_before_a_new_workspace_is_complete_the_rerun_creates_it_the_same(reference, tmp_path, monkeypatch):
    """Also: one seed gives one workspace, whatever ran in the process before (tests ran before this one)."""
    ws = tmp_path / "ws"
    kill_at(monkeypatch, Workspace, "write_config", after=0)
    with pytest.raises(Killed):
        pack(ws, "tiny_a")
    monkeypatch.undo()
    assert (ws / "packing").is_dir() and not (ws / "workspace.json").exists()
    assert pack(ws, "tiny_a")[0] == app.GOAL_MET
    assert contents(ws) == contents(reference["workspace"])


def _stage(workspace_state: dict) -> tuple:
    loop = workspace_state["loop"]
    return loop["stage"], loop["phase_step"]


@pytest.mark.parametrize("stage, truncate", [("prune", False), ("train", True)])
def test_a_run_killed_mid_phase_resumes_to_the_same_bytes(reference, tmp_path, monkeypatch, stage, truncate):
    """Killed after a checkpoint in the middle of a phase (a pruning round's mean loss spans the kill);
    with `truncate` the newest checkpoint is then cut mid-file and the run resumes from the one before."""
    ws = tmp_path / "ws"
    kill_at(monkeypatch, Workspace, "save_active", after=1,
            when=lambda self, packer, state, number, iterator=None: _stage(state)[0] == stage
            and 0 < _stage(state)[1])
    with pytest.raises(Killed):
        pack(ws, "tiny_a")
    monkeypatch.undo()
    if truncate:
        newest = max((ws / "active").glob("ckpt-*.data-*"), key=lambda p: int(p.name[5:].split(".")[0]))
        newest.write_bytes(newest.read_bytes()[: newest.stat().st_size // 2])
    status, summary = pack(ws, "tiny_a")
    assert status == app.GOAL_MET and summary["history"] == reference["summary"]["history"]
    assert contents(ws) == contents(reference["workspace"])


def flip(path: Path, at: float = 0.5):
    """Flips one bit of `path`, `at` of the way through it."""
    data = bytearray(path.read_bytes())
    data[int(len(data) * at)] ^= 0x10
    path.write_bytes(bytes(data))


@pytest.mark.parametrize("damage", ["checkpoints truncated", "snapshot bit-flipped"])
def test_an_unreadable_active_file_is_an_integrity_error_not_a_restart(reference, tmp_path, monkeypatch, damage):
    ws = tmp_path / "ws"
    kill_at(monkeypatch, Workspace, "save_active", after=4)      # the fourth is at the start of pruning
    with pytest.raises(Killed):
        pack(ws, "tiny_a")
    monkeypatch.undo()
    if damage == "checkpoints truncated":
        for data in (ws / "active").glob("ckpt-*.data-*"):
            data.write_bytes(data.read_bytes()[:-7])
        expected = r"active/ckpt-\d+: unreadable checkpoint"
    else:
        [best] = (ws / "active").glob("best-*.npz")
        flip(best)
        expected = rf"active/{best.name}: unreadable"
    before, logs = contents(ws), sorted((ws / "active").rglob("*"))
    with pytest.raises(IntegrityError, match=expected):
        pack(ws, "tiny_a")
    assert contents(ws) == before and sorted((ws / "active").rglob("*")) == logs    # no events file added


@pytest.mark.parametrize("name, damage", [
    ("packing/state.json", lambda p: p.write_text(p.read_text().replace('"chosen_sparsity": 0.6', '"chosen_sparsity": 0.7'))),
    ("packing/state.json", lambda p: p.write_bytes(p.read_bytes()[:100])),
    ("packing/model.json", lambda p: p.write_text(p.read_text().replace('"dropout": 0.2', '"dropout": 0.3'))),
    ("packing/variables/variables.data-00000-of-00001", flip),
    ("packing/variables/variables.index", lambda p: p.write_bytes(p.read_bytes()[:-20])),
    ("packing/variables/variables.data-00000-of-00001", lambda p: p.write_bytes(p.read_bytes()[:-200])),
    ("workspace.json", lambda p: p.write_text(p.read_text().replace('"fold": 0', '"fold": 1'))),
    ("evaluations.json", lambda p: p.write_text(re.sub(r'"value": [0-9.]+', '"value": 0.5', p.read_text()))),
])
def test_a_damaged_or_edited_workspace_file_is_an_integrity_error_naming_it(reference, tmp_path, name, damage):
    ws = copy(reference["workspace"], tmp_path)
    before = (ws / name).read_bytes()
    damage(ws / name)
    assert (ws / name).read_bytes() != before
    damaged = contents(ws)
    with pytest.raises(IntegrityError, match=re.escape(name.split(".")[0]) + r"(\.json)?: "):
        pack(ws, "tiny_b")
    assert contents(ws) == damaged


def test_a_missing_config_beside_finished_tasks_is_refused(reference, tmp_path):
    ws = copy(reference["workspace"], tmp_path)
    (ws / "workspace.json").unlink()
    before = contents(ws)
    with pytest.raises(WorkspaceError, match=r"workspace.json is missing but packing/ holds 1 finished task"):
        pack(ws, "tiny_b")
    assert contents(ws) == before


@pytest.mark.parametrize("name", ["workspace.json", "evaluations.json"])
def test_a_truncated_workspace_file_is_refused_naming_it(reference, tmp_path, name):
    ws = copy(reference["workspace"], tmp_path)
    (ws / name).write_bytes((ws / name).read_bytes()[:40])
    before = contents(ws)
    with pytest.raises(IntegrityError, match=f"{name}: unreadable"):
        pack(ws, "tiny_b")
    assert contents(ws) == before


def test_save_verifies_finished_tasks_before_replacing_anything(reference, tmp_path):
    ws = copy(reference["workspace"], tmp_path)
    packer = load_packing(ws / "packing")
    before = contents(ws)
    kernel = packer.model.masked_layers()[0].kernel
    owned = packer.model.masked_layers()[0].mask.numpy() == 1
    kernel.assign(np.where(owned, kernel.numpy() + 1.0, kernel.numpy()))
    with pytest.raises(IntegrityError, match=r"task 1 \(tiny_a\): digest mismatch"):
        save_packing(packer, ws / "packing")
    assert contents(ws) == before and not list(ws.glob(".tmp-*"))


def test_a_training_mode_call_of_a_finished_task_changes_nothing(reference, tmp_path):
    """Loaded from its records (and set by finish, which reference's run went through), a finished task
    called with training=True computes in inference mode: its BatchNorm moving statistics stay."""
    from paenet.records import verify
    packer = load_packing(reference["workspace"] / "packing")
    model, x = packer.model, np.random.default_rng(0).normal(size=(4, 16, 16, 3)).astype(np.float32)
    before = {v.path: v.numpy() for v in model.variables}
    trained = model(x, task=1, training=True).numpy()
    assert all(np.array_equal(before[v.path], v.numpy()) for v in model.variables)
    verify(model, packer.records)
    assert np.array_equal(trained, model(x, task=1, training=False).numpy())
    assert packer.model.frozen_tasks == 1 and '"frozen_tasks": 1' in (
        reference["workspace"] / "packing" / "model.json").read_text()


@pytest.mark.parametrize("finished_under, loaded_under", [("mixed_bfloat16", "float32"), ("float32", "mixed_bfloat16")])
def test_a_task_computes_under_its_own_dtype_policy_whatever_the_global_one(tmp_path, finished_under, loaded_under):
    import keras
    import tensorflow as tf

    from paenet.models import SmallCNN, TaskSpec
    from paenet.records import verify
    x = np.random.default_rng(0).normal(size=(8, 16, 16, 3)).astype(np.float32)
    try:
        keras.config.set_dtype_policy(finished_under)
        packer = Packer(tiny_cnn(name="p"))
        packer.start_task(TaskSpec("one", 3))
        trainer = Trainer(packer, progress=False)
        trainer.train(tf.data.Dataset.from_tensors((x, np.arange(8) % 3)), 3)
        record = packer.finish()
        expected = packer.model(x, task=1).numpy()
        save_packing(packer, tmp_path / "packing")
        keras.config.set_dtype_policy(loaded_under)
        loaded = load_packing(tmp_path / "packing")
        assert record.compute_dtype == finished_under == loaded.model.dtype_policy.name
        assert np.array_equal(loaded.model(x, task=1).numpy(), expected)
        loaded.start_task(TaskSpec("two", 2))            # a rebuilt model keeps the policy
        assert np.array_equal(loaded.model(x, task=1).numpy(), expected)
        config = loaded.model.get_config()
        assert SmallCNN.from_config(config).dtype_policy.name == finished_under      # the config keeps it
        elsewise = SmallCNN.from_config({k: v for k, v in config.items() if k != "dtype_policy"}).build_variables()
        elsewise.set_weights(loaded.model.get_weights())                              # the global policy
        with pytest.raises(IntegrityError, match="digest mismatch"):
            verify(elsewise, loaded.records)
    finally:
        keras.config.set_dtype_policy("float32")
