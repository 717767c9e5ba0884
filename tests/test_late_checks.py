"""The last tracebacks and late checks: each bad request or damaged file is one line and exit status 1 from
``paenet.main``, ``paenet.export`` and ``paenet.report``, checked before anything is written (validate,
then create), and an interrupted export leaves no scratch behind after a rerun."""
import os
import re
import shutil
import sys
from pathlib import Path

import pytest
import tensorflow as tf

sys.path.insert(0, str(Path(__file__).resolve().parent))
import tiny_tasks  # noqa: E402,F401  (registers tiny_a)

from main_in_process import run_main  # noqa: E402
from paenet import app  # noqa: E402
from paenet.cli import report_errors  # noqa: E402
from paenet.config import UsageError  # noqa: E402
from paenet.export import export_workspace  # noqa: E402
from paenet.report import write_report  # noqa: E402
from paenet.tasks import face  # noqa: E402
from test_reliability import TINY, Killed, contents  # noqa: E402
from tiny_models import tiny_flags  # noqa: E402

TINY_FLAGS = ["--task_module=tiny_tasks", "--task=tiny_a", "--goal=0.0", *tiny_flags("small_cnn"), "--batch_size=16",
              "--noprogress"]


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    ws = tmp_path_factory.mktemp("packed") / "ws"
    assert app.pack(app.Settings(workspace=str(ws), task="tiny_a", **TINY))[0] == app.GOAL_MET
    return ws


@pytest.mark.parametrize("flags, message", [
    (["--image_size=2"], r"--base=small_cnn: input size 2 is halved once per layer of --widths \(2\), so it "
                         "needs at least 4"),
    (["--sharing=first", "--method=cpg"], "--method=cpg needs --sharing=cumulative, not --sharing=first"),
    (["--task=age", "--data_dir={tmp}/nowhere"], r"data set 'adience' is not prepared in .*nowhere"),
])
def test_a_bad_request_for_a_new_workspace_writes_nothing(tmp_path, capsys, flags, message):
    ws = tmp_path / "ws"
    status, lines = run_main([f"--workspace={ws}", *TINY_FLAGS, *(f.format(tmp=tmp_path) for f in flags)], capsys)
    assert status == 1 and len(lines) == 1 and lines[0].startswith("paenet.main: error: ")
    assert re.search(message, lines[0]), lines[0]
    assert not ws.exists()


@pytest.mark.parametrize("tf_config", ["{bad", "[1, 2]"])
def test_a_malformed_tf_config_is_one_line(tmp_path, capsys, monkeypatch, tf_config):
    monkeypatch.setenv("TF_CONFIG", tf_config)
    ws = tmp_path / "ws"
    status, lines = run_main([f"--workspace={ws}", *TINY_FLAGS, "--distribution=multi_worker"], capsys)
    assert status == 1 and len(lines) == 1 and "--distribution=multi_worker: TF_CONFIG " in lines[0]
    assert not ws.exists()


def test_a_tensorflow_error_such_as_a_full_disk_is_one_line_from_main(tmp_path, capsys, monkeypatch):
    def full(settings):
        raise tf.errors.ResourceExhaustedError(None, None, f"{tmp_path}/ws/packing: No space left on device")
    monkeypatch.setattr(app, "pack", full)
    status, lines = run_main([f"--workspace={tmp_path / 'ws'}", *TINY_FLAGS], capsys)
    assert status == 1 and lines == [f"paenet.main: error: {tmp_path}/ws/packing: No space left on device"]


@pytest.mark.parametrize("kind", ["empty", "no images"])
def test_a_face_train_folder_without_identities_is_a_usage_error(tmp_path, kind):
    folder = tmp_path / "train"
    folder.mkdir()
    if kind == "no images":
        for identity in ("ann", "bob"):
            (folder / identity).mkdir()
            (folder / identity / "notes.txt").write_text("not an image")
    with pytest.raises(UsageError, match=rf"face_train={folder}: 0 identities"):
        face.training_classes(None, {"face_train": str(folder)})


def test_a_truncated_variables_file_is_one_line_in_main_export_and_report(packed, tmp_path, capsys):
    ws = tmp_path / "ws"
    shutil.copytree(packed, ws)
    data = ws / "packing" / "variables" / "variables.data-00000-of-00001"
    data.write_bytes(data.read_bytes()[:len(data.read_bytes()) // 2])
    before = contents(ws)
    status, lines = run_main([f"--workspace={ws}", *TINY_FLAGS[:1], "--task=tiny_b", "--goal=0.0"], capsys)
    assert status == 1 and len(lines) == 1 and "packing/variables/variables: damaged" in lines[0]
    for program, work in (("paenet.export", lambda: export_workspace(str(ws))),
                          ("paenet.report", lambda: write_report(str(ws)))):
        with pytest.raises(SystemExit) as e:
            report_errors(program, work)
        err = capsys.readouterr().err.strip().splitlines()
        assert e.value.code == 1 and len(err) == 1 and "packing/variables/variables: damaged" in err[0]
    assert contents(ws) == before


def test_an_export_killed_midway_leaves_no_scratch_after_the_rerun(packed, tmp_path, monkeypatch):
    from paenet import fileio
    ws = tmp_path / "ws"
    shutil.copytree(packed, ws)
    rename = os.replace

    def replace(src, dst, *args, **kwargs):       # killed as the new SavedModel is moved into place
        if os.path.basename(dst) == "savedmodel":
            raise Killed
        return rename(src, dst, *args, **kwargs)
    monkeypatch.setattr(fileio.os, "replace", replace)
    monkeypatch.setattr(fileio.shutil, "rmtree", lambda *a, **k: None)    # a kill runs no clean-up
    with pytest.raises(Killed):
        export_workspace(str(ws))
    monkeypatch.undo()
    assert [p.name for p in (ws / "exports").iterdir() if p.name.startswith(".tmp-savedmodel-")]
    export_workspace(str(ws), compressed=True)
    assert sorted(os.listdir(ws / "exports")) == ["compressed.npz", "savedmodel", "sizes.json"]
