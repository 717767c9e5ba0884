"""Tasks by name: what the app can pack, with its data, splits and validation.

Importing this package registers the built-in tasks: face verification (FaceNet), the paper's tasks on
data sets the user prepared with ``python -m data_prep.build``, and demo tasks on small real-image sets.
"""
from paenet.tasks import demo, face, paper  # noqa: F401  (they register their tasks)
from paenet.tasks.registry import TaskContext, TaskData, TaskDefinition, get, names, register

__all__ = ["TaskContext", "TaskData", "TaskDefinition", "get", "names", "register"]
