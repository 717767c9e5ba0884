"""Piggyback (Mallya, Davis & Lazebnik, ECCV 2018): every new task learns a binary mask over the frozen
weights of the tasks before it and trains only its own BatchNorm, biases and head.

The mask is real-valued, initialised to 0.01 and binarised at 0.005 with a straight-through gradient
(the paper's values, which are CPG's too: ``paenet.layers.masked``'s picks), trained by the pick optimizer
(``ExactFreezingOptimizer``). The task claims no free weight, so it changes no kernel entry at all: the
way to add a task to an imported network (FaceNet) without touching the tasks in it. It costs one bit
per weight it may pick from, stored as bits when it finishes (``paenet.evaluation.model_size``). The
first task of an empty network has nothing to pick from: it claims every weight and trains them, as the
paper's pretrained backbone was trained. Nothing is pruned and nothing grows.
"""
from paenet.methods.base import MISS_KEEP, Method, register_method


@register_method
class Piggyback(Method):
    """Picks among the older tasks' weights, owns none; a task that misses its goal is kept as trained."""

    name = "piggyback"
    picks = True
    claims = False
    prunes = False
    on_miss = MISS_KEEP
    sharing = "cumulative"

    def start(self, packer, spec) -> int:
        return packer.start_task(spec, picks=True, claim=packer.model.num_tasks == 0)
