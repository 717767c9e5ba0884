"""Inception-ResNet-v1 as FaceNet builds it (``src/models/inception_resnet_v1.py``), from masked layers.

The network is described once, by ``build_graph``, which asks a ``GraphOps`` for every step. Two layer
factories run it: ``InceptionResnetV1`` (masked kernels, per-task BatchNorm, biases and heads: the
``PackableModel`` that tasks are packed into) and ``plain_inception_resnet_v1`` (stock Keras layers, the
benchmark baseline). So the two cannot drift apart.

Names. Every layer is named after its FaceNet scope with ``/`` written ``.`` (Keras forbids ``/`` in layer
names): the checkpoint's ``InceptionResnetV1/Repeat/block35_1/Branch_0/Conv2d_1x1/weights`` is the kernel of
layer ``Repeat.block35_1.Branch_0.Conv2d_1x1``, its BatchNorm is layer ``…Conv2d_1x1.BatchNorm``, the face
head is ``Logits``. ``facenet_name`` is the one place that translates between the two.

Widths. ``widths`` maps every conv that chooses its own width (FaceNet scope → filters; FaceNet's own are
``facenet_widths()``). The block up-projections (``…/Conv2d_1x1`` after the concat) are not in it: their
width is that of the residual stream they add to, which the convs before them set. The Bottleneck
(``embedding_size``) and the heads keep their width. ``block_counts`` sets the depth (FaceNet: 5, 10 and 5
repeats); only quick CPU runs change it.

Expansion (``paenet.expansion``) widens a model by rebuilding it with larger ``widths``; the widths it had
before each expansion are kept in ``width_history``. Every kernel keeps the channels it reads and writes
round by round: every branch's channels of the original widths, then every branch's channels added by the
first expansion, and so on. So an old channel keeps its index, and the old weights sit in the leading
slice of the wider kernels. Mixed_6a and Mixed_7a, whose concatenations become the residual stream, lay
their channels out that way (``ordered_concat``). A block's concatenation feeds only its up-projection:
it is one plain concat, branch after branch, and the up-projection reads its kernel rows in that order
(``branch_major_order``: a gather of the kernel, far smaller than the activations, instead of a split and
a concat of them). Either way a task finished before an expansion, which computes at its own smaller
widths, computes exactly what it computed before.
"""
from __future__ import annotations

import dataclasses
import functools
import re

import keras

from paenet.layers import MaskedConv2D, MaskedDense, TaskBatchNorm, TaskHeads
from paenet.models.base import PackableModel, given, variable_key

ROOT = "InceptionResnetV1"           # FaceNet's outer variable scope
BN_EPSILON = 1e-3                    # FaceNet's batch_norm_params
BN_MOMENTUM = 0.995
EMBEDDING_EPSILON = 1e-10            # tf.nn.l2_normalize(prelogits, 1, 1e-10)
MIN_INPUT_SIZE = 80
OUTPUTS = ("logits", "embeddings", "prelogits")
FACE_TASK = "face"                   # task 1 of an imported FaceNet


@dataclasses.dataclass(frozen=True)
class Conv:
    """A conv (no bias) + BatchNorm + ReLU of FaceNet's graph: its scope below ``InceptionResnetV1``,
    FaceNet's width and geometry."""

    scope: str
    filters: int
    kernel: int | tuple[int, int]
    strides: int = 1
    padding: str = "same"


MAX_POOL = "MaxPool"                 # a step of a chain: 3x3 max-pool, stride 2, VALID


def _block35(scope: str) -> tuple:
    return ((Conv(f"{scope}/Branch_0/Conv2d_1x1", 32, 1),),
            (Conv(f"{scope}/Branch_1/Conv2d_0a_1x1", 32, 1), Conv(f"{scope}/Branch_1/Conv2d_0b_3x3", 32, 3)),
            (Conv(f"{scope}/Branch_2/Conv2d_0a_1x1", 32, 1), Conv(f"{scope}/Branch_2/Conv2d_0b_3x3", 32, 3),
             Conv(f"{scope}/Branch_2/Conv2d_0c_3x3", 32, 3)))


