"""What a command's user sees: a quiet start (TensorFlow's C++ start-up lines and the CUDA probe hidden
unless ``-v`` asks for them), evaluations that do not retrace, and ``--help`` that leads with the app."""
import logging
import os
import subprocess
import sys
from pathlib import Path

import numpy as np
import tensorflow as tf

from paenet import config
from paenet.models import TaskSpec
from paenet.packing import Packer
from paenet.quiet import startup_noise_removed, verbosity_requested
from paenet.training import inference_function, top1_accuracy
from tiny_models import one_block_cnn

REPO = Path(__file__).resolve().parents[1]
STARTUP = ("WARNING: All log messages before absl::InitializeLog()", "port.cc", "cudart_stub.cc",
           "cuda_platform.cc", "cpu_feature_guard.cc")


def _command(*args, **env):
    environment = {k: v for k, v in os.environ.items() if k != "TF_CPP_MIN_LOG_LEVEL"}
    return subprocess.run([sys.executable, "-m", *args], cwd=REPO, capture_output=True, text=True,
                          env={**environment, **env})


def test_a_command_starts_tensorflow_quietly_and_v_brings_its_logs_back(tmp_path):
    missing = tmp_path / "none"
    quiet = _command("paenet.report", f"--workspace={missing}")
    assert quiet.returncode == 1
    assert quiet.stderr.strip().splitlines() == [quiet.stderr.strip()], quiet.stderr      # one line
    assert quiet.stderr.startswith("paenet.report: ") and str(missing) in quiet.stderr
    loud = _command("paenet.report", f"--workspace={missing}", "-v", "0")
    assert loud.returncode == 1
    assert any(marker in loud.stderr for marker in STARTUP), loud.stderr     # what the quiet run hid exists


def test_startup_noise_is_told_from_what_a_user_needs():
    captured = (
        "WARNING: All log messages before absl::InitializeLog() is called are written to STDERR\n"
        "I0000 00:00:1796630135.671352    6057 port.cc:153] oneDNN custom operations are on.\n"
        "I0000 00:00:1796630135.671645    6057 cudart_stub.cc:31] Could not find cuda drivers on your machine, "
        "GPU will not be used.\n"
        "W0000 00:00:1796630135.7 6057 some.cc:1] a warning\n"
        "E0000 00:00:1796630137.863194    6057 cuda_platform.cc:52] failed call to cuInit: INTERNAL: CUDA error\n"
        "E0000 00:00:1796630137.9    6057 other.cc:9] a real error\n"
        "/x.py:8: UserWarning: a python warning\n")
    assert startup_noise_removed(captured, 2) == (
        "E0000 00:00:1796630137.9    6057 other.cc:9] a real error\n/x.py:8: UserWarning: a python warning\n")
    assert startup_noise_removed(captured, 0).count("\n") == 6      # only the probe of a driverless machine
    with_driver = captured.replace("Could not find cuda drivers on your machine", "found a driver")
    assert "failed call to cuInit" in startup_noise_removed(with_driver, 2)


def test_verbosity_is_read_as_absl_reads_it():
    assert verbosity_requested(["-v", "1"]) and verbosity_requested(["--verbosity=0"])
    assert verbosity_requested(["--task=x", "-v=2"])
    assert not verbosity_requested(["--verbosity=-1"]) and not verbosity_requested(["--task=v"])
    assert not verbosity_requested([])


class _Records(logging.Handler):
    def __init__(self):
        super().__init__(logging.WARNING)
        self.messages = []

    def emit(self, record):
        self.messages.append(record.getMessage())


def test_evaluating_after_every_round_reuses_one_traced_function():
    packer = Packer(one_block_cnn(8, name="quiet"))
    packer.start_task(TaskSpec("a", 2))
    images = np.random.default_rng(0).uniform(size=(10, 8, 8, 3)).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((images, np.arange(10) % 2)).batch(4)
    records = _Records()
    tf.get_logger().addHandler(records)
    try:
        first = inference_function(packer.model, 1)
        accuracies = {top1_accuracy(packer.model, 1, data) for _ in range(8)}
    finally:
        tf.get_logger().removeHandler(records)
    assert len(accuracies) == 1
    assert inference_function(packer.model, 1) is first
    assert first.experimental_get_tracing_count() == 1
    assert not [m for m in records.messages if "retracing" in m], records.messages
    packer.finish({})
    packer.start_task(TaskSpec("b", 3))      # new variables: a new function
    assert inference_function(packer.model, 1) is not first


