"""Networks built from masked layers."""
from paenet.models.base import PackableModel, TaskSpec, copy_values, layer_key, variable_key
from paenet.models.small_cnn import SmallCNN, plain_small_cnn

__all__ = ["PackableModel", "SmallCNN", "TaskSpec", "copy_values", "layer_key", "plain_small_cnn", "variable_key"]
