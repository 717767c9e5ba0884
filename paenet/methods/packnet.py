"""PackNet (Mallya & Lazebnik, CVPR 2018): a fixed network, each task trained in the free weights while
reading all older ones frozen, then pruned in rounds to the turning point of its goal."""
from paenet.methods.base import MISS_KEEP, Method, register_method


@register_method
class PackNet(Method):
    """No growth: a task that misses its goal is kept unpruned, the best a full network gives it."""

    name = "packnet"
    expands = False
    picks = False
    on_miss = MISS_KEEP
