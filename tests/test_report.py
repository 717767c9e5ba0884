"""The report: Markdown and HTML with the same content, every plot a real PNG, every table true to the
workspace it describes."""
import csv
import json
import os
import re
import shutil
import subprocess
import sys

import numpy as np
import pytest
from PIL import Image

from packed_workspace import make_workspace
from paenet.evaluation import model_size
from paenet.export import export_workspace
from paenet.models import layer_key
from paenet.report import largest_change, read_accuracy, stage, write_report
from paenet.workspace import WorkspaceError

REPO = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
PLOTS = {"accuracy_matrix.png", "ownership.png", "pruning.png", "model_size.png", "verification_roc.png"}


@pytest.fixture(scope="module")
def reported(tmp_path_factory):
    packed = make_workspace(str(tmp_path_factory.mktemp("report")))
    sizes = export_workspace(packed["workspace"], compressed=True)
    paths = write_report(packed["workspace"])
    with open(paths["markdown"]) as f:
        markdown = f.read()
    with open(paths["html"]) as f:
        page = f.read()
    return {**packed, "sizes": sizes, "paths": paths, "markdown": markdown, "html": page}


def _row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def test_report_files_and_plots(reported):
    folder = os.path.join(reported["workspace"], "report")
    assert os.path.dirname(reported["paths"]["markdown"]) == folder
    images = re.findall(r"!\[[^\]]*\]\(([^)]+)\)", reported["markdown"])
    assert set(images) == PLOTS
    assert re.findall(r'<img src="([^"]+)"', reported["html"]) == images
    for name in images:
        with open(os.path.join(folder, name), "rb") as f:
            png = f.read()
        assert png.startswith(b"\x89PNG\r\n\x1a\n") and len(png) > 5000, name


def test_markdown_and_html_hold_the_same_content(reported):
    markdown, page = reported["markdown"], reported["html"]
    assert re.findall(r"^#+ (.*)$", markdown, re.M) == re.findall(r"<h\d>(.*?)</h\d>", page)
    assert markdown.count("\n| --- |") == page.count("<table>") == 7
    for cell in re.findall(r"<td>(.*?)</td>", page):
        assert cell.replace("<code>", "`").replace("</code>", "`") in markdown


def test_tasks_table_names_every_task_with_its_record(reported):
    packer, markdown = reported["packer"], reported["markdown"]
    classes = {"face": "0", "age": "3: young, adult, old", "gender": "2: male, female"}   # names, not counts
    for r in packer.records:
        metrics = ", ".join(f"{k}={v:.4g}" for k, v in sorted(r.metrics.items()))
        assert _row(r.task, r.name, classes[r.name], sum(r.owned.values()), "60.0%", metrics, r.digest[:12]) \
            in markdown
    assert "3 finished tasks: face, age, gender" in markdown


def test_accuracy_matrix_comes_from_the_evaluations(reported):
    with open(os.path.join(reported["workspace"], "evaluations.json")) as f:
        entries = json.load(f)
    value = {(e["after_task"], e["task"], e["split"]): e["value"] for e in entries}
    for split in ("val", "test"):
        row = [f"{value[(3, t, split)]:.4f}" for t in (1, 2, 3)]
        assert _row("after 3: gender", *row) in reported["markdown"]
        # Finished tasks are bit-exact, so nothing they score ever changes.
        assert f"Split `{split}`: largest change of a task's accuracy after it was packed: 0." in reported["markdown"]


def test_ownership_size_expansion_and_roc_sections(reported):
    model, markdown = reported["packer"].model, reported["markdown"]
    with open(os.path.join(reported["workspace"], "report", "ownership.csv")) as f:
        rows = list(csv.reader(f))
    assert rows[0] == ["layer", "stage", "weights", "free", "face", "age", "gender"]
    assert len(rows) == 1 + len(model.masked_layers())
    for layer, row in zip(model.masked_layers(), rows[1:]):
        counts = np.bincount(layer.mask.numpy().ravel(), minlength=4)
        assert row == [layer_key(layer), stage(layer_key(layer)), *map(str, [layer.mask.numpy().size, *counts])]
    with Image.open(os.path.join(reported["workspace"], "report", "ownership.png")) as picture:
        assert picture.height <= 1000        # one screen, however many layers
    assert "Per layer: `ownership.csv`" in markdown
    mb = model_size.MB
    for r in reported["sizes"]["paper_accounting"]:
        assert _row(r["task"], r["name"], r["owned_weights"], f"{r['module_bytes'] / mb:.3f}",
                    f"{r['cumulative_bytes'] / mb:.3f}", f"{r['separate_bytes'] / mb:.3f}",
                    f"{r['ratio']:.1%}") in markdown
    assert (f"`exports/savedmodel`: {reported['sizes']['savedmodel_bytes']} bytes; "
            f"`exports/compressed.npz`: {reported['sizes']['compressed_bytes']} bytes") in markdown
    (event,) = reported["packer"].records[2].expansions
    assert _row("gender", 1, "uniform", 1.5, event["parameters"],
                ", ".join(f"{k}={w}" for k, w in event["widths"].items())) in markdown
    assert "## Verification ROC of face on ckplus/pairs.txt" in markdown
    assert "on its test split, folds 6-10 of /data/ckplus/pairs.txt. AUC = 0.6667." in markdown


