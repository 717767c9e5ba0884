"""`python -m paenet.bench`: --list names the rows, --only measures those rows and sets up nothing else,
an unknown name is one error line; rows are well formed (the figures themselves are measured, not tested)."""
import dataclasses
import importlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from paenet import bench

REPO = Path(__file__).resolve().parents[1]


def test_list_names_every_row_once_and_an_unknown_name_is_one_error_line():
    listed = subprocess.run([sys.executable, "-m", "paenet.bench", "--list"], cwd=REPO, check=True,
                            capture_output=True, text=True, timeout=300).stdout.split()
    assert listed == bench.row_names() and len(set(listed)) == len(listed)
    assert {"forward_masked_vs_plain", "train_step_masked_vs_plain", "prune_update", "expand",
            "train_step_expanded_vs_plain", "train_step_vs_matmul_peak", "train_step_20_tasks_vs_1",
            "forward_20_tasks_vs_1", "train_step_5_tasks_vs_1", "train_step_3_expansions_vs_0",
            "prune_update_20_tasks_inception_resnet_v1", "input_pipeline_vs_model"} <= set(listed)

    bad = subprocess.run([sys.executable, "-m", "paenet.bench", "--quick", "--only=prune_update,no_such_row"],
                         cwd=REPO, capture_output=True, text=True, timeout=300)
    assert bad.returncode == 1 and bad.stdout == ""
    errors = [line for line in bad.stderr.splitlines() if "paenet.bench" in line or "Traceback" in line]
    assert len(errors) == 1 and "no_such_row" in errors[0] and "prune_update" not in errors[0]


def test_only_sets_up_and_measures_the_named_rows_alone(monkeypatch):
    calls = []
    for module_name in bench.BENCHMARK_MODULES:
        module = importlib.import_module(module_name)

        def spy(group):
            def measure(quick, wanted):
                calls.append(tuple(wanted))
                yield from group.measure(quick, wanted)
            return dataclasses.replace(group, measure=measure)

        monkeypatch.setattr(module, "GROUPS", tuple(spy(g) for g in module.GROUPS))
    out = io.StringIO()
    results = bench.run(quick=True, only=["prune_update", "forward_masked_vs_plain"], out=out)
    assert calls == [("forward_masked_vs_plain",), ("prune_update",)]
    assert [r["name"] for r in results] == ["forward_masked_vs_plain", "prune_update"]
    assert [json.loads(line) for line in out.getvalue().splitlines()] == results
    for r in results:
        assert set(r) == {"name", "ours", "reference", "unit", "ratio", "device", "config"}
        assert r["ours"] > 0 and r["reference"] > 0
        assert abs(r["ratio"] - r["ours"] / r["reference"]) <= 1e-3 * r["ratio"]
    with pytest.raises(bench.UnknownRows, match="no_such_row"):
        bench.run(quick=True, only=["no_such_row"], out=out)
