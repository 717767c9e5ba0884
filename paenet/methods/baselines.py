"""The continual-learning benchmark's reference points as methods over the same task template: each task
in a network of its own, trained (``independent``: the accuracy ceiling) or also pruned to its turning
point (``independent_pruned``: the size every packing method is compared with), and one network trained
task after task with nothing frozen (``finetune``: the forgetting baseline). None of them packs one
network keeping every finished task, so ``--method`` does not offer them."""
from paenet.methods.base import MISS_KEEP, Method, register_method


@register_method
class Independent(Method):
    """A fresh network per task, trained and finished unpruned, whatever its accuracy."""

    name = "independent"
    prunes = False
    on_miss = MISS_KEEP
    fresh_network = True
    packs = False


@register_method
class IndependentPruned(Method):
    """PackNet on one task: a fresh network per task, pruned to its own turning point; a task that misses
    its goal stays unpruned (no task comes after it in its network)."""

    name = "independent_pruned"
    on_miss = MISS_KEEP
    fresh_network = True
    packs = False


@register_method
class FineTune(Method):
    """One network, nothing frozen (``FineTuningPacker``): task 1 claims every weight, every task reads
    and trains all of them with its own BatchNorm and head, so each task rewrites the ones before it.
    Nothing is pruned; a task below its goal is kept as trained."""

    name = "finetune"
    prunes = False
    on_miss = MISS_KEEP
    packs = False
    freezes = False