def test_every_section_names_its_data_and_no_table_shows_nan(reported):
    markdown = reported["markdown"]
    for name in ("face", "age", "gender"):
        t = ["face", "age", "gender"].index(name) + 1
        assert _row(t, name, f"the val images of {name}", f"the test images of {name}") in markdown
    assert "on the task's validation split (the Data section)" in markdown
    assert not re.search(r"\bnan\b", markdown, re.I)


def test_a_task_without_a_test_split_says_so(reported, tmp_path):
    workspace = tmp_path / "workspace"
    shutil.copytree(reported["workspace"], workspace)
    entries = json.loads((workspace / "evaluations.json").read_text())
    (workspace / "evaluations.json").write_text(json.dumps(
        [e for e in entries if not (e["name"] == "gender" and e["split"] == "test")]))
    markdown = open(write_report(str(workspace), str(tmp_path / "report"))["markdown"]).read()
    assert _row(3, "gender", "the val images of gender", "no test split") in markdown
    assert re.search(r"\| after 3: gender \| [0-9.]+ \| [0-9.]+ \| no test split \|", markdown)
    assert not re.search(r"\bnan\b", markdown, re.I)


def test_read_accuracy_leaves_out_stale_entries_and_names_bad_ones(tmp_path):
    entries = [{"after_task": 2, "task": 1, "name": "face", "split": "val", "metric": "accuracy", "value": 0.9},
               {"after_task": 2, "task": 2, "name": "smile", "split": "val", "metric": "accuracy", "value": 0.5},
               {"after_task": 2, "task": 2, "name": "age", "split": "val", "metric": "loss", "value": 1.5}]
    path = tmp_path / "evaluations.json"
    path.write_text(json.dumps(entries))
    matrices, stale = read_accuracy(str(path), ["face", "age"])
    assert stale == 1 and list(matrices) == ["val"]
    assert matrices["val"][1, 0] == 0.9 and np.isnan(matrices["val"][1, 1])
    path.write_text(json.dumps([{"after_task": 1, "task": 1}]))
    with pytest.raises(WorkspaceError, match=r"entry 0 lacks \['name', 'split', 'metric', 'value'\]"):
        read_accuracy(str(path), ["face"])


def test_largest_change():
    matrix = np.array([[0.9, np.nan, np.nan], [0.85, 0.7, np.nan], [0.9, 0.75, 0.6]])
    assert largest_change(matrix) == pytest.approx(0.05)
    assert np.isnan(largest_change(np.array([[0.5]])))


def _command(*args):
    return subprocess.run([sys.executable, "-m", "paenet.report", *args], cwd=REPO, capture_output=True,
                          text=True, env={**os.environ, "PYTHONPATH": REPO, "TF_CPP_MIN_LOG_LEVEL": "3"})


def test_command_line_on_a_bare_packing_folder(reported, tmp_path):
    packing = os.path.join(reported["workspace"], "packing")
    done = _command(f"--workspace={packing}", f"--output={tmp_path}")
    assert done.returncode == 0, done.stderr
    markdown = (tmp_path / "report.md").read_text()
    assert "No `evaluations.json` in the workspace" in markdown and "Verification ROC" not in markdown
    assert {p.name for p in tmp_path.glob("*.png")} == PLOTS - {"accuracy_matrix.png", "verification_roc.png"}
    failed = _command(f"--workspace={packing}")
    assert failed.returncode != 0
    assert failed.stderr.strip().splitlines()[-1] == \
        f"paenet.report: {packing} is a bare packing folder, not a workspace: give --output"
