"""`python -m paenet.bench`: --list names the rows, --only measures those rows and sets up nothing else,
an unknown name is one error line; rows are well formed (the figures themselves are measured, not tested)."""
import dataclasses
import importlib
import io
import json

import numpy as np
import pytest

from paenet import bench


def test_list_names_every_row_once_and_an_unknown_name_is_one_error_line(capsys):
    try:
        bench.FLAGS(["paenet.bench", "--list"])
        bench.main([])
        listed = capsys.readouterr().out.split()
        bench.FLAGS.unparse_flags()
        bench.FLAGS(["paenet.bench", "--quick", "--only=prune_update,no_such_row"])
        with pytest.raises(SystemExit) as exit_:
            bench.main([])
    finally:
        bench.FLAGS.unparse_flags()
    assert listed == bench.row_names() and len(set(listed)) == len(listed)
    assert {"forward_masked_vs_plain", "train_step_masked_vs_plain", "prune_update", "expand",
            "train_step_expanded_vs_plain", "train_step_vs_matmul_peak", "train_step_20_tasks_vs_1",
            "forward_20_tasks_vs_1", "train_step_5_tasks_vs_1", "train_step_3_expansions_vs_0",
            "prune_update_20_tasks_inception_resnet_v1", "input_pipeline_vs_model",
            "input_pipeline_cached_vs_model", "cl_train_step_vs_keras_fit", "litert_shared_vs_savedmodel",
            "litert_size_vs_separate"} <= set(listed)
    output = capsys.readouterr()
    assert exit_.value.code == 1 and output.out == ""
    assert len(output.err.splitlines()) == 1 and "no_such_row" in output.err and "prune_update" not in output.err


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


def test_the_peak_rows_on_a_cpu_measure_the_matmul_row_and_leave_the_datasheet_row_out_in_one_line(capsys):
    """No entry of the datasheet table is shadowed by an earlier, shorter name ("H100" before "H100 PCIe"
    would be); on this CPU the datasheet row is left out with one stderr line, the matmul row measured."""
    from paenet.benchmarks import peak
    from paenet.benchmarks.timing import measure_rows
    for part, flops in peak.DATASHEET_BF16:
        assert peak.datasheet_bf16_peak(f"NVIDIA {part}") == flops, part
    assert peak.datasheet_bf16_peak("CPU: AMD EPYC, 2 cores") is None
    rows = list(measure_rows(peak.GROUPS, quick=True))
    assert [r["name"] for r in rows] == ["train_step_vs_matmul_peak"] and rows[0]["ours"] > 0
    err = [line for line in capsys.readouterr().err.splitlines() if line.startswith("paenet.bench:")]
    assert len(err) == 1 and "train_step_bf16_vs_datasheet_peak left out" in err[0], err


def test_compare_rates_alternates_which_side_runs_first_and_times_each_call_after_its_setup():
    from paenet.benchmarks.timing import compare_rates
    order = []
    ours, reference = (lambda: order.append("ours")), (lambda: order.append("reference"))
    compare_rates(ours, reference, 1, repeats=4, calls=2, warmup=1, setup=lambda: order.append("setup"))
    calls = [name for name in order if name != "setup"]
    assert order[::2] == ["setup"] * (len(order) // 2) and len(calls) == 2 + 4 * 2 * 2
    trials = [calls[i:i + 4] for i in range(2, len(calls), 4)]
    assert trials == [["ours", "ours", "reference", "reference"], ["reference", "reference", "ours", "ours"]] * 2


def test_isolated_run_measures_each_group_in_its_own_process_and_a_failed_one_is_an_error(monkeypatch):
    import shutil
    import subprocess
    import sys
    measured_here, commands = [], []
    for module_name in bench.BENCHMARK_MODULES:
        module = importlib.import_module(module_name)
        monkeypatch.setattr(module, "GROUPS", tuple(
            dataclasses.replace(g, measure=lambda quick, wanted: measured_here.append(wanted) or iter(()))
            for g in module.GROUPS))
    popen = subprocess.Popen

    def recording_popen(command, **kwargs):
        commands.append(command[1:])
        return popen(command, **kwargs)

    monkeypatch.setattr(subprocess, "Popen", recording_popen)
    results = bench.run(quick=True, only=["prune_update", "forward_masked_vs_plain"], out=io.StringIO(),
                        isolate=True)
    assert measured_here == []
    assert commands == [["-m", "paenet.bench", "--noisolate", "--only=forward_masked_vs_plain", "--quick"],
                        ["-m", "paenet.bench", "--noisolate", "--only=prune_update", "--quick"]]
    assert [r["name"] for r in results] == ["forward_masked_vs_plain", "prune_update"]
    assert all(r["ours"] > 0 and r["reference"] > 0 and r["device"] for r in results)
    monkeypatch.setattr(sys, "executable", shutil.which("false"))
    with pytest.raises(bench.MeasurementFailed, match="prune_update: its process exited with status 1"):
        bench.run(quick=True, only=["prune_update"], out=io.StringIO(), isolate=True)


def test_the_continual_learning_row_races_the_benchmarks_trainer_against_keras_fit_of_the_same_mlp():
    from paenet.benchmarks import continual
    from paenet.benchmarks.timing import measure_rows
    from paenet.models import MLP, TaskSpec
    model = MLP(widths=(20,), dense_units=12, tasks=[TaskSpec("t", 10)]).build_variables()
    plain = continual.plain_mlp(model, 10)
    masked = sum(int(np.prod(l.kernel.shape)) for l in model.masked_layers()) + sum(
        int(np.prod(v.shape)) for v in model.task_variables(1, trainable_only=True))
    assert masked == sum(int(np.prod(v.shape)) for v in plain.trainable_variables)
    [result] = list(measure_rows(continual.GROUPS, quick=True))
    assert result["name"] == "cl_train_step_vs_keras_fit" and result["ours"] > 0 and result["reference"] > 0
    assert "steps_per_execution=5" in result["config"]
