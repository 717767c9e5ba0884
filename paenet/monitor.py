"""The app's goal-loop observer: checkpoints into the workspace and logs to TensorBoard.

Checkpoints are written after every phase of the loop and every `checkpoint_every` training steps, so a
run killed at any moment loses at most the steps since the last one. TensorBoard gets the loss and
learning rate every `log_every` steps, validation accuracy after each phase, expansion events, and after
each phase a few summary scalars (the free share of all masked weights, ``sparsity``, and each task's share,
``owned/task<t>``), per-layer ownership as one image (rows: layers, columns: free, task 1, task 2, ...;
brighter = a larger share) and the layers' free shares as one histogram: a handful of charts however many
layers the network has.
"""
from __future__ import annotations

import json

import numpy as np
import tensorflow as tf

from paenet.checkpoint import run_state
from paenet.evaluation.model_size import ownership
from paenet.goal import LoopObserver


CELL = 8   # pixels per (layer, owner) share in the ownership image


class WorkspaceObserver(LoopObserver):
    """Args:
      workspace: the ``Workspace``; the task's events go to its ``active/logs``.
      run_state: JSON-serialisable facts that a resumed run needs (task name, goal, plan, ...).
      global_step: training steps so far (from the checkpoint when resuming).
      best: file name of the kept snapshot (from the checkpoint when resuming).
      start: file name of the snapshot a growth restarts the task from (likewise).
    """

    def __init__(self, workspace, run_state: dict, checkpoint_every: int = 100, log_every: int = 10,
                 global_step: int = 0, best: str | None = None, start: str | None = None):
        self.workspace = workspace
        self.run_state = run_state
        self.checkpoint_every = checkpoint_every
        self.log_every = log_every
        self.global_step = global_step
        self.best = best
        self.start = start
        self.writer = tf.summary.create_file_writer(str(workspace.active_logs))

    def on_step(self, loop, loss: float):
        self.global_step += 1
        if self.global_step % self.log_every == 0:
            with self.writer.as_default(step=self.global_step):
                tf.summary.scalar("loss", loss)
                tf.summary.scalar("learning_rate", float(loop.current_packer.optimizer.learning_rate.numpy()))
                picks = loop.current_packer.optimizer.pick_learning_rate
                if picks is not None:
                    tf.summary.scalar("pick_learning_rate", float(picks.numpy()))
        if self.global_step % self.checkpoint_every == 0:
            self.checkpoint(loop)

    def on_phase_end(self, loop):
        if loop.state.stage != "done":
            self.checkpoint(loop)
        self._log_ownership(loop.current_packer.model)
        self.writer.flush()

    def on_best(self, loop, snapshot: dict):
        self.best = self.workspace.checkpoints.save_best(snapshot, self.global_step)

    def on_start(self, loop, snapshot: dict):
        self.start = self.workspace.checkpoints.save_best(snapshot, self.global_step, kind="start")

    def on_event(self, loop, name: str, value):
        with self.writer.as_default(step=self.global_step):
            if name == "val_accuracy":
                tf.summary.scalar(f"val_accuracy/{loop.state.history[-1][0]}", value)
                tf.summary.scalar("val_accuracy", value)
            elif name == "expansion":
                tf.summary.scalar("expansion/parameters", value["parameters"])
                tf.summary.text("expansion", json.dumps(value))
            else:
                tf.summary.text(name, json.dumps(value))

    def checkpoint(self, loop):
        packer, trainer = loop.current_packer, loop.current_trainer
        state = run_state(self.run_state, loop.state.to_dict(), packer, trainer, self.global_step, self.best,
                          self.start)
        iterator = trainer.batches(loop.train) if loop.train is not None else None
        self.workspace.save_active(packer, state, self.global_step, iterator)

    def _log_ownership(self, model):
        if not model.masked_layers():       # the first task of a new workspace rolled back: nothing is owned
            return
        counts = np.stack(list(ownership(model).values()))            # [layer, owner]
        shares = counts / counts.sum(axis=1, keepdims=True)
        overall = counts.sum(axis=0) / counts.sum()
        with self.writer.as_default(step=self.global_step):
            tf.summary.scalar("sparsity", float(overall[0]))
            for task in range(1, model.num_tasks + 1):
                tf.summary.scalar(f"owned/task{task}", float(overall[task]))
            pixels = np.kron(shares, np.ones((CELL, CELL)))              # each share a CELL x CELL block
            tf.summary.image("ownership", pixels[None, :, :, None].astype(np.float32))
            tf.summary.histogram("layer_sparsity", shares[:, 0])
