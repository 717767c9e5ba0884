"""The app's settings are declared once (paenet.config): every field is a flag, flags read back into the
same settings, each declared rule refuses a bad value by naming its flag, and the settings that
only a new workspace uses (precision, Adam's epsilon) reach it."""
import dataclasses
import json

import keras
import pytest
from absl import flags

import tiny_tasks  # noqa: F401  (registers tiny_a)
from paenet import app, config
from paenet.config import ExpansionPolicy, PackingPlan, Settings, UsageError
from tiny_models import TINY


def _flag_values():
    values = flags.FlagValues()
    config.define_flags(values)
    return values


def test_every_setting_is_a_flag_and_reads_back():
    values = _flag_values()
    names = {path[-1] if not field.metadata["flag"] else field.metadata["flag"]
             for path, field, _ in config._flag_fields(Settings)}
    assert names == set(values) and "prune_frequency" in names and "expansion_cap" in names
    values(["prog", "--workspace=w", "--task=t", "--targets=0.25,0.5", "--widths=3,5", "--prune_frequency=7",
            "--expansion_ratio=1.5", "--precision=mixed_bfloat16", "--adam_epsilon=0.1", "--noprogress"])
    settings = config.from_flags(values, {"face_val": "x"})
    assert settings == Settings(workspace="w", task="t", widths=(3, 5), precision="mixed_bfloat16",
                                adam_epsilon=0.1, progress=False, task_options={"face_val": "x"},
                                plan=PackingPlan(targets=(0.25, 0.5), frequency=7,
                                                 expansion=ExpansionPolicy(ratio=1.5)))
    defaults = _flag_values()
    defaults(["prog"])
    assert config.from_flags(defaults) == Settings()


@pytest.mark.parametrize("make, named", [
    (lambda: Settings(batch_size=0), "--batch_size=0: must be a positive integer"),
    (lambda: Settings(widths=(4, -1)), "--widths=4,-1: -1 must be a positive integer"),
    (lambda: Settings(dropout=1.0), "--dropout=1.0: must be in [0, 1)"),
    (lambda: Settings(optimizer="lamb"), "--optimizer=lamb: must be one of adam, adamw, sgd, rmsprop"),
    (lambda: Settings(precision="float16"), "--precision=float16: must be one of"),
    (lambda: Settings(adam_epsilon=0.0), "--adam_epsilon=0.0: must be positive"),
    (lambda: Settings(base="facenet"), "--facenet=None: --base=facenet needs"),
    (lambda: PackingPlan(targets=(0.5, 0.3)), "--targets=0.5,0.3: must be strictly increasing"),
    (lambda: PackingPlan(targets=()), "--targets=: give at least one value"),
    (lambda: PackingPlan(steps_per_round=10, prune_steps=10), "--prune_steps=10: must be in [0, "),
    (lambda: ExpansionPolicy(ratio=1.0), "--expansion_ratio=1.0: must be > 1"),
    (lambda: ExpansionPolicy(policy="random"), "--expansion_policy=random: must be one of"),
])
def test_a_declared_rule_names_the_flag(make, named):
    with pytest.raises(UsageError) as error:
        make()
    assert str(error.value).startswith(named)


def test_a_checkpointed_plan_reads_back():
    plan = PackingPlan(targets=(0.2, 0.7), expansion=ExpansionPolicy("saturation", 1.3, 1.6, 4))
    written = json.loads(json.dumps(dataclasses.asdict(plan)))
    assert PackingPlan.from_dict(written) == plan
    del written["expansion"]["multiple"]       # written before widths were rounded: it goes on as it began
    assert PackingPlan.from_dict(written).expansion.multiple == 1


def test_precision_and_epsilon_reach_a_new_workspace(tmp_path):
    """--precision fixes the policy a workspace's tasks compute under (recorded per task) without
    changing the process's own; --adam_epsilon is the optimizer's; mixed_float16 scales the loss."""
    before = keras.config.dtype_policy().name
    settings = Settings(workspace=str(tmp_path / "w"), task="tiny_a", **TINY["small_cnn"], batch_size=16, goal=0.0,
                        precision="mixed_bfloat16", adam_epsilon=0.1,
                        progress=False, plan=PackingPlan(train_steps=2, targets=(0.5,), steps_per_round=2,
                                                         prune_steps=1, frequency=1))
    status, summary = app.pack(settings)
    assert status == app.GOAL_MET and keras.config.dtype_policy().name == before
    workspace = json.loads((tmp_path / "w" / "workspace.json").read_text())
    assert workspace["precision"] == "mixed_bfloat16" and workspace["optimizer"]["config"]["epsilon"] == 0.1
    state = json.loads((tmp_path / "w" / "packing" / "state.json").read_text())
    assert [r["compute_dtype"] for r in state["records"]] == ["mixed_bfloat16"]
    scaled = app.optimizer_config(dataclasses.replace(settings, precision="mixed_float16"))
    assert scaled["class_name"] == "LossScaleOptimizer" and scaled["config"]["inner_optimizer"]["config"][
        "epsilon"] == 0.1


def test_a_mixed_policy_without_a_gpu_is_said_before_training(capsys):
    import tensorflow as tf
    app.check_precision("mixed_float16")
    app.check_precision("float32")
    lines = capsys.readouterr().err.splitlines()
    expected = [] if tf.config.list_physical_devices("GPU") else [
        "paenet: warning: --precision=mixed_float16 on this CPU (no GPU, no native float16) is emulated and "
        "much slower than float32"]
    assert lines == expected
