"""The input_pipeline_vs_model benchmark row runs (quick mode) and is reachable from paenet.bench."""
import io
import json

from paenet.bench import BENCHMARK_MODULES, run


def test_input_pipeline_row_runs_quickly():
    assert "paenet.benchmarks.data" in BENCHMARK_MODULES
    out = io.StringIO()
    (result,) = run(quick=True, only=["input_pipeline_vs_model"], out=out)
    assert json.loads(out.getvalue()) == result
    assert result["unit"] == "images/s" and result["ours"] > 0 and result["reference"] > 0
    assert result["ratio"] == round(result["ours"] / result["reference"], 4)
    assert "random 160 crop" in result["config"]
