"""Masked kernels shared among tasks, and the parts each task owns alone."""
from paenet.layers.masked import (MAX_TASKS, FinishedTaskError, check_unfinished, PICK_INIT, PICK_THRESHOLD, SHARING_MODES, MaskedConv2D, MaskedDense,
                                  MaskedKernelLayer, check_task, effective_condition, effective_kernel)
from paenet.layers.task_parts import TaskBatchNorm, TaskHeads

__all__ = ["MAX_TASKS", "FinishedTaskError", "check_unfinished", "PICK_INIT", "PICK_THRESHOLD", "SHARING_MODES", "MaskedConv2D", "MaskedDense", "MaskedKernelLayer",
           "TaskBatchNorm", "TaskHeads", "check_task", "effective_condition", "effective_kernel"]