def _block17(scope: str) -> tuple:
    return ((Conv(f"{scope}/Branch_0/Conv2d_1x1", 128, 1),),
            (Conv(f"{scope}/Branch_1/Conv2d_0a_1x1", 128, 1), Conv(f"{scope}/Branch_1/Conv2d_0b_1x7", 128, (1, 7)),
             Conv(f"{scope}/Branch_1/Conv2d_0c_7x1", 128, (7, 1))))


def _block8(scope: str) -> tuple:
    return ((Conv(f"{scope}/Branch_0/Conv2d_1x1", 192, 1),),
            (Conv(f"{scope}/Branch_1/Conv2d_0a_1x1", 192, 1), Conv(f"{scope}/Branch_1/Conv2d_0b_1x3", 192, (1, 3)),
             Conv(f"{scope}/Branch_1/Conv2d_0c_3x1", 192, (3, 1))))


STEM = (Conv("Conv2d_1a_3x3", 32, 3, 2, "valid"), Conv("Conv2d_2a_3x3", 32, 3, padding="valid"),
        Conv("Conv2d_2b_3x3", 64, 3), MAX_POOL, Conv("Conv2d_3b_1x1", 80, 1, padding="valid"),
        Conv("Conv2d_4a_3x3", 192, 3, padding="valid"), Conv("Conv2d_4b_3x3", 256, 3, 2, "valid"))

MIXED_6A = ((Conv("Mixed_6a/Branch_0/Conv2d_1a_3x3", 384, 3, 2, "valid"),),
            (Conv("Mixed_6a/Branch_1/Conv2d_0a_1x1", 192, 1), Conv("Mixed_6a/Branch_1/Conv2d_0b_3x3", 192, 3),
             Conv("Mixed_6a/Branch_1/Conv2d_1a_3x3", 256, 3, 2, "valid")),
            (MAX_POOL,))

MIXED_7A = ((Conv("Mixed_7a/Branch_0/Conv2d_0a_1x1", 256, 1),
             Conv("Mixed_7a/Branch_0/Conv2d_1a_3x3", 384, 3, 2, "valid")),
            (Conv("Mixed_7a/Branch_1/Conv2d_0a_1x1", 256, 1),
             Conv("Mixed_7a/Branch_1/Conv2d_1a_3x3", 256, 3, 2, "valid")),
            (Conv("Mixed_7a/Branch_2/Conv2d_0a_1x1", 256, 1), Conv("Mixed_7a/Branch_2/Conv2d_0b_3x3", 256, 3),
             Conv("Mixed_7a/Branch_2/Conv2d_1a_3x3", 256, 3, 2, "valid")),
            (MAX_POOL,))


# The repeated blocks: (scope prefix, branches, residual scale); FaceNet repeats them 5, 10 and 5 times.
REPEATS = (("Repeat/block35", _block35, 0.17), ("Repeat_1/block17", _block17, 0.10),
           ("Repeat_2/block8", _block8, 0.20))
FACENET_BLOCKS = (5, 10, 5)


def build_graph(ops: "GraphOps", images, block_counts=FACENET_BLOCKS):
    """FaceNet's ``inception_resnet_v1`` from standardised images to the prelogits, made by `ops`, with
    `block_counts` repeats of block35, block17 and block8."""
    x = _chain(ops, images, STEM)
    x = _repeat(ops, x, *REPEATS[0], block_counts[0])
    x = _branches(ops, x, MIXED_6A)
    x = _repeat(ops, x, *REPEATS[1], block_counts[1])
    x = _branches(ops, x, MIXED_7A)
    x = _repeat(ops, x, *REPEATS[2], block_counts[2])
    x = ops.residual(x, _branch_outputs(ops, x, _block8("Block8")), "Block8/Conv2d_1x1", 1.0, activate=False)
    return ops.bottleneck(ops.dropout(ops.global_pool(x)))


def _chain(ops, x, steps):
    for step in steps:
        x = ops.max_pool(x) if step == MAX_POOL else ops.conv(x, step)
    return x


def _branch_outputs(ops, x, branches) -> list:
    return [_chain(ops, x, branch) for branch in branches]


def _branches(ops, x, branches):
    return ops.concat(_branch_outputs(ops, x, branches))


