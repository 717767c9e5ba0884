"""``--task_module=kill_at_step`` with ``PAENET_KILL_AT_STEP=N`` in the environment: the process ends at
once, as SIGKILL would end it (no cleanup, no flush), right after training step N and whatever that step
wrote. Lets a test kill every worker of a multi-worker run at the same point. With
``PAENET_KILL_AT_EXPANSION=R`` it ends the same way just before expansion round R begins."""
import os

from paenet.monitor import WorkspaceObserver
from paenet.packing import Packer

_KILL_AT = int(os.environ.get("PAENET_KILL_AT_STEP", "0"))
_KILL_AT_EXPANSION = int(os.environ.get("PAENET_KILL_AT_EXPANSION", "0"))
_on_step = WorkspaceObserver.on_step
_expand = Packer.expand


def _on_step_then_die(self, loop, loss):
    _on_step(self, loop, loss)
    if self.global_step == _KILL_AT:
        os._exit(9)


def _die_or_expand(self, policy):
    if len(self.expansions) + 1 == _KILL_AT_EXPANSION:
        os._exit(9)
    return _expand(self, policy)


WorkspaceObserver.on_step = _on_step_then_die
Packer.expand = _die_or_expand
