"""``python -m paenet.cl_bench``: every method over a real Fashion-MNIST sequence, its outputs, and the
guarantees it enforces."""
import dataclasses
import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from paenet.cl.benchmark import ALL_METHODS, BenchmarkFailure, MethodResult, check
from paenet.cl.summary import README_BEGIN, README_END, orderings, readme_section, replace_section, summarise
from paenet.evaluation.continual import AccuracyMatrix

REPO = Path(__file__).resolve().parents[1]


def _run(*args):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    return subprocess.run([sys.executable, "-m", "paenet.cl_bench", *args], env=env, capture_output=True,
                          text=True, timeout=900)


def test_quick_run_compares_every_method_on_split5(tmp_path):
    result = _run("--quick", "--sequences=split5", f"--output_dir={tmp_path}", "--noprogress")
    assert result.returncode == 0, result.stderr[-3000:]
    lines = [json.loads(line) for line in result.stdout.splitlines() if line.startswith("{")]
    rows, summary = [l for l in lines if "seed" in l], [l for l in lines if "seeds" in l]
    assert sorted(r["method"] for r in rows) == sorted(ALL_METHODS)       # printed as each finishes
    assert [s["method"] for s in summary] == list(ALL_METHODS)
    by_method = {r["method"]: r for r in rows}
    for method in ("packnet", "pae", "cpg", "piggyback"):
        assert by_method[method]["bwt"] == 0.0 and by_method[method]["forgetting"] == 0.0
        assert 1.0 <= by_method[method]["weights_x"] <= 2.0 and 0.0 <= by_method[method]["free"] < 1.0
        assert by_method[method]["size_vs_independent"] < 1.0 and by_method[method]["fwt"] is not None
    assert by_method["independent"]["weights_x"] == 3.0 and by_method["independent"]["fwt"] == 0.0
    assert by_method["independent"]["size_mb"] > by_method["packnet"]["size_mb"]
    assert by_method["independent_pruned"]["size_vs_independent_pruned"] == 1.0
    for r in rows:
        assert 0.0 <= r["avg_accuracy"] <= 1.0 and r["seconds"] > 0 and r["sequence"] == "split5" and r["seed"] == 0
    details = json.loads((tmp_path / "results.json").read_text())
    assert details["meta"]["seeds"] == [0] and details["meta"]["command"].startswith("python -m paenet.cl_bench")
    runs = {r["method"]: r for r in details["runs"]}
    assert [r["method"] for r in details["rows"]] == [r["method"] for r in details["runs"]] == list(ALL_METHODS)
    assert len(runs["pae"]["accuracy"]) == 3
    budget = runs["independent"]["per_task"][0]["steps"]
    margin = details["meta"]["configs"]["split5"]["margin"]   # goals: independent's one-phase validation - margin
    assert [t["goal"] for t in runs["packnet"]["per_task"]] == [
        max(0.0, t["phase_val_accuracy"] - margin) for t in runs["independent"]["per_task"]]
    assert {t["steps"] for t in runs["finetune"]["per_task"]} == {budget}
    # Fine-tuning: one unmasked network that task 1 takes whole, every later task training all of it.
    assert by_method["finetune"]["weights_x"] == 1.0 and by_method["finetune"]["free"] == 0.0
    assert [t["owned"] > 0 for t in runs["finetune"]["per_task"]] == [True, False, False]
    assert by_method["finetune"]["size_mb"] < by_method["independent"]["size_mb"] / 2    # one of 3 networks
    for method in ("packnet", "pae", "cpg", "independent_pruned"):
        for task in runs[method]["per_task"]:
            assert 0 < task["steps"] <= budget and task["status"] in ("goal_met", "below_goal")
            assert task["owned"] >= 0 and 0.0 <= task["free_after"] < 1.0 and 0.0 <= task["chosen_sparsity"] < 1.0
        assert runs[method]["per_task"][0]["owned"] > 0
    # Piggyback: task 1 takes the whole network, each later task only picks among its weights.
    assert by_method["piggyback"]["weights_x"] == 1.0 and by_method["piggyback"]["free"] == 0.0
    assert [t["owned"] > 0 for t in runs["piggyback"]["per_task"]] == [True, False, False]
    from paenet.cl_bench import config_for
    assert {t["steps"] for t in runs["piggyback"]["per_task"]} == {config_for("split5", quick=True).task_budget(0)}
    table = (tmp_path / "results.md").read_text()
    assert all(f"| split5 | {m} | 1 |" in table for m in ALL_METHODS) and "no ordering is claimed" in table
    for plot in ("split5_final_accuracy.png", "split5_accuracy_vs_size.png"):
        assert (tmp_path / plot).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_goals_from_the_budget_are_independents_best_validated_state_minus_the_margin(tmp_path):
    result = _run("--quick", "--sequences=split5", "--methods=independent,packnet", "--goal_from=budget",
                  f"--output_dir={tmp_path}", "--noprogress")
    assert result.returncode == 0, result.stderr[-3000:]
    details = json.loads((tmp_path / "results.json").read_text())
    config = details["meta"]["configs"]["split5"]
    independent, packnet = ([t for t in r["per_task"]] for r in details["runs"])
    assert config["goal_from"] == "budget"
    assert [t["val_accuracy"] for t in independent] == [max(a for _, a in t["val_curve"]) for t in independent]
    assert [t["goal"] for t in packnet] == [max(0.0, t["val_accuracy"] - config["margin"]) for t in independent]


