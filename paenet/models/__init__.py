"""Networks built from masked layers."""
from paenet.models.base import PackableModel, TaskSpec, copy_values, layer_key, variable_key
from paenet.models.inception_resnet_v1 import InceptionResnetV1, plain_inception_resnet_v1
from paenet.models.mlp import MLP
from paenet.models.small_cnn import SmallCNN, plain_small_cnn
from paenet.models.vgg16 import VGG16BN

__all__ = ["MLP", "InceptionResnetV1", "PackableModel", "SmallCNN", "TaskSpec", "VGG16BN", "copy_values",
           "layer_key", "plain_inception_resnet_v1", "plain_small_cnn", "variable_key"]
