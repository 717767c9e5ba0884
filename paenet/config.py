"""The app's configuration, declared once (DESIGN §13).

``Settings`` is what ``python -m paenet.main`` runs with; the goal loop's ``PackingPlan`` and the
``ExpansionPolicy`` it holds are sections of it. Every field is declared here with its default, its help
and its flag name (``option``); ``define_flags`` generates the absl flags from these declarations and
``from_flags`` reads them back, so a new setting is one field. Pure dataclasses: nothing here imports
TensorFlow, and ``--help`` or a bad flag answer at once.
"""
from __future__ import annotations

import dataclasses
import types
import typing

POLICIES = ("uniform", "saturation")
OPTIMIZERS = ("adam", "adamw", "sgd", "rmsprop")
DISTRIBUTIONS = ("none", "mirrored", "multi_worker")
PRECISIONS = ("float32", "mixed_bfloat16", "mixed_float16")
FOLDS = 5            # test folds of the cross-validated data sets (Adience's 5-fold protocol)


class UsageError(ValueError):
    """A problem with what was asked: reported as one line, nothing changed."""


def _rule(test, text: str):
    return test, text


POSITIVE = _rule(lambda v: isinstance(v, int) and not isinstance(v, bool) and v > 0, "must be a positive integer")
POSITIVE_NUMBER = _rule(lambda v: v > 0, "must be positive")
NON_NEGATIVE = _rule(lambda v: v >= 0, "must be >= 0")
FRACTION = _rule(lambda v: 0 <= v <= 1, "must be in [0, 1]")
OPEN_FRACTION = _rule(lambda v: 0 < v <= 1, "must be in (0, 1]")
RATE = _rule(lambda v: 0 <= v < 1, "must be in [0, 1)")


def option(default, help: str, flag: str | None = None, choices: tuple | None = None, rule=None):
    """A settings field: its `default`, the `help` of its flag, the flag's name when it is not the
    field's, the values an enum flag accepts, and the `rule` (test, text) a value must pass (each
    item of a list; None always passes)."""
    metadata = {"help": help, "flag": flag, "choices": choices, "rule": rule}
    return dataclasses.field(default=default, metadata=metadata)


@dataclasses.dataclass(frozen=True)
class ExpansionPolicy:
    """How to widen (``paenet.expansion``): `policy` in POLICIES, parameter `ratio` per round, widths
    rounded to a `multiple`, and a `cap` on total masked parameters relative to the network before its
    first expansion."""

    policy: str = option("uniform", "How to widen: every layer alike, or where earlier tasks own most.",
                         flag="expansion_policy", choices=POLICIES)
    ratio: float = option(1.2, "Parameter ratio of one expansion round.", flag="expansion_ratio",
                          rule=_rule(lambda v: v > 1, "must be > 1"))
    cap: float = option(2.0, "Most masked parameters, relative to the network before its first expansion.",
                        flag="expansion_cap", rule=_rule(lambda v: v >= 1, "must be >= 1"))
    multiple: int = option(8, "Round a widened layer of at least 8 times this many filters to a multiple of it "
                              "(8: the widths fast kernels and tensor cores are made for; 1: as the ratio asks).",
                           flag="expansion_multiple", rule=POSITIVE)

    def __post_init__(self):
        check(self)


DEFAULT_METHOD = "pae"      # the continual-learning method of a run, a record or a packer that names none