def test_the_flags_name_the_benchmarks_methods_sequences_and_goal_sources_without_loading_tensorflow():
    from paenet import cl_bench
    from paenet.cl.benchmark import GOAL_FROM
    from paenet.cl.sequences import SEQUENCES
    assert cl_bench.METHODS == ALL_METHODS and cl_bench.GOAL_FROM == GOAL_FROM and list(cl_bench.FULL) == list(SEQUENCES)
    # What a parallel run's main process loads: its workers start while it would otherwise be loading TensorFlow.
    code = ("import sys; from absl import flags; from paenet import cl_bench, plots; from paenet.cl import summary; "
            "cl_bench.define_flags(); flags.FLAGS(['cl_bench', '--quick']); cl_bench.check_flags(); "
            "assert 'tensorflow' not in sys.modules, 'tensorflow loaded'")
    result = subprocess.run([sys.executable, "-c", code], env={**os.environ, "PYTHONPATH": str(REPO)},
                            capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr[-2000:]


def test_bad_flags_and_missing_data_are_one_line(tmp_path):
    for args, words in ((["--goal_from=test"], "--goal_from"),
                        (["--methods=pae,magic"], "--methods: unknown ['magic']"),
                        (["--sequences=split9"], "--sequences: unknown ['split9']"),
                        (["--seeds=0,x"], "--seeds=0,x: must be a list of integers"),
                        (["--seeds=1,1"], "--seeds=1,1: must be distinct"),
                        ([f"--fashion_mnist_dir={tmp_path}"], "dataset-fashion-mnist")):
        result = _run("--quick", f"--output_dir={tmp_path / 'out'}", *args)
        assert result.returncode == 1 and words in result.stderr, result.stderr[-2000:]
        assert "Traceback" not in result.stderr


def test_a_killed_worker_is_one_line_and_the_finished_parts_stay(tmp_path):
    env = {**os.environ, "TF_CPP_MIN_LOG_LEVEL": "2", "PYTHONPATH": str(REPO)}
    run = subprocess.Popen([sys.executable, "-m", "paenet.cl_bench", "--quick", "--sequences=split5,permuted10",
                            "--methods=independent,packnet", f"--output_dir={tmp_path}", "--noprogress"],
                           env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    # Kill a worker once the first part has finished and been saved: later parts are still to run.
    while not (tmp_path / "results.json").exists() and run.poll() is None:
        time.sleep(0.2)
    workers = subprocess.run(["pgrep", "-P", str(run.pid), "-f", "spawn_main"], capture_output=True, text=True)
    os.kill(int(workers.stdout.split()[0]), signal.SIGKILL)
    stdout, stderr = run.communicate(timeout=300)
    assert run.returncode == 1 and "a worker process ended abruptly" in stderr and "Traceback" not in stderr, stderr
    saved = json.loads((tmp_path / "results.json").read_text())
    assert saved["rows"] and all(row in [json.loads(l) for l in stdout.splitlines()] for row in saved["rows"])


def _result(method, matrix_rows, steps=(10, 10, 10)):
    matrix = AccuracyMatrix(["a", "b", "c"])
    for after, row in enumerate(matrix_rows, 1):
        for task, value in enumerate(row, 1):
            matrix.record(after, task, value)
    return MethodResult("permuted10", method, matrix, 1.0, 0.0, 1.0, 1.0,
                        tasks=[{"steps": s} for s in steps])


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
    check(_result("pae", exact, steps=(10, 12, 3)), must_forget=True, independent=_result("independent", exact, (12,) * 3))
    with pytest.raises(BenchmarkFailure, match=r"tasks \[2\] took more steps than independent's 11"):
        check(_result("pae", exact, steps=(10, 12, 3)), must_forget=True,
              independent=_result("independent", exact, (11,) * 3))


def test_intervals_and_orderings_follow_the_seeds_numbers():
    rows = [{"sequence": "s", "method": m, "seed": seed, "avg_accuracy": acc}
            for m, accs in (("cpg", (0.90, 0.91, 0.92)), ("pae", (0.80, 0.81, 0.82)), ("packnet", (0.79, 0.84, 0.82)))
            for seed, acc in enumerate(accs)]
    summary = summarise(rows)
    cpg = summary[0]["avg_accuracy"]
    assert summary[0]["seeds"] == [0, 1, 2] and cpg["mean"] == pytest.approx(0.91) and cpg["std"] == pytest.approx(0.01)
    assert cpg["ci95"] == pytest.approx([0.91 - 4.302653 * 0.01 / 3 ** 0.5, 0.91 + 4.302653 * 0.01 / 3 ** 0.5])
    assert summary[0]["bwt"]["mean"] is None
    sentence = orderings(summary)
    assert "cpg > packnet, cpg > pae;" in sentence and "overlap for packnet and pae" in sentence
    assert "pae > packnet" not in sentence and "packnet > pae" not in sentence
    assert "no ordering is claimed" in orderings(summarise(rows[:1]))


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


def test_cpg_cifar_configuration_grows_vgg16_bn_fc2_included_to_1_5x_its_weights():
    """CPG's growth (ivclab/CPG: sqrt(1.5)x every layer's filters, fc2's too): one round of cifar100_cpg20's
    policy widens every layer of VGG16-BN and stays under the configuration's cap."""
    import keras
    from paenet import cl_bench
    from paenet.expansion import masked_parameters
    from paenet.models import VGG16BN, TaskSpec
    from paenet.packing import Packer
    packer = Packer(VGG16BN(name="vgg"), keras.optimizers.Adam())
    packer.start_task(TaskSpec("one", 5))
    before, base = packer.model.width_config(), masked_parameters(packer.model)
    assert packer.expand(cl_bench.config_for("cifar100_cpg20", quick=False).plan().expansion) is not None
    after = packer.model.width_config()
    assert set(after) == {*(f"conv{i}" for i in range(1, 14)), "fc1", "fc2"}
    assert all(after[k] > before[k] for k in before)
    assert 1.5 < masked_parameters(packer.model) / base < 1.51


def test_every_flag_file_the_code_and_readme_name_exists():
    import re
    texts = [p.read_text() for p in (REPO / "README.md", REPO / "paenet" / "cl_bench.py",
                                     *(REPO / "paenet" / "cl").glob("*.py"), *(REPO / "experiments" / "cl_bench").glob("*"))]
    named = {m for text in texts for m in re.findall(r"experiments/[\w/]+\.flags", text)}
    assert named and [n for n in named if not (REPO / n).is_file()] == []


def test_the_readme_table_is_the_one_generated_from_the_committed_results():
    """docs/cl_bench*/results.json are the measurements; README.md must show exactly what they generate
    (python -m paenet.cl_bench --from_results=FILE,... --readme=README.md, the files in name order)."""
    files = sorted((REPO / "docs").glob("cl_bench*/results.json"))
    results = [json.loads(f.read_text()) for f in files]
    section = readme_section(results)
    assert files and section in (REPO / "README.md").read_text()
    for r in results:
        for s in r["summary"]:
            assert f"| {s['sequence']} | {s['method']} | {len(s['seeds'])} | {s['avg_accuracy']['mean']:.4f}" in section
        assert r["meta"]["commit"] in section and r["meta"]["command"] in section


def test_replacing_the_generated_section_keeps_the_rest_and_refuses_a_file_without_one():
    text = f"intro\n{README_BEGIN}\nold\n{README_END}\noutro\n"
    assert replace_section(text, f"{README_BEGIN}\nnew\n{README_END}") == f"intro\n{README_BEGIN}\nnew\n{README_END}\noutro\n"
    with pytest.raises(ValueError, match="no generated section"):
        replace_section("intro\n", "x")


def test_the_budget_covers_every_step_a_packing_method_can_take_and_the_reserve_leaves_room_for_the_rest():
    from paenet.cl.benchmark import BenchConfig, max_expansions, reserve_for
    from paenet.cl.sequences import Sequence, TaskData
    config = BenchConfig(train_steps=10, targets=(0.5, 0.75), steps_per_round=4, prune_steps=2)
    assert config.task_budget(2) == 10 * 3 + 3 * 4 + 3      # + CPG's retraining after pruning: 0.3 of training
    images, labels = np.zeros((4, 784), np.uint8), np.arange(4) % 2
    task = TaskData("t", ("a", "b"), (784,), {s: images for s in ("train", "val", "test")},
                    {s: labels for s in ("train", "val", "test")})
    sequence = Sequence("s", "", "mlp", dict(input_shape=(784,), widths=(20,), dense_units=8), (task,), 0, True)
    # Only the hidden layer widens (by sqrt(1.5): 20 -> 25 -> 31 -> 38 units, 1.25x, 1.55x, 1.90x the weights).
    assert max_expansions(sequence, dataclasses.replace(config, expansion_ratio=1.5, expansion_cap=2.0)) == 3
    assert max_expansions(sequence, dataclasses.replace(config, expansion_ratio=1.5, expansion_cap=1.3)) == 1
    assert [reserve_for(t, 4) for t in (1, 2, 3, 4)] == [3 / 4, 2 / 3, 1 / 2, 0.0]


def test_validation_noise_pools_the_tasks_variance_and_the_sentence_relates_each_sequences_margin():
    from paenet.cl.summary import noise_sentence, validation_noise
    runs = [{"sequence": "s", "method": "independent", "per_task": [{"phase_val_accuracy": a}, {"phase_val_accuracy": b}]}
            for a, b in ((0.80, 0.70), (0.82, 0.70), (0.84, 0.76))]
    noise = validation_noise(runs)["s"]
    stds = np.std([[0.80, 0.82, 0.84], [0.70, 0.70, 0.76]], axis=1, ddof=1)
    assert noise["pooled"] == pytest.approx(np.sqrt(np.mean(stds ** 2))) and noise["max"] == pytest.approx(stds.max())
    sentence = noise_sentence({"s": noise}, {"s": 0.06})
    assert f"s {noise['pooled']:.4f}" in sentence and f"margin 0.06, {0.06 / noise['pooled']:.1f}x" in sentence
    assert noise_sentence(validation_noise(runs[:1]), {"s": 0.06}) == "Validation noise: not measured (one seed)."


def test_worker_processes_give_the_numbers_one_process_gives(tmp_path):
    """--jobs runs each (sequence, seed) in a spawned worker: the rows are those of one process, in order."""
    rows = {}
    for jobs in (1, 2):
        result = _run("--quick", "--sequences=split5", "--seeds=0,1", "--methods=independent,packnet", f"--jobs={jobs}",
                      f"--output_dir={tmp_path / str(jobs)}", "--noprogress")
        assert result.returncode == 0, result.stderr[-3000:]
        assert "cuInit" not in result.stderr and "oneDNN" not in result.stderr      # the workers are quiet too
        details = json.loads((tmp_path / str(jobs) / "results.json").read_text())
        assert details["meta"]["jobs"] == jobs and details["meta"]["wall_seconds"] > 0
        rows[jobs] = [{k: v for k, v in r.items() if k != "seconds"} for r in details["rows"]]
    assert [(r["seed"], r["method"]) for r in rows[2]] == [(0, "independent"), (0, "packnet"), (1, "independent"),
                                                          (1, "packnet")]
    assert rows[1] == rows[2]