def _repeat(ops, x, prefix: str, block, scale: float, count: int):
    for i in range(1, count + 1):
        scope = f"{prefix}_{i}"
        x = ops.residual(x, _branch_outputs(ops, x, block(scope)), f"{scope}/Conv2d_1x1", scale, activate=True)
    return x


def layer_name(scope: str) -> str:
    """The Keras layer name of a FaceNet scope (``/`` → ``.``)."""
    return scope.replace("/", ".")


class GraphOps:
    """What ``build_graph`` asks for. The parameter-free steps are Keras ops, which work on tensors and on
    symbolic Keras tensors alike; a layer factory supplies ``conv``, ``up_projection``, ``dropout`` and
    ``bottleneck``."""

    def conv(self, x, conv: Conv):
        """conv (no bias) → BatchNorm → ReLU."""
        raise NotImplementedError

    def up_projection(self, branches, scope: str, filters: int):
        """A block's 1x1 conv over the concatenated branch outputs `branches`: bias, no BatchNorm, no
        activation."""
        raise NotImplementedError

    def dropout(self, x):
        raise NotImplementedError

    def bottleneck(self, x):
        """Dense without bias → BatchNorm: the prelogits."""
        raise NotImplementedError

    def channels(self, x) -> int:
        return int(x.shape[-1])

    def max_pool(self, x):
        return keras.ops.max_pool(x, 3, 2, "valid")

    def concat(self, xs):
        return keras.ops.concatenate(xs, axis=-1)

    def residual(self, stream, branches, scope: str, scale: float, activate: bool):
        """FaceNet's ``net += scale * up`` (then ReLU unless `activate` is False), ``up`` the block's
        up-projection of its branch outputs `branches`."""
        up = self.up_projection(branches, scope, self.channels(stream))
        x = keras.ops.add(stream, keras.ops.multiply(up, scale))
        return keras.ops.relu(x) if activate else x

    def global_pool(self, x):
        """FaceNet's average pool over the whole final map (3x3 VALID at 160 px), flattened."""
        pooled = keras.ops.average_pool(x, tuple(int(d) for d in x.shape[1:3]), 1, "valid")
        return keras.ops.reshape(pooled, (-1, x.shape[-1]))


class _Plan(GraphOps):
    """Runs the graph on channel counts and records, in order, every layer it needs.

    ``steps``: ("conv", Conv, filters) and ("up", scope, filters, residual scale) entries.
    """

    def __init__(self, widths: dict | None):
        self.widths = widths
        self.steps = []
        self.concats = []            # the branch widths of every concatenation, in graph order

    def conv(self, x, conv):
        filters = conv.filters if self.widths is None else self.widths[conv.scope]
        self.steps.append(("conv", conv, filters))
        return filters

    def residual(self, stream, branches, scope, scale, activate):
        self.concat(branches)
        self.steps.append(("up", scope, stream, scale))
        return stream

    def channels(self, x):
        return x

    def max_pool(self, x):
        return x

    def concat(self, xs):
        self.concats.append(tuple(xs))
        return sum(xs)

    def global_pool(self, x):
        return x

    def dropout(self, x):
        return x

    def bottleneck(self, x):
        return x


def check_block_counts(block_counts) -> tuple[int, int, int]:
    counts = tuple(int(c) for c in block_counts)
    if len(counts) != 3 or min(counts) < 0:
        raise ValueError(f"block_counts must be three counts >= 0 (block35, block17, block8), "
                         f"got {block_counts}")
    return counts


def count_blocks(names) -> tuple[int, int, int]:
    """The block counts that FaceNet variable names (``InceptionResnetV1/Repeat/block35_5/...``) imply: for
    each repeated block, the highest index that any name uses."""
    names, counts = list(names), []
    for prefix, _, _ in REPEATS:
        pattern = re.compile(rf"{ROOT}/{re.escape(prefix)}_(\d+)/")
        counts.append(max((int(m.group(1)) for n in names if (m := pattern.match(n))), default=0))
    return tuple(counts)


def _plan(widths: dict | None, block_counts=FACENET_BLOCKS) -> list:
    return _planned(widths, block_counts).steps


