"""``python -m paenet.cl_bench``: every method over a real Fashion-MNIST sequence, its outputs, and the
guarantees it enforces."""
import json
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import pytest

from paenet.cl.benchmark import ALL_METHODS, BenchmarkFailure, MethodResult, check
from paenet.evaluation.continual import AccuracyMatrix

REPO = Path(__file__).resolve().parents[1]


def _run(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "paenet.cl_bench", *args], env=env, capture_output=True,
                          text=True, timeout=900)


def test_quick_run_compares_every_method_on_split5(tmp_path):
    result = _run("--quick", "--sequences=split5", f"--output_dir={tmp_path}", "--noprogress")
    assert result.returncode == 0, result.stderr[-3000:]
    rows = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    assert [r["method"] for r in rows] == list(ALL_METHODS)
    by_method = {r["method"]: r for r in rows}
    for method in ("packnet", "pae", "cpg"):
        assert by_method[method]["bwt"] == 0.0
        assert 1.0 <= by_method[method]["weights_x"] <= 2.0 and 0.0 <= by_method[method]["free"] < 1.0
    assert by_method["independent"]["weights_x"] == 5.0
    assert by_method["independent"]["size_mb"] > by_method["packnet"]["size_mb"]
    for r in rows:
        assert 0.0 <= r["avg_accuracy"] <= 1.0 and r["seconds"] > 0 and r["sequence"] == "split5"
    details = json.loads((tmp_path / "results.json").read_text())
    assert len(details) == len(ALL_METHODS) and len(details[0]["accuracy"]) == 5
    table = (tmp_path / "results.md").read_text()
    assert all(f"| split5 | {m} |" in table for m in ALL_METHODS)
    for plot in ("split5_final_accuracy.png", "split5_accuracy_vs_size.png"):
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_bad_flags_and_missing_data_are_one_line(tmp_path):
    for args, words in ((["--methods=pae,magic"], "--methods: unknown ['magic']"),
                        (["--sequences=split9"], "--sequences: unknown ['split9']"),
                        ([f"--fashion_mnist_dir={tmp_path}"], "dataset-fashion-mnist")):
        result = _run("--quick", f"--output_dir={tmp_path / 'out'}", *args)
        assert result.returncode == 1 and words in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr


def _result(method, matrix_rows):
    matrix = AccuracyMatrix(["a", "b", "c"])
    for after, row in enumerate(matrix_rows, 1):
        for task, value in enumerate(row, 1):
            matrix.record(after, task, value)
    return MethodResult("permuted10", method, matrix, 1.0, 0.0, 1.0, 1.0)


def test_check_fails_loudly_when_a_packing_method_forgets_or_finetuning_does_not():
    exact = [[0.9], [0.9, 0.8], [0.9, 0.8, 0.7]]
    drifted = [[0.9], [0.9, 0.8], [0.9 - 1e-9, 0.8, 0.7]]
    check(_result("pae", exact), must_forget=True)
    with pytest.raises(BenchmarkFailure, match="not exactly 0.0"):
        check(_result("cpg", drifted), must_forget=True)
    with pytest.raises(BenchmarkFailure, match="shows no forgetting"):
        check(_result("finetune", exact), must_forget=True)
    check(_result("finetune", exact), must_forget=False)
    check(_result("finetune", [[0.9], [0.5, 0.8], [0.4, 0.6, 0.7]]), must_forget=True)
    assert np.isclose(_result("finetune", [[0.9], [0.5, 0.8], [0.4, 0.6, 0.7]]).matrix.backward_transfer(), -0.35)


@pytest.mark.parametrize("flagfile", sorted((REPO / "experiments" / "cl_bench").glob("*.flags")),
                         ids=lambda p: p.name)
def test_flag_files_parse_and_open_with_their_command(flagfile):
    text = flagfile.read_text()
    assert text.startswith("#") and "Run: python3 -m" in text and "paenet.cl_bench --flagfile=" in text
    parse = ("from absl import flags; from paenet import cl_bench; cl_bench.define_flags(); "
             f"flags.FLAGS(['cl_bench', '--flagfile={flagfile}']); cl_bench.check_flags()")
    result = subprocess.run([sys.executable, "-c", parse], capture_output=True, text=True, timeout=120,
                            env={**os.environ, "PYTHONPATH": str(REPO)}, cwd=REPO)
    assert result.returncode == 0, result.stderr[-2000:]


def test_every_sequence_has_a_full_configuration_and_its_backbone_scales():
    from paenet import cl_bench
    from paenet.cl.sequences import SEQUENCES
    for name, spec in SEQUENCES.items():
        assert cl_bench.config_for(name, quick=False).train_steps > 0
        scaled = cl_bench._scaled(spec.quick_backbone_kwargs, 2.0)
        assert set(scaled) == set(spec.quick_backbone_kwargs)
        assert scaled.get("widths") == tuple(2 * w for w in spec.quick_backbone_kwargs.get("widths", ()))
    assert cl_bench._scaled(SEQUENCES["cifar100_resnet18"].quick_backbone_kwargs, 2.0)["widths"] == (8, 8, 16, 16)
