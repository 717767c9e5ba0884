"""Networks built from masked layers, and the registry that creates them by name."""
from paenet.models.base import PackableModel, TaskSpec, copy_values, layer_key, variable_key
from paenet.models.inception_resnet_v1 import InceptionResnetV1, plain_inception_resnet_v1
from paenet.models.mlp import MLP
from paenet.models.small_cnn import SmallCNN, plain_small_cnn
from paenet.models.vgg16 import VGG16BN
from paenet.models.registry import BACKBONES, create_backbone, register_backbone

__all__ = ["BACKBONES", "MLP", "InceptionResnetV1", "PackableModel", "SmallCNN", "TaskSpec", "VGG16BN",
           "copy_values", "create_backbone", "layer_key", "plain_inception_resnet_v1", "plain_small_cnn",
           "register_backbone", "variable_key"]