def _planned(widths: dict | None, block_counts=FACENET_BLOCKS) -> _Plan:
    plan = _Plan(widths)
    build_graph(plan, 3, block_counts)
    return plan


def ordered_concat(xs, rounds):
    """Concatenates branch outputs `xs` round by round: for each width round (``rounds[r][b]``: branch b's
    width after round r), the channels each branch gained in that round, branch after branch. Branches
    narrower than the last round (a task frozen at earlier widths) contribute what they have. Each branch
    is cut with one split, whose gradient is a concatenation (slices' gradients would pad every piece)."""
    pieces = []
    for b, x in enumerate(xs):
        width = int(x.shape[-1])
        ends = sorted({min(r[b], width) for r in rounds} - {0})
        parts = keras.ops.split(x, ends[:-1], axis=-1) if len(ends) > 1 else [x]
        pieces.append(dict(zip(ends, parts)))
    ordered = [pieces[b].pop(end) for r in rounds for b, x in enumerate(xs)
               if (end := min(r[b], int(x.shape[-1]))) in pieces[b]]
    return keras.ops.concatenate(ordered, axis=-1) if len(ordered) > 1 else ordered[0]


@functools.lru_cache(maxsize=1024)
def branch_major_order(widths: tuple, rounds: tuple) -> tuple | None:
    """For branches of `widths` laid out round by round (``ordered_concat``'s layout, `rounds` as there),
    the position in that layout of every channel of their plain, branch-after-branch concatenation; None
    where the two agree (before any expansion, and for a task finished before it)."""
    positions = [[] for _ in widths]
    done, start = [0] * len(widths), 0
    for r in rounds:
        for b, width in enumerate(widths):
            end = min(r[b], width)
            positions[b].extend(range(start, start + max(end - done[b], 0)))
            start += max(end - done[b], 0)
            done[b] = max(done[b], end)
    order = tuple(p for branch in positions for p in branch)
    return None if order == tuple(range(len(order))) else order


@functools.lru_cache(maxsize=8)
def _base_steps(block_counts: tuple) -> tuple:
    return tuple(_plan(None, block_counts))


def facenet_widths(block_counts=FACENET_BLOCKS) -> dict[str, int]:
    """FaceNet's width of every conv that chooses its own (scope → filters), in graph order."""
    steps = _base_steps(check_block_counts(block_counts))
    return {step[1].scope: step[2] for step in steps if step[0] == "conv"}


def residual_scales(block_counts=FACENET_BLOCKS) -> dict[str, float]:
    """The residual scale of every block up-projection (scope → scale): 0.17, 0.10, 0.20, and 1.0 for
    the final ``Block8``."""
    steps = _base_steps(check_block_counts(block_counts))
    return {step[1]: step[3] for step in steps if step[0] == "up"}


def resolve_widths(width_multiplier: float = 1.0, widths: dict | None = None,
                   block_counts=FACENET_BLOCKS) -> dict[str, int]:
    """The full width mapping: FaceNet's widths times `width_multiplier` (rounded, at least 1), then every
    entry of `widths` as given."""
    if not width_multiplier > 0:
        raise ValueError(f"width_multiplier must be > 0, got {width_multiplier}")
    base = facenet_widths(block_counts)
    given = dict(widths or {})
    unknown = sorted(set(given) - set(base))
    if unknown:
        raise ValueError(f"widths names convs that Inception-ResNet-v1 does not have: {unknown[:5]} "
                         f"({len(unknown)} in all); the {len(base)} widths are those of facenet_widths()")
    bad = {k: v for k, v in given.items() if int(v) != v or v < 1}
    if bad:
        raise ValueError(f"widths must be positive integers, got {bad}")
    resolved = {scope: max(1, round(filters * width_multiplier)) for scope, filters in base.items()}
    resolved.update({k: int(v) for k, v in given.items()})
    return resolved


def l2_normalize(prelogits):
    """FaceNet's embeddings: ``tf.nn.l2_normalize(prelogits, 1, 1e-10)``, in float32."""
    x = keras.ops.cast(prelogits, "float32")
    squared = keras.ops.sum(keras.ops.square(x), axis=-1, keepdims=True)
    return x * keras.ops.rsqrt(keras.ops.maximum(squared, EMBEDDING_EPSILON))


