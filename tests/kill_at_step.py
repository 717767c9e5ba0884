"""``--task_module=kill_at_step`` with ``PAENET_KILL_AT_STEP=N`` in the environment: the process ends at
once, as SIGKILL would end it (no cleanup, no flush), right after training step N and whatever that step
wrote. Lets a test kill every worker of a multi-worker run at the same point."""
import os

from paenet.monitor import WorkspaceObserver

_KILL_AT = int(os.environ.get("PAENET_KILL_AT_STEP", "0"))
_on_step = WorkspaceObserver.on_step


def _on_step_then_die(self, loop, loss):
    _on_step(self, loop, loss)
    if self.global_step == _KILL_AT:
        os._exit(9)


WorkspaceObserver.on_step = _on_step_then_die
