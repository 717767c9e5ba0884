"""The tiny networks the tests share, in one place: the app's settings for a tiny version of every
registered backbone (``TINY``), the backbone and the command-line flags they make, and the two tiny small
CNNs most tests pack into."""
from paenet.config import Settings
from paenet.models import SmallCNN, get_backbone

# A case per backbone (and a variant or two), as the app's settings: the smallest network that still has
# every kind of layer the backbone has at full size. vgg16_bn (by default), mlp_bias and resnet18 widen the layer
# their heads read when they expand (small_cnn's: tests/test_expansion.py).
TINY = {
    "small_cnn": dict(image_size=16, widths=(4, 8), dense_units=16),
    "inception_resnet_v1": dict(image_size=80, dense_units=8,
                                backbone_options={"width_multiplier": 0.125, "block_counts": (1, 1, 1)}),
    "mlp": dict(image_size=8, widths=(16, 8), dense_units=8),
    "mlp_bias": dict(base="mlp", image_size=8, widths=(12,), dense_units=6, dropout=0.25,
                     backbone_options={"batch_norm": "false", "expand_features": "true"}),
    "vgg16_bn": dict(image_size=32, widths=(3, 4, 4, 5, 5, 6, 6, 6, 7, 7, 7, 8, 8), dense_units=8),
    "resnet18": dict(image_size=8, widths=(4, 4, 8, 8), backbone_options={"expand_features": "true"}),
}


def tiny_settings(case: str, **changes) -> Settings:
    """The app's settings of `case` (a key of ``TINY``): dropout 0 unless the case says otherwise."""
    return Settings(**{"base": case, "dropout": 0.0, **TINY[case], **changes})


def tiny_backbone(case: str, **kwargs):
    """The unbuilt tiny network of `case`, as the app creates it (`kwargs`: tasks, name ...)."""
    settings = tiny_settings(case)
    backbone = get_backbone(settings.base)
    return backbone.cls(**backbone.arguments(settings), **kwargs)


def tiny_flags(case: str) -> list[str]:
    """The command-line flags of `case` (a key of ``TINY`` without backbone options), as ``paenet.main``
    takes them."""
    return [f"--{k}={','.join(map(str, v)) if isinstance(v, tuple) else v}" for k, v in TINY[case].items()]


def tiny_cnn(**kwargs) -> SmallCNN:
    """A small CNN of two conv blocks (4, 8 filters) and 8 dense units on 16x16 images."""
    return SmallCNN(widths=(4, 8), dense_units=8, input_shape=(16, 16, 3), **kwargs)


def one_block_cnn(image_size: int = 16, **kwargs) -> SmallCNN:
    """The smallest small CNN: one conv block of 4 filters and 4 dense units on `image_size` square images."""
    return SmallCNN(widths=(4,), dense_units=4, input_shape=(image_size, image_size, 3), **kwargs)