def facenet_name(key: str, task: int = 1) -> str | None:
    """The FaceNet checkpoint name of the model variable `key` (``variable_key``) as task `task` uses it,
    or None where FaceNet has no counterpart (masks, other tasks' parts).

    ``Repeat.block35_1.Branch_0.Conv2d_1x1/kernel`` ↔
    ``InceptionResnetV1/Repeat/block35_1/Branch_0/Conv2d_1x1/weights`` (the shared kernel, whatever the task),
    ``….BatchNorm/moving_mean_t{task}`` ↔ ``…/BatchNorm/moving_mean``, ``…/bias_t{task}`` ↔ ``…/biases``,
    ``Logits/kernel_t{task}`` ↔ ``Logits/weights`` and ``Logits/bias_t{task}`` ↔ ``Logits/biases``.
    """
    layer, _, variable = key.rpartition("/")
    if layer == "Logits":
        return {f"kernel_t{task}": "Logits/weights", f"bias_t{task}": "Logits/biases"}.get(variable)
    names = {"kernel": "weights", f"bias_t{task}": "biases", f"beta_t{task}": "beta",
             f"moving_mean_t{task}": "moving_mean", f"moving_variance_t{task}": "moving_variance"}
    if variable not in names:
        return None
    return f"{ROOT}/{layer.replace('.', '/')}/{names[variable]}"


def facenet_variables(model: "InceptionResnetV1", task: int = 1) -> dict:
    """FaceNet checkpoint name → the variable of `model` that holds it for task `task`."""
    model.check_task(task)
    found = {}
    for v in model.variables:
        name = facenet_name(variable_key(v), task)
        if name is not None:
            if name in found:
                raise ValueError(f"two variables map to {name}: {variable_key(found[name])}, {variable_key(v)}")
            found[name] = v
    return found


class _MaskedOps(GraphOps):
    """Applies the layers of an ``InceptionResnetV1`` for one task."""

    def __init__(self, model: "InceptionResnetV1", task: int, training: bool):
        self.model, self.task, self.training = model, task, training
        self.concats = iter(model.concat_rounds)

    def _layer(self, scope: str):
        return getattr(self.model, layer_name(scope))

    def _normalised(self, x, scope: str):
        return self._layer(scope + "/BatchNorm")(x, task=self.task, training=self.training)

    def conv(self, x, conv):
        return keras.ops.relu(self._normalised(self._layer(conv.scope)(x, task=self.task), conv.scope))

    def up_projection(self, branches, scope, filters):
        """The branch outputs concatenated branch after branch (one plain concat), the up-projection's
        kernel rows read in that order (``branch_major_order``)."""
        order = branch_major_order(tuple(int(b.shape[-1]) for b in branches), next(self.concats))
        return self._layer(scope)(keras.ops.concatenate(branches, axis=-1), task=self.task, input_order=order)

    def concat(self, xs):
        return ordered_concat(xs, next(self.concats))

    def dropout(self, x):
        return self.model.Dropout(x, training=self.training)

    def bottleneck(self, x):
        return self._normalised(self._layer("Bottleneck")(x, task=self.task), "Bottleneck")


