"""Continual-learning methods: small strategies over the one task template (``paenet.goal.GoalLoop``).

A method is a ``Method`` subclass: a few attributes (grows, picks, claims, prunes, its own rule for a
missed goal) and the hooks the template calls where methods differ: how a task starts (``start``: claims,
picks), which network it goes into (``network_for``: the packed one or a fresh one), what follows a
training phase (``after_training``: expand, prune, finish or miss) and what a missed goal leads to
(``miss_rule``). Everything else (train, prune in rounds to the turning point, finish or roll back,
checkpoints, events) is the template's. Adding a method is one module with a registered ``Method``
subclass, imported here; ``--method`` offers those that pack one network (``PACKING_METHODS``), the
continual-learning benchmark runs them all. Which optimizer trains what is the packer a method chooses
(``packer``): every method but one trains a task's own weights only and freezes every finished task;
fine-tuning (``freezes = False``) trains every weight in a packer that freezes nothing.
"""
from paenet.methods.base import METHODS, PACKING_METHODS, Method, get_method, register_method
from paenet.methods.baselines import FineTune, Independent, IndependentPruned
from paenet.methods.cpg import CPG
from paenet.methods.packnet import PackNet
from paenet.methods.pae import PAE
from paenet.methods.piggyback import Piggyback

__all__ = ["CPG", "FineTune", "METHODS", "PACKING_METHODS", "Independent", "IndependentPruned", "Method", "PAE",
           "PackNet", "Piggyback", "get_method", "register_method"]
