"""`python -m paenet.main`: workspaces, resuming after SIGKILL, the lock, clear errors, rollback, TensorBoard."""
import filecmp
import json
import os
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest
import tensorflow as tf

from paenet.workspace import Workspace

REPO = Path(__file__).resolve().parents[1]
PACK = ["--goal=0.8", "--train_steps=100", "--targets=0.3,0.6", "--steps_per_round=40", "--prune_steps=20",
        "--prune_frequency=5", "--checkpoint_every=20", "--noprogress"]


def _main(workspace, *args, data_dir=None, wait=True):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    if data_dir:
        env["PAENET_DATA_DIR"] = str(data_dir)
    command = [sys.executable, "-m", "paenet.main", f"--workspace={workspace}", *args]
    if not wait:
        return subprocess.Popen(command, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    return subprocess.run(command, env=env, capture_output=True, text=True, timeout=600)


def _summary(result):
    assert result.returncode in (0, 2), result.stderr[-3000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


@pytest.fixture(scope="module")
def one_task(tmp_path_factory, data_dir):
    """A workspace with face_nonface packed."""
    path = tmp_path_factory.mktemp("ws") / "one"
    result = _main(path, "--task=face_nonface", "--image_size=48", *PACK, data_dir=data_dir)
    assert _summary(result)["status"] == "goal_met"
    return path


def _copy(src, tmp_path, name):
    dst = tmp_path / name
    shutil.copytree(src, dst)
    return dst


def _files(path):
    return sorted(str(p.relative_to(path)) for p in Path(path).rglob("*") if p.is_file())


def _latest_step(workspace):
    latest = tf.train.latest_checkpoint(str(Path(workspace) / "active"))
    return int(latest.rsplit("-", 1)[1]) if latest else -1


def _kill_after_checkpoint(workspace, step, data_dir):
    """Starts packing ckplus_identity and SIGKILLs it once a checkpoint at `step` or later exists."""
    process = _main(workspace, "--task=ckplus_identity", *PACK, data_dir=data_dir, wait=False)
    deadline = time.time() + 300
    while _latest_step(workspace) < step and process.poll() is None and time.time() < deadline:
        time.sleep(0.05)
    assert process.poll() is None, f"the run ended before step {step}: {process.communicate()[1][-2000:]}"
    process.send_signal(signal.SIGKILL)
    process.wait()
    return _latest_step(workspace)


def _variables(workspace):
    reader = tf.train.load_checkpoint(str(Path(workspace) / "packing" / "variables" / "variables"))
    return {k: reader.get_tensor(k) for k in reader.get_variable_to_shape_map()}


def test_killed_runs_resume_and_end_as_an_uninterrupted_run(one_task, tmp_path, data_dir):
    straight = _copy(one_task, tmp_path, "straight")
    expected = _summary(_main(straight, "--task=ckplus_identity", *PACK, data_dir=data_dir))
    killed = _copy(one_task, tmp_path, "killed")
    steps = [_kill_after_checkpoint(killed, 40, data_dir), _kill_after_checkpoint(killed, 130, data_dir)]
    assert steps[0] >= 40 and steps[1] >= 130, steps
    result = _main(killed, "--task=ckplus_identity", *PACK, data_dir=data_dir)
    assert "resuming task 'ckplus_identity'" in result.stderr
    summary = _summary(result)
    assert summary["digest"] == expected["digest"] and summary["history"] == expected["history"]
    a, b = _variables(straight), _variables(killed)
    assert a.keys() == b.keys() and all(np.array_equal(a[k], b[k]) for k in a)
    assert json.loads((straight / "evaluations.json").read_text()) == json.loads((killed / "evaluations.json").read_text())
    assert not (killed / "active").exists()


def test_a_second_run_on_a_workspace_is_refused(one_task, tmp_path, data_dir):
    workspace = _copy(one_task, tmp_path, "busy")
    first = _main(workspace, "--task=ckplus_identity", *PACK, data_dir=data_dir, wait=False)
    try:
        deadline = time.time() + 120
        while _latest_step(workspace) < 0 and time.time() < deadline:
            time.sleep(0.05)
        second = _main(workspace, "--task=celebs_identity", *PACK, data_dir=data_dir)
        assert second.returncode == 1 and "in use by another PAENet run" in second.stderr
    finally:
        first.kill()
        first.wait()


@pytest.mark.parametrize("args, message", [
    (["--task=nosuch", "--goal=0.5"], "unknown task 'nosuch'; registered tasks: "),
    (["--task=ckplus_identity"], "give exactly one of --goal"),
    (["--task=face_nonface", "--goal=0.5"], "task 'face_nonface' is packed in"),
    (["--task=ckplus_identity", "--goal=0.5", "--baseline=0.9"], "--baseline=0.9: needs --goal_margin"),
])
def test_bad_requests_fail_with_one_line_and_change_nothing(one_task, tmp_path, data_dir, args, message):
    workspace = _copy(one_task, tmp_path, "same")
    result = _main(workspace, *args, data_dir=data_dir)
    assert result.returncode == 1
    error_lines = [l for l in result.stderr.splitlines() if l.startswith("paenet.main: error:")]
    assert len(error_lines) == 1 and message in error_lines[0], result.stderr[-2000:]
    assert _files(workspace) == _files(one_task)
    assert not filecmp.dircmp(workspace, one_task).diff_files


def test_an_unreachable_goal_rolls_back_leaving_the_workspace_byte_identical(one_task, tmp_path, data_dir):
    workspace = _copy(one_task, tmp_path, "rollback")
    result = _main(workspace, "--task=celebs_identity", "--goal=0.999", "--train_steps=20", "--on_miss=method",
                   "--expansion_ratio=1.5", "--expansion_cap=2.0", "--noprogress", data_dir=data_dir)
    assert result.returncode == 2 and _summary(result)["status"] == "goal_unreachable"
    assert _summary(result)["expansions"], "it expanded before giving up"
    assert _files(workspace) == _files(one_task)
    match, mismatch, errors = filecmp.cmpfiles(one_task, workspace, _files(one_task), shallow=False)
    assert not mismatch and not errors


def test_tensorboard_events_hold_the_training_story(one_task):
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator
    events = EventAccumulator(str(one_task / "logs" / "face_nonface"), size_guidance={"tensors": 0})
    events.Reload()
    tags = set(events.Tags()["tensors"])
    from paenet.checkpoint import load_packing
    (record,) = load_packing(str(one_task / "packing")).records
    phases = ["val_accuracy/train", *(f"val_accuracy/prune {r['sparsity']:g}" for r in record.pruning)]
    assert record.pruning                                 # every phase the run went through, pruning rounds too
    assert {"loss", "learning_rate", "val_accuracy", *phases} <= tags
    assert {"sparsity", "owned/task1", "ownership", "layer_sparsity"} <= tags
    assert not [t for t in tags if t.startswith(("sparsity/", "ownership/"))]     # no chart per layer
    losses = [tf.make_ndarray(e.tensor_proto) for e in events.Tensors("loss")]
    assert len(losses) >= 10 and float(losses[-1]) < float(losses[0])
    sparsity = [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("sparsity")]
    owned = [float(tf.make_ndarray(e.tensor_proto)) for e in events.Tensors("owned/task1")]
    chosen = record.metrics["chosen_sparsity"]     # the story ends at the chosen round's sparsity
    assert sparsity[-1] == pytest.approx(chosen, abs=0.01) and owned[-1] == pytest.approx(1 - chosen, abs=0.01)


def test_the_accuracy_matrix_is_recorded(one_task):
    entries = Workspace(one_task).evaluations()
    assert [(e["after_task"], e["task"], e["split"]) for e in entries] == [(1, 1, "val")]
    assert entries[0]["value"] >= 0.8


def test_the_class_names_of_the_data_travel_into_the_packing(one_task):
    from paenet.checkpoint import load_packing
    (spec,) = load_packing(str(one_task / "packing")).model.task_specs
    assert spec.class_names == ("face", "nonface")     # lfw_subset's folders faces/ and nonfaces/


def test_list_tasks():
    result = subprocess.run([sys.executable, "-m", "paenet.main", "--list_tasks"], capture_output=True, text=True,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, timeout=120)
    assert result.returncode == 0 and "celebs_identity\t5 classes" in result.stdout


def test_facenet_workspace_prunes_the_imported_face_task_to_its_turning_point(tmp_path, facenet_dir, aligned_celebs):
    workspace = tmp_path / "facenet"
    result = _main(workspace, "--task=face", "--base=facenet", f"--facenet={facenet_dir / '20180402-114759.pb'}",
                   f"--face_pairs={aligned_celebs}", "--goal_margin=0.02", "--targets=0.3,0.6,0.95",
                   "--steps_per_round=1", "--prune_steps=0", "--noprogress")
    summary = _summary(result)
    print(summary)
    assert summary["status"] == "goal_met" and summary["history"][0][0] == "imported"
    assert summary["goal"] == pytest.approx(summary["baseline"] - 0.02)
    assert summary["baseline"] >= 0.9 and summary["val_accuracy"] >= summary["goal"]
    chosen = summary["chosen_sparsity"]
    assert chosen in (0.3, 0.6) and summary["history"][-1][1] < summary["goal"] or chosen == 0.95
    state = json.loads((workspace / "packing" / "state.json").read_text())
    record = state["records"][0]
    assert record["name"] == "face" and record["metrics"]["test_accuracy"] >= 0.85
    assert all(abs(s - chosen) < 0.01 for s in record["sparsity"].values())
    entries = Workspace(workspace).evaluations()
    assert {(e["name"], e["split"]) for e in entries} == {("face", "val"), ("face", "test")}
    roc = json.loads((workspace / "lfw_roc.json").read_text())
    assert len(roc["fpr"]) == len(roc["tpr"]) == 1001 and 0.9 <= roc["auc"] <= 1.0
    busy = _main(workspace, "--task=face", "--goal=0.5")
    assert busy.returncode == 1 and "task 'face' is packed in" in busy.stderr