@keras.saving.register_keras_serializable(package="paenet")
class InceptionResnetV1(PackableModel):
    """FaceNet's Inception-ResNet-v1 for many tasks: masked convs, per-task BatchNorm, biases and heads.

    ``model(x, task=k)`` takes standardised images (``paenet.data.preprocessing.fixed_standardization``) and
    returns task k's logits, or, for a task without a head (face verification), the L2-normalised
    embedding. ``outputs="prelogits" | "embeddings" | "logits"`` asks for one of them explicitly, a
    tuple of them for several from one pass (a loss on the logits and the prelogits: the face task's).

    Args:
      input_size: side of the square input (>= 80); the final average pool covers whatever map it gives.
      width_multiplier: scales FaceNet's widths (for CPU-sized experiments); `widths` entries override.
      widths: filters per conv scope (see ``facenet_widths``); the config always holds the full mapping.
      embedding_size: width of the Bottleneck (FaceNet 2018: 512).
      keep_probability: dropout keep probability before the Bottleneck (training only).
      block_counts: repeats of block35, block17 and block8; FaceNet's (5, 10, 5) unless a shallower net
        is wanted (quick CPU runs).
      width_history: the full width mappings the model had before each expansion, oldest first.
      bn_momentum: the moving-average decay of the BatchNorm statistics a task updates while it trains
        (FaceNet: 0.995, for runs of many thousand steps; short CPU runs need a faster one). Finished
        tasks never update theirs, so it may change between tasks.
    """

    OPTIONS = {"width_multiplier": 1.0, "block_counts": FACENET_BLOCKS}

    @classmethod
    def settings_arguments(cls, settings) -> dict:
        """The input size, the Bottleneck's width from ``dense_units`` (the feature layer) and the keep
        probability from ``dropout``."""
        return {"input_size": settings.image_size, "embedding_size": settings.dense_units,
                "keep_probability": 1.0 - settings.dropout, **given(settings, "bn_momentum")}

    def __init__(self, input_size: int = 160, width_multiplier: float = 1.0, widths: dict | None = None,
                 embedding_size: int = 512, keep_probability: float = 0.8, block_counts=FACENET_BLOCKS,
                 width_history=(), bn_momentum: float = BN_MOMENTUM, **kwargs):
        if int(input_size) != input_size or input_size < MIN_INPUT_SIZE:
            raise ValueError(f"input_size must be an integer >= {MIN_INPUT_SIZE}, got {input_size}")
        if not 0.0 < keep_probability <= 1.0:
            raise ValueError(f"keep_probability must be in (0, 1], got {keep_probability}")
        if embedding_size < 1:
            raise ValueError(f"embedding_size must be positive, got {embedding_size}")
        super().__init__(input_shape=(int(input_size), int(input_size), 3), **kwargs)
        self.input_size = int(input_size)
        self.block_counts = check_block_counts(block_counts)
        self.widths = resolve_widths(width_multiplier, widths, self.block_counts)
        self.width_history = [resolve_widths(1.0, w, self.block_counts) for w in width_history]
        # Per concatenation (graph order): the branch widths of every width round, oldest first.
        rounds = [_planned(w, self.block_counts).concats for w in [*self.width_history, self.widths]]
        self.concat_rounds = tuple(tuple(r[i] for r in rounds) for i in range(len(rounds[0])))
        self.embedding_size = int(embedding_size)
        self.keep_probability = float(keep_probability)
        self.bn_momentum = float(bn_momentum)
        shared = dict(num_tasks=self.num_tasks, sharing=self.sharing)
        # One attribute per layer, named as the layer: tf.train.Checkpoint skips layers in lists (DESIGN §9).
        for step in _plan(self.widths, self.block_counts):
            if step[0] == "conv":
                _, conv, filters = step
                self._add(MaskedConv2D(filters, conv.kernel, conv.strides, conv.padding, **shared,
                                       name=layer_name(conv.scope)))
                self._add(self._batch_norm(conv.scope))
            else:
                _, scope, filters, _ = step
                self._add(MaskedConv2D(filters, 1, use_bias=True, **shared, name=layer_name(scope)))
        self._add(MaskedDense(self.embedding_size, **shared, name="Bottleneck"))
        self._add(self._batch_norm("Bottleneck"))
        self.Dropout = keras.layers.Dropout(1.0 - self.keep_probability, name="Dropout")
        self.Logits = TaskHeads([t.num_classes for t in self.task_specs], name="Logits", dtype="float32")

    def _add(self, layer):
        setattr(self, layer.name, layer)

    def _batch_norm(self, scope: str) -> TaskBatchNorm:
        return TaskBatchNorm(self.num_tasks, self.bn_momentum, BN_EPSILON, name=layer_name(scope + "/BatchNorm"))

    def build(self, input_shape=None):
        """Builds the heads too, which a model whose tasks have no head never calls (Keras would warn
        about a layer left unbuilt)."""
        self.Logits.build((None, self.embedding_size))
        super().build(input_shape)

    def call(self, inputs, task=None, training=False, outputs=None):
        task = self.check_task(task)
        has_head = self.task_specs[task - 1].num_classes > 0
        outputs = outputs or ("logits" if has_head else "embeddings")
        names = (outputs,) if isinstance(outputs, str) else tuple(outputs)
        for name in names:
            if name not in OUTPUTS:
                raise ValueError(f"outputs must be one of {OUTPUTS} or a tuple of them, got {outputs!r}")
        if "logits" in names and not has_head:
            raise ValueError(f"task {task} ({self.task_specs[task - 1].name}) has no head: it has no logits")
        prelogits = build_graph(_MaskedOps(self, task, training), inputs, self.block_counts)
        made = {"logits": lambda: self.Logits(prelogits, task=task), "embeddings": lambda: l2_normalize(prelogits),
                "prelogits": lambda: keras.ops.cast(prelogits, "float32")}
        results = tuple(made[name]() for name in names)
        return results[0] if isinstance(outputs, str) else results

    def serves_embeddings(self, task) -> bool:
        """Whether task `task` serves its embedding (``paenet.export``): a task without head, and FaceNet's
        face task (task 1, named ``FACE_TASK``) whose head only retrains it (``paenet.tasks.face``)."""
        spec = self.task_specs[self.check_task(task) - 1]
        return not spec.num_classes or (task == 1 and spec.name == FACE_TASK)

    def width_config(self) -> dict[str, int]:
        """Filters of every conv that sets its own width, by layer key (the up-projections follow the
        residual stream; the Bottleneck and heads keep their width)."""
        return {layer_name(scope): filters for scope, filters in self.widths.items()}

    def with_width_config(self, widths, frozen_shapes) -> "InceptionResnetV1":
        scopes = {layer_name(scope): scope for scope in self.widths}
        return self.rebuild(widths={scopes[key]: filters for key, filters in widths.items()},
                            width_history=[*self.width_history, dict(self.widths)], frozen_shapes=frozen_shapes)

    def get_config(self):
        config = super().get_config()
        del config["input_shape"]
        return {**config, "input_size": self.input_size, "widths": dict(self.widths),
                "embedding_size": self.embedding_size, "keep_probability": self.keep_probability,
                "block_counts": list(self.block_counts), "width_history": [dict(w) for w in self.width_history],
                "bn_momentum": self.bn_momentum}


