"""Backbones by name: ``create_backbone("small_cnn", widths=(16, 32), ...)``.

Every registered backbone is a ``PackableModel`` that implements the whole interface the packing code
uses: ``call(x, task, training)``, ``get_config``/``from_config``, ``width_config`` and
``with_width_config`` (expansion). ``tests/test_backbones.py`` runs one harness over every entry here.
"""
from __future__ import annotations

from paenet.models.base import PackableModel
from paenet.models.inception_resnet_v1 import InceptionResnetV1
from paenet.models.mlp import MLP
from paenet.models.small_cnn import SmallCNN
from paenet.models.vgg16 import VGG16BN

BACKBONES: dict[str, type[PackableModel]] = {}


def register_backbone(name: str, cls: type[PackableModel]) -> type[PackableModel]:
    """Makes `cls` available to ``create_backbone(name, ...)``."""
    if name in BACKBONES:
        raise ValueError(f"a backbone named {name!r} is registered already")
    BACKBONES[name] = cls
    return cls


def create_backbone(backbone: str, **kwargs) -> PackableModel:
    """A new, unbuilt `backbone` (its constructor's keyword arguments, the model name too, in `kwargs`)."""
    if backbone not in BACKBONES:
        raise KeyError(f"unknown backbone {backbone!r}: one of {', '.join(sorted(BACKBONES))}")
    return BACKBONES[backbone](**kwargs)


register_backbone("small_cnn", SmallCNN)
register_backbone("inception_resnet_v1", InceptionResnetV1)
register_backbone("mlp", MLP)
register_backbone("vgg16_bn", VGG16BN)
