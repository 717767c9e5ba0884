"""PAE, Packing and Expanding (Hung et al., ICMR 2019): PackNet's packing, plus widening the network
while a task misses its goal, then pruning it to the turning point."""
from paenet.methods.base import MISS_ROLL_BACK, Method, register_method


@register_method
class PAE(Method):
    """Expands while the goal is missed; rolls the task back when even the cap's width misses it."""

    name = "pae"
    expands = True
    picks = False
    on_miss = MISS_ROLL_BACK