class _KerasOps(GraphOps):
    """Makes the graph from stock Keras layers, with the names of ``InceptionResnetV1``'s layers."""

    def __init__(self, model: InceptionResnetV1):
        self.widths = model.widths
        self.embedding_size = model.embedding_size
        self.keep_probability = model.keep_probability

    @staticmethod
    def _normalised(x, scope: str):
        return keras.layers.BatchNormalization(momentum=BN_MOMENTUM, epsilon=BN_EPSILON, scale=False,
                                               name=layer_name(scope + "/BatchNorm"))(x)

    def conv(self, x, conv):
        x = keras.layers.Conv2D(self.widths[conv.scope], conv.kernel, conv.strides, conv.padding, use_bias=False,
                                name=layer_name(conv.scope))(x)
        return keras.ops.relu(self._normalised(x, conv.scope))

    def up_projection(self, branches, scope, filters):
        return keras.layers.Conv2D(filters, 1, name=layer_name(scope))(self.concat(branches))

    def dropout(self, x):
        return keras.layers.Dropout(1.0 - self.keep_probability, name="Dropout")(x)

    def bottleneck(self, x):
        x = keras.layers.Dense(self.embedding_size, use_bias=False, name="Bottleneck")(x)
        return self._normalised(x, "Bottleneck")


def plain_inception_resnet_v1(model: InceptionResnetV1, num_classes: int = 0) -> keras.Model:
    """`model`'s graph for one task from stock Keras layers (the benchmark baseline): logits of a
    `num_classes` head on the prelogits, or the L2-normalised embedding when `num_classes` is 0."""
    inputs = keras.Input(model.image_shape)
    prelogits = build_graph(_KerasOps(model), inputs, model.block_counts)
    if num_classes:
        outputs = keras.layers.Dense(num_classes, name="Logits", dtype="float32")(prelogits)
    else:
        outputs = l2_normalize(prelogits)
    return keras.Model(inputs, outputs, name=f"plain_{model.name}")
