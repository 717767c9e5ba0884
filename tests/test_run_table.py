"""experiments/run.py prints each task's test accuracy beside the paper's, and the sizes beside the paper's."""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "experiments"))
import run  # noqa: E402


def test_table_puts_the_test_figures_beside_the_papers():
    experiment = run.EXPERIMENTS["exp1"]
    summary = {"test_accuracy": {"face": (98.5, 0.41, 99.67), "age": (55.123, 2.5, 57.30),
                                 "gender": (88.0, 1.0, 89.08)},
               "cumulative_mb": [61.04, 76.0, 91.0], "paper_mb": experiment["paper_mb"]}
    lines = run.table(experiment, summary).splitlines()
    assert experiment["source"] in lines[0]
    assert lines[2].split() == ["age", "55.12", "±", "2.50", "57.30"]
    assert lines[5].split() == ["1", "61.0", "68.9"]
    assert len(lines) == 1 + 3 + 1 + 3
