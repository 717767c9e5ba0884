"""The input pipeline rows (decoding every image, and from a cache of decoded images) run in quick mode
and are reachable from paenet.bench."""
import io
import json

import pytest

from paenet.bench import BENCHMARK_MODULES, run


def test_input_pipeline_rows_run_quickly():
    assert "paenet.benchmarks.data" in BENCHMARK_MODULES
    out = io.StringIO()
    results = run(quick=True, only=["input_pipeline_vs_model", "input_pipeline_cached_vs_model"], out=out)
    assert [json.loads(line) for line in out.getvalue().splitlines()] == results
    assert [r["name"] for r in results] == ["input_pipeline_vs_model", "input_pipeline_cached_vs_model"]
    for result in results:
        assert result["unit"] == "images/s" and result["ours"] > 0 and result["reference"] > 0
        assert result["ratio"] == pytest.approx(result["ours"] / result["reference"], rel=1e-3)
        assert "random 160 crop" in result["config"] and "images/s per core" in result["config"]
    assert "cached" in results[1]["config"]
