"""Networks built from masked layers, and the registry that creates them by name."""
from paenet.models.base import PackableModel, TaskSpec, copy_values, layer_key, variable_key
from paenet.models.inception_resnet_v1 import InceptionResnetV1, plain_inception_resnet_v1
from paenet.models.mlp import MLP
from paenet.models.resnet18 import ResNet18
from paenet.models.small_cnn import SmallCNN, plain_small_cnn
from paenet.models.vgg16 import VGG16BN
from paenet.models.registry import BACKBONES, Backbone, create_backbone, get_backbone, register_backbone

__all__ = ["BACKBONES", "MLP", "Backbone", "InceptionResnetV1", "PackableModel", "ResNet18", "SmallCNN", "TaskSpec",
           "VGG16BN", "copy_values", "create_backbone", "get_backbone", "layer_key", "plain_inception_resnet_v1",
           "plain_small_cnn", "register_backbone", "variable_key"]
