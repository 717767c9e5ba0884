"""CPG, Compacting, Picking and Growing (Hung et al., NeurIPS 2019), Algorithm 1.

Picking: task t learns a real-valued mask over the weights of tasks 1..t-1 (initialised to 0.01,
binarised at 0.005 with a straight-through gradient, ``paenet.layers.masked``) together with its own
weights, with its own optimizer (``ExactFreezingOptimizer``'s pick optimizer, Adam 5e-4), so that old
weights that hinder it are left out. Growing: the network widens while the goal is missed. Compacting:
the task is pruned in rounds to the turning point, its picks fixed, and the picks are stored as bits when
it finishes.
"""
from paenet.methods.base import MISS_ROLL_BACK, Method, register_method


@register_method
class CPG(Method):
    """PAE's loop with a learned pick of the older weights."""

    name = "cpg"
    expands = True
    picks = True
    on_miss = MISS_ROLL_BACK
    sharing = "cumulative"
