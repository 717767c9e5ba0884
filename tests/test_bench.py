"""`python -m paenet.bench` prints well-formed rows (the figures themselves are measured, not tested)."""
import json
import subprocess
import sys
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def test_bench_quick_prints_every_row_as_json():
    out = subprocess.run([sys.executable, "-m", "paenet.bench", "--quick"], cwd=REPO, check=True,
                         capture_output=True, text=True, timeout=600).stdout
    rows = [json.loads(line) for line in out.splitlines() if line.startswith("{")]
    names = {r["name"] for r in rows}
    assert {"forward_masked_vs_plain", "train_step_masked_vs_plain", "prune_update", "expand",
            "train_step_expanded_vs_plain"} <= names
    for r in rows:
        assert set(r) >= {"name", "ours", "reference", "unit", "ratio", "device"}
        assert r["ours"] > 0 and r["reference"] > 0
        assert abs(r["ratio"] - r["ours"] / r["reference"]) <= 1e-3 * r["ratio"]
