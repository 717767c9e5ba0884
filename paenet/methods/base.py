"""The method seam: what a continual-learning method decides inside the task template."""
from __future__ import annotations

import dataclasses

from paenet.packing import FineTuningPacker, Packer

METHODS: dict[str, type["Method"]] = {}          # every method, the benchmark's baselines included
PACKING_METHODS: dict[str, type["Method"]] = {}  # the methods that pack one network (``--method``)

MISS_ROLL_BACK = "roll_back"
MISS_KEEP = "keep"
MISS_RESERVE = "reserve"       # the plan's rule at the cap (paenet.goal): finished, pruned to a reserve

ROUND_KEEP = "keep"            # a pruning round met the goal: keep it and go on
ROUND_STOP = "stop"            # a round missed it: the turning point, the rounds end
ROUND_NEXT = "next"            # a round missed it, but the next (sparser) round is still tried


@dataclasses.dataclass(frozen=True)
class Retraining:
    """How a pruned task is retrained with re-initialised picks (``Method.retraining``): `steps` steps
    at `learning_rate` and `pick_learning_rate` times the configured rates, validated every `every`
    steps, stopped after `patience` validations without a gain; kept only where validation improves."""

    steps: int
    every: int
    patience: int
    learning_rate: float
    pick_learning_rate: float


class Method:
    """A continual-learning method as the task template (``paenet.goal.GoalLoop``) sees it: a few class
    attributes and the hooks the template calls at its turning points. Subclasses set the attributes and
    override a hook only where they differ.

    Attributes:
      name: the registered name (``--method=NAME``), recorded in the workspace and in each task's record.
      expands: when the trained task misses its goal, widen the network (up to the plan's cap) and retrain.
      picks: a new task learns a binary picking mask over the older tasks' weights (CPG) instead of
        reading all of them.
      claims: a new task claims the free weights (every method but one that only picks).
      prunes: a task that meets its goal is pruned in rounds to its turning point, releasing weights.
      on_miss: what a task that misses its goal at its widest does under the method's own rule:
        ``"roll_back"`` (nothing of it is kept) or ``"keep"`` (it is finished unpruned: the best the method
        can do).
      sharing: the ownership rule it needs the network to have (``paenet.layers``), or None for any.
      fresh_network: every task gets a network of its own (the ``independent`` baselines), not the
        packed one.
      packs: tasks share one network and every finished task stays bit-identical: the app's ``--method``
        offers it.
      freezes: a finished task is frozen, bit-identical whatever follows; False only for fine-tuning, whose
        later tasks train every weight (the forgetting baseline; ``packer``).
      restarts: after a growth the task trains again from its start (its own weights, BatchNorm, biases,
        head and picks as they were when it started, in the wider network), not from its trained state.
    """

    name = ""
    expands = False
    picks = False
    claims = True
    prunes = True
    on_miss = MISS_ROLL_BACK
    sharing = None
    fresh_network = False
    packs = True
    freezes = True
    restarts = False

    def start(self, packer, spec) -> int:
        """How a task starts in `packer` (hook): adds it, claiming the free weights and learning picks
        as the method says; returns its number."""
        return packer.start_task(spec, picks=self.picks, claim=self.claims)

    def packer(self, model, optimizer, **kwargs) -> Packer:
        """A packer for `model` (hook), which says which optimizer trains what: a ``Packer``, in which a
        task's optimizer moves only the kernel weights it owns and every finished task is frozen, or, for
        a method that does not freeze finished tasks, a ``FineTuningPacker``, in which every task trains
        every kernel weight. `optimizer`, `kwargs`: as ``Packer`` takes them."""
        return (Packer if self.freezes else FineTuningPacker)(model, optimizer, **kwargs)

    def network_for(self, packer, fresh):
        """The packer the next task goes into (hook): `packer`, the one of the tasks before (None for
        the first task), or ``fresh()``, a new one (made by ``packer``), for a method that gives every
        task its own network."""
        return fresh() if self.fresh_network or packer is None else packer

    def after_training(self, accuracy: float, target: float, can_retrain: bool) -> str:
        """What follows a training phase that reached `accuracy` against `target` (hook): ``"expand"``
        (widen and retrain), ``"miss"`` (the goal is out of reach: ``miss_rule`` decides), ``"prune"``
        or ``"finish"``. `can_retrain`: there is training data (an imported task may have none)."""
        if accuracy < target:
            return "expand" if can_retrain and self.expands else "miss"
        return "prune" if self.prunes else "finish"

    def after_round(self, accuracy: float, target: float) -> str:
        """What follows a pruning round that reached `accuracy` against `target` (hook): ``"keep"`` (keep
        it, prune further), ``"stop"`` (the turning point: the kept round is the task's) or ``"next"``
        (not kept, but the next round is tried)."""
        return ROUND_KEEP if accuracy >= target else ROUND_STOP

    def pick_schedule(self, steps: int, owns_weights: bool) -> list[tuple[int, float]]:
        """How the picks' learning rate changes over a training phase of `steps` steps (hook): (step,
        factor of the configured rate from that step on) pairs; `owns_weights`: the task owns kernel
        weights of its own. None change by default."""
        return []

    def retraining(self, plan, picks: bool) -> Retraining | None:
        """How a task is retrained after its pruning, its picks re-initialised (hook), or None: not
        retrained. `picks`: the task picks."""
        return None

    def miss_rule(self, plan_rule: str, override: str | None = None, can_retrain: bool = True) -> str:
        """What a task that misses its goal at its widest does (hook): `override` if given, else the
        plan's rule at the cap (``"reserve"``: finished, pruned to release the plan's reserve) or, when
        the plan leaves it to the method, ``on_miss``. A task without training data cannot be pruned to
        a reserve and retrained, and a method that does not prune releases nothing: both fall back to
        ``on_miss``."""
        rule = override or (MISS_RESERVE if plan_rule == MISS_RESERVE else self.on_miss)
        return self.on_miss if rule == MISS_RESERVE and not (can_retrain and self.prunes) else rule

    def compatible_with(self, other: str, sharing: str) -> bool:
        """Whether tasks of this method may follow tasks packed by method `other` in a network with the
        ownership rule `sharing`. Every method here keeps the same per-task state (ownership masks,
        optional picks) and each task's record names its method, so any of them may follow any other
        when the network's rule is the one this method needs."""
        return other in PACKING_METHODS and self.sharing in (None, sharing)

    def __repr__(self):
        return f"{type(self).__name__}()"


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: makes `cls` available by its name to ``get_method`` (and to ``--method`` when it
    packs)."""
    if not cls.name or cls.name in METHODS:
        raise ValueError(f"a method needs a new, non-empty name; got {cls.name!r}")
    METHODS[cls.name] = cls
    if cls.packs:
        PACKING_METHODS[cls.name] = cls
    return cls


def get_method(method) -> Method:
    """A method instance from a name, a class or an instance."""
    if isinstance(method, Method):
        return method
    if isinstance(method, type) and issubclass(method, Method):
        return method()
    if method not in METHODS:
        raise KeyError(f"unknown method {method!r}: one of {', '.join(sorted(METHODS))}")
    return METHODS[method]()
