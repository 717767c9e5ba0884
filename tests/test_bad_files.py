"""One line, exit status 1, the file named and nothing changed, for bad files in every command: images
(zero bytes, not an image, a decompression bomb), pairs.txt (header, index), damaged workspace files
(export, report), a full disk and a read-only workspace."""
import errno
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from PIL import Image

from paenet.cli import report_errors
from paenet.data.pairs import read_pairs
from paenet.embed import load_image
from paenet.records import IntegrityError
from main_in_process import run_main

REPO = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("kind", ["zero bytes", "text", "bomb"])
def test_a_bad_image_is_named(tmp_path, monkeypatch, kind):
    path = tmp_path / "face.png"
    if kind == "zero bytes":
        path.write_bytes(b"")
    elif kind == "text":
        path.write_text("not an image")
    else:
        Image.new("L", (100, 100)).save(path)
        monkeypatch.setattr(Image, "MAX_IMAGE_PIXELS", 1000)     # 100 x 100 is then a bomb
    with pytest.raises(ValueError, match=f"{path}: not a readable image"):
        load_image(str(path), 160)


@pytest.mark.parametrize("text, line", [("ten\t300\n", 1), ("1\t1\nJoe\t1\tx\nAnn\t1\tBob\t2\n", 2),
                                        ("1\t1\nJoe\t1\t2\nAnn\t0\tBob\t2\n", 3)])
def test_a_bad_pairs_file_is_named_with_its_line(tmp_path, text, line):
    path = tmp_path / "pairs.txt"
    path.write_text(text)
    with pytest.raises(ValueError, match=f"{path}, line {line}: expected a positive integer"):
        read_pairs(path)


def test_report_errors_prints_one_line_and_exits_1(capsys):
    def work():
        raise IntegrityError("ws/packing/state.json: checksum mismatch")
    with pytest.raises(SystemExit) as e:
        report_errors("paenet.report", work)
    assert e.value.code == 1
    assert capsys.readouterr().err == "paenet.report: ws/packing/state.json: checksum mismatch\n"


def test_a_full_disk_is_one_line_and_leaves_nothing(tmp_path, monkeypatch, capsys):
    from paenet import fileio

    def full(*args, **kwargs):
        raise OSError(errno.ENOSPC, "No space left on device", str(tmp_path / "ws" / "workspace.json"))
    monkeypatch.setattr(fileio.json, "dump", full)
    status, lines = run_main([f"--workspace={tmp_path / 'ws'}", "--task=face_nonface", "--goal=0.5",
                           "--image_size=16", "--widths=4", "--dense_units=4", "--noprogress"], capsys)
    assert status == 1 and len(lines) == 1 and "No space left on device" in lines[0], lines
    assert not (tmp_path / "ws").exists()


def test_a_read_only_workspace_is_one_line_and_unchanged(tmp_path, monkeypatch, capsys):
    from paenet import workspace
    ws = tmp_path / "ws"
    ws.mkdir()
    (ws / "keep").write_text("x")

    def read_only(path, *args, **kwargs):
        raise PermissionError(errno.EACCES, "Permission denied", str(path))
    monkeypatch.setattr(workspace, "open", read_only, raising=False)
    status, lines = run_main([f"--workspace={ws}", "--task=face_nonface", "--goal=0.5", "--noprogress"], capsys)
    assert status == 1 and len(lines) == 1 and "Permission denied" in lines[0] and str(ws) in lines[0], lines
    assert sorted(p.name for p in ws.iterdir()) == ["keep"]


@pytest.fixture(scope="module")
def packed(tmp_path_factory):
    from packed_workspace import make_workspace
    return Path(make_workspace(str(tmp_path_factory.mktemp("packed")))["workspace"])


def _files(path):
    return {str(p.relative_to(path)): p.read_bytes() for p in sorted(Path(path).rglob("*")) if p.is_file()}


def test_report_names_a_truncated_evaluations_file(packed, tmp_path):
    import shutil

    from paenet.report import write_report
    ws = tmp_path / "ws"
    shutil.copytree(packed, ws)
    (ws / "evaluations.json").write_text(json.dumps([{"after_task": 1}])[:10])
    before = _files(ws)
    with pytest.raises(IntegrityError, match="evaluations.json: unreadable"):
        write_report(str(ws))
    assert _files(ws) == before


def test_export_names_a_bit_flipped_checkpoint_in_one_line(packed, tmp_path):
    import shutil
    ws = tmp_path / "ws"
    shutil.copytree(packed, ws)
    [data] = (ws / "packing" / "variables").glob("variables.data-*")
    flipped = bytearray(data.read_bytes())
    flipped[len(flipped) // 2] ^= 1
    data.write_bytes(bytes(flipped))
    before = _files(ws)
    result = subprocess.run([sys.executable, "-m", "paenet.export", f"--workspace={ws}"], capture_output=True,
                            text=True, timeout=300, env={**os.environ, "PYTHONPATH": str(REPO)})
    lines = [l for l in result.stderr.splitlines() if l.startswith("paenet.export")]
    assert result.returncode == 1 and "Traceback" not in result.stderr, result.stderr[-2000:]
    assert lines == [l for l in lines if "packing/variables/variables: damaged" in l] and len(lines) == 1, lines
    assert _files(ws) == before