@dataclasses.dataclass(frozen=True)
class PackingPlan:
    """The goal loop's recipe: training (and retraining after each expansion), validated every
    `eval_every` steps with plateau decay, then pruning rounds of rising target sparsity, each pruning
    every `frequency` steps over its first `prune_steps` steps and retraining for the rest of
    `steps_per_round`; `l2` weighs the penalty on the task's own kernel entries throughout."""

    train_steps: int = option(300, "Training steps, and retraining steps after each expansion.", rule=POSITIVE)
    targets: tuple = option((0.1, 0.2, 0.3, 0.4, 0.5, 0.6, 0.7, 0.8, 0.9),
                            "Target sparsities of the pruning rounds (strictly increasing).", rule=OPEN_FRACTION)
    steps_per_round: int = option(100, "Training steps per pruning round.", rule=POSITIVE)
    prune_steps: int = option(50, "Steps at the start of each round over which it prunes.")
    frequency: int = option(10, "Prune every this many steps.", flag="prune_frequency", rule=POSITIVE)
    eval_every: int = option(0, "Validate every this many steps of a training phase and end the phase on its "
                                "best validated state (0: validate at its end only).", rule=NON_NEGATIVE)
    plateau_patience: int = option(0, "With --eval_every: validations without a gain before the learning rate "
                                      "is multiplied by 0.1 and the best state restored; the second time, the "
                                      "phase stops (0: never; PAE: 15 epochs).", rule=NON_NEGATIVE)
    l2: float = option(0.0, "L2 penalty (factor x sum of squares / 2) on the kernel entries the task owns "
                            "(PAE: 5e-4).", rule=NON_NEGATIVE)
    on_miss: str = option("reserve", "A task that misses its goal at the widest network its method allows: "
                                     "finished and pruned to release --reserve of the weights it claimed for the "
                                     "tasks to come (reserve, CPG's rule at the cap), or as its method did before "
                                     "(method: PackNet keeps it unpruned, PAE and CPG roll it back).",
                          choices=("reserve", "method"))
    reserve: float = option(0.5, "With --on_miss=reserve: the share of its claimed weights a task that misses "
                                 "its goal releases (it keeps the rest).", rule=RATE)
    expansion: ExpansionPolicy = dataclasses.field(default_factory=ExpansionPolicy)

    def __post_init__(self):
        check(self)
        targets = ",".join(map(str, self.targets))
        _need(all(a < b for a, b in zip(self.targets, self.targets[1:])), "targets", targets,
              "must be strictly increasing")
        _need(isinstance(self.prune_steps, int) and 0 <= self.prune_steps < self.steps_per_round, "prune_steps",
              self.prune_steps, f"must be in [0, --steps_per_round={self.steps_per_round})")
        _need(not self.plateau_patience or self.eval_every > 0, "plateau_patience", self.plateau_patience,
              "needs --eval_every")

    @classmethod
    def from_dict(cls, d: dict) -> "PackingPlan":
        """The plan ``dataclasses.asdict`` wrote (as JSON, in a checkpoint). A plan written before widths
        were rounded goes on widening as it started: to a multiple of 1; one written before the rule at
        the cap misses as its method did."""
        return cls(**{"on_miss": "method", **d, "targets": tuple(d["targets"]),
                      "expansion": ExpansionPolicy(**{"multiple": 1, **d["expansion"]})})


