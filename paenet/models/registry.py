"""Backbones by name: ``create_backbone("small_cnn", widths=(16, 32), ...)``, and what the app needs to
create one for a new workspace (``Backbone.create``).

Every registered backbone is a ``PackableModel`` that implements the whole interface the packing code
uses: ``call(x, task, training)``, ``get_config``/``from_config``, ``width_config`` and
``with_width_config`` (expansion); its class declares what it takes from the app's settings
(``settings_arguments``) and its own further options (``OPTIONS``). Adding a backbone is its model file
and one ``register_backbone`` line here; ``tests/test_backbones.py`` runs one harness over every entry.
"""
from __future__ import annotations

import dataclasses
from typing import Callable

from paenet.config import UsageError
from paenet.models.base import PackableModel
from paenet.models.inception_resnet_v1 import InceptionResnetV1
from paenet.models.mlp import MLP
from paenet.models.resnet18 import ResNet18
from paenet.models.small_cnn import SmallCNN
from paenet.models.vgg16 import VGG16BN


@dataclasses.dataclass(frozen=True)
class Backbone:
    """A registered backbone: its name and class, and for one that the app imports from a file instead
    of creating it afresh (FaceNet), ``load(settings, name) -> (model, workspace config entries)``, the
    model holding its imported tasks."""

    name: str
    cls: type[PackableModel]
    load: Callable | None = None

    def arguments(self, settings) -> dict:
        """The constructor keywords of a new network for the app's `settings`: what its settings give,
        then its own options (``settings.backbone_options``, strings or values, each read as its
        default's type). UsageError naming an unknown option or a value of the wrong type."""
        arguments = self.cls.settings_arguments(settings)
        for option, value in settings.backbone_options.items():
            if option not in self.cls.OPTIONS:
                known = ", ".join(sorted(self.cls.OPTIONS)) or "none"
                raise UsageError(f"--backbone_option={option}: --base={self.name} has no such option "
                                 f"(its options: {known})")
            try:
                arguments[option] = _read(value, self.cls.OPTIONS[option])
            except ValueError:
                raise UsageError(f"--backbone_option={option}={value}: must be of the type of its default "
                                 f"{self.cls.OPTIONS[option]!r}") from None
        return arguments

    def check(self, settings) -> None:
        """UsageError, before anything is made, for options this backbone does not take (an import
        takes none: the file fixes the network)."""
        if self.load is not None and settings.backbone_options:
            raise UsageError(f"--backbone_option={next(iter(settings.backbone_options))}: --base={self.name} "
                             "imports its network and takes no options")
        if self.load is None:
            self.arguments(settings)

    def create(self, settings, name: str):
        """A new workspace's network named `name` for the app's `settings`, and the entries of the
        workspace config that say how it was made: (model, entries). UsageError naming ``--base`` when
        the settings do not make this backbone."""
        if self.load is not None:
            return self.load(settings, name)
        arguments = self.arguments(settings)
        try:
            model = self.cls(**arguments, name=name, sharing=settings.sharing)
        except (ValueError, TypeError) as e:
            raise UsageError(f"--base={self.name}: {e}") from None
        return model, {"image_size": settings.image_size,
                       **{k: v for k, v in arguments.items() if k != "input_shape"}}


def _read(value, default):
    """`value` (a command-line string, or a value) as the type of `default`."""
    if not isinstance(value, str):
        return type(default)(value)
    if isinstance(default, bool):
        if value.lower() not in ("true", "false", "1", "0"):
            raise ValueError(value)
        return value.lower() in ("true", "1")
    if isinstance(default, (tuple, list)):
        return tuple(type(default[0])(v) for v in value.split(","))
    return type(default)(value)


BACKBONES: dict[str, Backbone] = {}


def register_backbone(name: str, cls: type[PackableModel], load: Callable | None = None) -> Backbone:
    """Makes `cls` available to ``create_backbone(name, ...)`` and to the app as ``--base=name`` (see
    ``Backbone`` for `load`)."""
    if name in BACKBONES:
        raise ValueError(f"a backbone named {name!r} is registered already")
    BACKBONES[name] = Backbone(name, cls, load)
    return BACKBONES[name]


def get_backbone(name: str) -> Backbone:
    if name not in BACKBONES:
        raise KeyError(f"unknown backbone {name!r}: one of {', '.join(sorted(BACKBONES))}")
    return BACKBONES[name]


def create_backbone(backbone: str, **kwargs) -> PackableModel:
    """A new, unbuilt `backbone` (its constructor's keyword arguments, the model name too, in `kwargs`)."""
    return get_backbone(backbone).cls(**kwargs)


register_backbone("small_cnn", SmallCNN)
register_backbone("inception_resnet_v1", InceptionResnetV1)
register_backbone("mlp", MLP)
register_backbone("vgg16_bn", VGG16BN)
register_backbone("resnet18", ResNet18)
