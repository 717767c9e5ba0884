"""CPG, Compacting, Picking and Growing (Hung et al., NeurIPS 2019), Algorithm 1, as ivclab/CPG runs it
(``experiment1/CPG_cifar100_scratch_mul_1.5.sh`` over ``CPG_cifar100_main_normal.py``).

Picking: task t learns a real-valued mask over the weights of tasks 1..t-1 (initialised to 0.01,
binarised at 0.005 with a straight-through gradient, ``paenet.layers.masked``) together with its own
weights, with its own optimizer (``ExactFreezingOptimizer``'s pick optimizer, Adam 5e-4), so that old
weights that hinder it are left out. Its rate is multiplied by 0.2 halfway through a training phase and
set to 0 at 70% of it (CPG's epochs 50 and 70 of 100), except for a task that owns no weight of its own,
whose picks go on learning. Growing: while the goal is missed the network widens and the task trains
again from its start in the wider network (CPG reruns the task from the previous task's checkpoint), not
from its trained state. Compacting: the task is pruned in rounds of rising sparsity with its picks fixed;
every round is tried and the sparsest one that meets the goal is kept (``choose_appropriate_pruning_ratio
_for_next_task.py``). Then its picks are re-initialised and retrained with its remaining weights (weights
at 0.1 and picks at 0.2 times the configured rates: CPG's 1e-3 against its training's 1e-2, and 1e-4
against 5e-4) for 0.3 of a training phase (CPG's 30 epochs against 100), validated 10 times and stopped
after 2 validations without a gain (CPG: every epoch, stopped after 5); the retrained state is kept only
where validation improves on the pruned one (``choose_retrain_or_not.py``). The picks are stored as bits
when the task finishes.
"""
from paenet.methods.base import MISS_ROLL_BACK, ROUND_KEEP, ROUND_NEXT, Method, Retraining, register_method


@register_method
class CPG(Method):
    """PAE's loop with a learned pick of the older weights, CPG's growth, round choice and retraining."""

    name = "cpg"
    expands = True
    picks = True
    on_miss = MISS_ROLL_BACK
    sharing = "cumulative"
    restarts = True

    # CPG's pick schedule: x0.2 at epoch 50 of 100, x0 at epoch 70 (CPG_cifar100_main_normal.py).
    pick_decay_at, pick_decay, pick_stop_at = 0.5, 0.2, 0.7
    # Its retraining after pruning, relative to a training phase and the configured rates.
    retrain_share, retrain_validations, retrain_patience = 0.3, 10, 2
    retrain_learning_rate, retrain_pick_learning_rate = 0.1, 0.2

    def after_round(self, accuracy: float, target: float) -> str:
        return ROUND_KEEP if accuracy >= target else ROUND_NEXT

    def pick_schedule(self, steps: int, owns_weights: bool) -> list[tuple[int, float]]:
        schedule = [(int(steps * self.pick_decay_at), self.pick_decay)]
        return schedule + [(int(steps * self.pick_stop_at), 0.0)] if owns_weights else schedule

    def retraining(self, plan, picks: bool) -> Retraining | None:
        if not picks:
            return None
        steps = max(1, round(self.retrain_share * plan.train_steps))
        return Retraining(steps, max(1, steps // self.retrain_validations), self.retrain_patience,
                          self.retrain_learning_rate, self.retrain_pick_learning_rate)