@dataclasses.dataclass(frozen=True)
class Settings:
    """One run of ``paenet.main``. The network, method, optimizer, batch size, seed, fold and precision
    count only when the workspace is created (its ``workspace.json`` fixes them)."""

    workspace: str = option("", "Workspace folder (created when new; see WORKSPACE.md).")
    task: str = option("", "Task to pack; --list_tasks shows the registered ones.")
    data_dir: str | None = option(None, "Data folder: the real-image sets (default $PAENET_DATA_DIR or "
                                        "../shared/data), or TFDS's data folder for the paper's tasks.")
    task_options: dict = dataclasses.field(default_factory=dict)       # set by the task's own flags
    # A new workspace's network.
    base: str = option("small_cnn", "Base network of a new workspace: a registered backbone (--list_backbones), "
                                     "facenet to import --facenet.")
    backbone_options: dict = dataclasses.field(default_factory=dict)    # --backbone_option NAME=VALUE: the base's own
    facenet: str | None = option(None, "base=facenet: FaceNet checkpoint (prefix or folder), .pb or .tflite.")
    bn_momentum: float | None = option(None, "base=facenet: BatchNorm moving-average decay while a task trains "
                                             "(default FaceNet's 0.995; short runs need e.g. 0.9).", rule=RATE)
    image_size: int = option(64, "small_cnn: input size.", rule=POSITIVE)
    widths: tuple = option((16, 32, 64), "small_cnn: filters of its conv blocks.", rule=POSITIVE)
    dense_units: int = option(64, "small_cnn: width of its feature layer.", rule=POSITIVE)
    dropout: float = option(0.2, "small_cnn: dropout rate before the heads.", rule=RATE)
    sharing: str = option("cumulative", "Which earlier tasks' weights a task reuses: all (PAE) or only task 1's.",
                          choices=("cumulative", "first"))
    precision: str = option("float32", "Dtype policy a new workspace's tasks train and serve under "
                                       "(mixed_float16 scales the loss).", choices=PRECISIONS)
    seed: int = option(0, "Random seed of a new workspace (initialisation, splits, data order).",
                      rule=_rule(lambda v: 0 <= v < 2 ** 32, "must be in [0, 2**32)"))
    fold: int = option(0, "Test fold of a new workspace for cross-validated data (Adience: 0-4).",
                      rule=_rule(lambda v: 0 <= v < FOLDS, f"must be a test fold in 0..{FOLDS - 1}"))
    # Training.
    optimizer: str = option("adam", "Optimizer.", choices=OPTIMIZERS)
    learning_rate: float = option(3e-3, "Learning rate.", rule=POSITIVE_NUMBER)
    adam_epsilon: float = option(1e-7, "Adam's epsilon (adam, adamw; FaceNet and PAE train with 0.1).",
                                 rule=POSITIVE_NUMBER)
    weight_decay: float = option(0.0, "Decoupled weight decay (adamw, sgd); acts on the task's own weights only.",
                                 rule=NON_NEGATIVE)
    momentum: float = option(0.9, "Momentum (sgd, rmsprop).", rule=RATE)
    batch_size: int = option(32, "Global training batch size (split over the replicas of --distribution).",
                             rule=POSITIVE)
    task_parts: str = option("inherit", "A new workspace's new tasks start their BatchNorm and biases from the "
                                        "task whose weights they reuse (inherit) or from defaults (fresh).",
                             choices=("inherit", "fresh"))
    # The continual-learning method (paenet.methods) and its goal loop.
    method: str = option(DEFAULT_METHOD, "Continual-learning method: pae, packnet, cpg or piggyback (paenet.methods; "
                                "--task_module may register more).")
    goal: float | None = option(None, "Absolute validation accuracy the task must keep.", rule=FRACTION)
    goal_margin: float | None = option(None, "Goal = baseline - this margin (baseline measured unless "
                                             "--baseline).", rule=FRACTION)
    baseline: float | None = option(None, "A known baseline accuracy for --goal_margin.", rule=FRACTION)
    plan: PackingPlan = dataclasses.field(default_factory=PackingPlan)
    # Running.
    distribution: str = option("none", "tf.distribute strategy: none, mirrored (this machine's GPUs) or "
                                       "multi_worker (TF_CONFIG names the workers).", choices=DISTRIBUTIONS)
    checkpoint_every: int = option(100, "Checkpoint every this many training steps (and after every phase).",
                                   rule=POSITIVE)
    progress: bool = option(True, "Show progress bars.")
    deterministic: bool = option(True, "TensorFlow op determinism (runs and resumed runs repeat bit for bit).")

    def __post_init__(self):
        check(self)
        _need(self.base != "facenet" or bool(self.facenet), "facenet", self.facenet,
              "--base=facenet needs a FaceNet checkpoint, .pb or .tflite")
        _need(self.baseline is None or self.goal_margin is not None, "baseline", self.baseline,
              "needs --goal_margin")


def _need(ok: bool, flag: str, value, rule: str) -> None:
    if not ok:
        raise UsageError(f"--{flag}={value}: {rule}")


def check(obj) -> None:
    """Checks every declared field of dataclass `obj` (not its sections, which check themselves)
    against its choices and rule; UsageError naming the first bad flag and its value."""
    for field in dataclasses.fields(obj):
        value, meta = getattr(obj, field.name), field.metadata
        if "help" not in meta or value is None:
            continue
        name = _flag_name(field)
        if meta["choices"]:
            _need(value in meta["choices"], name, value, f"must be one of {', '.join(meta['choices'])}")
        if meta["rule"]:
            test, text = meta["rule"]
            if isinstance(value, (tuple, list)):
                shown = ",".join(map(str, value))
                _need(len(value) > 0, name, shown, "give at least one value")
                for item in value:
                    _need(_passes(test, item), name, shown, f"{item} {text}")
            else:
                _need(_passes(test, value), name, value, text)


