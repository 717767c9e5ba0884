"""The method seam: what a continual-learning method decides inside the task template."""
from __future__ import annotations

METHODS: dict[str, type["Method"]] = {}

MISS_ROLL_BACK = "roll_back"
MISS_KEEP = "keep"
MISS_RESERVE = "reserve"       # the plan's rule at the cap (paenet.goal): finished, pruned to a reserve


class Method:
    """A continual-learning method as the template sees it. Subclasses set the class attributes.

    Attributes:
      name: the registered name (``--method=NAME``), recorded in the workspace and in each task's record.
      expands: when the trained task misses its goal, widen the network (up to the plan's cap) and retrain.
      picks: a new task learns a binary picking mask over the older tasks' weights (CPG) instead of
        reading all of them.
      on_miss: what a task that misses its goal at its widest does: ``"roll_back"`` (nothing of it is
        kept) or ``"keep"`` (it is finished unpruned: the best the method can do).
      sharing: the ownership rule it needs the network to have (``paenet.layers``), or None for any.
    """

    name = ""
    expands = False
    picks = False
    on_miss = MISS_ROLL_BACK
    sharing = None

    def compatible_with(self, other: str, sharing: str) -> bool:
        """Whether tasks of this method may follow tasks packed by method `other` in a network with the
        ownership rule `sharing`. Every method here keeps the same per-task state (ownership masks,
        optional picks) and each task's record names its method, so any of them may follow any other
        when the network's rule is the one this method needs."""
        return other in METHODS and self.sharing in (None, sharing)

    def __repr__(self):
        return f"{type(self).__name__}()"


def register_method(cls: type[Method]) -> type[Method]:
    """Class decorator: makes `cls` available by its name to ``get_method`` and ``--method``."""
    if not cls.name or cls.name in METHODS:
        raise ValueError(f"a method needs a new, non-empty name; got {cls.name!r}")
    METHODS[cls.name] = cls
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
