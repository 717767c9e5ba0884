"""Networks built from masked layers."""
from paenet.models.base import PackableModel, TaskSpec, copy_values, layer_key, variable_key
from paenet.models.inception_resnet_v1 import InceptionResnetV1, plain_inception_resnet_v1
from paenet.models.small_cnn import SmallCNN, plain_small_cnn
from paenet.models.registry import BACKBONES, create_backbone, register_backbone

__all__ = ["BACKBONES", "InceptionResnetV1", "PackableModel", "SmallCNN", "TaskSpec", "copy_values", "layer_key",
           "create_backbone", "plain_inception_resnet_v1", "plain_small_cnn", "register_backbone",
           "variable_key"]