def test_evaluating_several_models_once_each_is_not_taken_for_retracing():
    """cl_bench's independent models: one trace each, which TensorFlow counted together (by the code of
    the traced function) and warned about."""
    images = np.random.default_rng(1).uniform(size=(4, 8, 8, 3)).astype(np.float32)
    data = tf.data.Dataset.from_tensor_slices((images, np.arange(4) % 2)).batch(4)
    records = _Records()
    tf.get_logger().addHandler(records)
    try:
        for n in range(7):
            packer = Packer(one_block_cnn(8, name=f"m{n}"))
            packer.start_task(TaskSpec("a", 2))
            top1_accuracy(packer.model, 1, data)
    finally:
        tf.get_logger().removeHandler(records)
    assert not [m for m in records.messages if "retracing" in m], records.messages


def test_help_leads_with_the_apps_settings_grouped_and_exits_0():
    short = _command("paenet.main", "--help")
    assert short.returncode == 0, short.stderr
    titles = [title for title, _ in config.flag_groups()]
    assert titles[:2] == ["workspace and task", "data"] and "goal and plan" in titles
    positions = [short.stdout.index(f"\n{title}:\n") for title in titles]
    assert positions == sorted(positions)
    for title, names in config.flag_groups():
        start = short.stdout.index(f"\n{title}:\n")
        end = short.stdout.find("\n\n", start + 2)
        for name in names:
            assert f"--{name}:" in short.stdout[start:end] or f"--[no]{name}:" in short.stdout[start:end], name
    assert "--verbosity:" not in short.stdout and "--logtostderr" not in short.stdout   # absl's: --helpfull
    full = _command("paenet.main", "--helpfull")
    assert full.returncode == 0 and "--verbosity" in full.stdout and "--workspace" in full.stdout


def test_the_library_finds_the_images_the_demo_cached_or_names_the_command(tmp_path):
    """A clone without ../shared/data: the README's snippet reads the demo's cache, or says in one line
    which command lays the images out."""
    import shutil
    shutil.copytree(REPO / "paenet", tmp_path / "repo" / "paenet",
                    ignore=shutil.ignore_patterns("__pycache__"))
    cached = tmp_path / "cache" / "demo-data"
    (cached / "lfw_subset").mkdir(parents=True)
    script = (
        "import os\n"
        "from paenet.data import real_images\n"
        f"os.environ['PAENET_CACHE'] = {str(tmp_path / 'cache')!r}\n"
        "print(real_images.default_data_dir())\n"
        f"os.environ['PAENET_CACHE'] = {str(tmp_path / 'empty')!r}\n"
        "try:\n"
        "    real_images.face_nonface(size=8)\n"
        "except FileNotFoundError as e:\n"
        "    print(e)\n")
    environment = {k: v for k, v in os.environ.items() if k not in ("PAENET_DATA_DIR", "PYTHONPATH")}
    done = subprocess.run([sys.executable, "-c", script], cwd=tmp_path / "repo", capture_output=True, text=True,
                          env=environment)
    assert done.returncode == 0, done.stderr
    found, missing = done.stdout.strip().splitlines()
    assert found == str(cached)
    assert missing.startswith(f"{tmp_path / 'shared' / 'data' / 'lfw_subset'} is missing: ")
    assert "python -m paenet.main --demo" in missing


def test_every_command_answers_help_with_its_own_flags_and_exit_0():
    shown = _command("paenet.export", "--help")
    assert shown.returncode == 0, shown.stderr
    assert "--workspace:" in shown.stdout and "--[no]compressed:" in shown.stdout
    assert "--verbosity:" not in shown.stdout