def _passes(test, value) -> bool:
    try:
        return bool(test(value))
    except TypeError:           # a value of the wrong type (a string where a number belongs)
        return False


def _flag_fields(cls, path=()):
    """(path of field names, field, its type) for every flag of dataclass `cls`, sections expanded."""
    hints = typing.get_type_hints(cls)
    for field in dataclasses.fields(cls):
        kind = hints[field.name]
        if dataclasses.is_dataclass(kind):
            yield from _flag_fields(kind, path + (field.name,))
        elif "help" in field.metadata:
            yield path + (field.name,), field, kind


def _flag_name(field) -> str:
    return field.metadata["flag"] or field.name


def _default(path, root):
    value = root
    for name in path:
        value = getattr(value, name)
    return value


def define_flags(flag_values=None, cls=Settings) -> None:
    """Defines an absl flag for every field of `cls` (``Settings``): its type gives the flag's kind,
    a field without a default value (None) gives a flag without one."""
    from absl import flags
    flag_values = flags.FLAGS if flag_values is None else flag_values
    defaults = cls()
    for path, field, kind in _flag_fields(cls):
        name, help, default = _flag_name(field), field.metadata["help"], _default(path, defaults)
        base = typing.get_args(kind)[0] if typing.get_origin(kind) in (typing.Union, types.UnionType) else kind
        if field.metadata["choices"]:
            flags.DEFINE_enum(name, default, list(field.metadata["choices"]), help, flag_values=flag_values)
        elif base is bool:
            flags.DEFINE_bool(name, default, help, flag_values=flag_values)
        elif base is int:
            flags.DEFINE_integer(name, default, help, flag_values=flag_values)
        elif base is float:
            flags.DEFINE_float(name, default, help, flag_values=flag_values)
        elif base is tuple:
            flags.DEFINE_list(name, [str(v) for v in default], help, flag_values=flag_values)
        else:
            flags.DEFINE_string(name, default, help, flag_values=flag_values)


# ``--help`` groups the settings as the README presents them: a group starts at the field named here and
# holds the fields declared after it (sections such as the plan included) up to the next group's start.
HELP_GROUPS = {"workspace": "workspace and task", "data_dir": "data", "base": "a new workspace's network",
               "optimizer": "training", "method": "method", "goal": "goal and plan",
               "distribution": "distribution and running"}


def flag_groups(cls=Settings) -> list[tuple[str, list[str]]]:
    """(group title, its flag names) for every flag of `cls`, in declaration order (``HELP_GROUPS``)."""
    groups: list[tuple[str, list[str]]] = []
    for path, field, _ in _flag_fields(cls):
        if path[0] in HELP_GROUPS and (not groups or groups[-1][0] != HELP_GROUPS[path[0]]):
            groups.append((HELP_GROUPS[path[0]], []))
        groups[-1][1].append(_flag_name(field))
    return groups


def from_flags(flag_values, task_options: dict | None = None, cls=Settings):
    """The `cls` (``Settings``) the parsed `flag_values` give; a list flag that is not a list of numbers
    raises UsageError naming it."""
    values: dict = {}
    defaults = cls()
    for path, field, kind in _flag_fields(cls):
        name = _flag_name(field)
        value = getattr(flag_values, name)
        if kind is tuple:
            item = type(_default(path, defaults)[0])
            try:
                value = tuple(item(v) for v in value)
            except ValueError:
                raise UsageError(f"--{name}={','.join(value)}: must be a list of "
                                 f"{'integers' if item is int else 'numbers'}") from None
        values[path] = value
    return _build(cls, values, (), task_options or {})


def _build(cls, values: dict, path: tuple, task_options: dict):
    hints = typing.get_type_hints(cls)
    kwargs = {}
    for field in dataclasses.fields(cls):
        here = path + (field.name,)
        if dataclasses.is_dataclass(hints[field.name]):
            kwargs[field.name] = _build(hints[field.name], values, here, task_options)
        elif here in values:
            kwargs[field.name] = values[here]
    if cls is Settings:
        kwargs["task_options"] = dict(task_options)
    return cls(**kwargs)
