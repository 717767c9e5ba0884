"""Continual-learning methods: small strategies over the one task template (``paenet.goal.GoalLoop``).

A method answers the few questions in which PackNet, PAE and CPG differ (``Method``): may the network
grow when a task misses its goal, does a new task pick among older weights or read all of them, what
happens when the goal stays out of reach. Everything else (claim, train, prune in rounds to the turning
point, finish or roll back, checkpoints, events) is the template's. Adding a method is one module with a
``Method`` subclass registered here, plus a flag file or config that names it.
"""
from paenet.methods.base import METHODS, Method, get_method, register_method
from paenet.methods.cpg import CPG
from paenet.methods.packnet import PackNet
from paenet.methods.pae import PAE

__all__ = ["CPG", "METHODS", "Method", "PAE", "PackNet", "get_method", "register_method"]
