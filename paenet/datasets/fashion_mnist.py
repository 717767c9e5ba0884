"""Fashion-MNIST (Xiao, Rasul & Vollgraf 2017): 28x28 grayscale Zalando article images in 10 classes.

Splits ``train`` (60,000) and ``test`` (10,000) from the four IDX files, gzip'd or not, read by
``paenet.data.idx`` (a corrupt or truncated file is refused, naming it). ``label`` = the class index
0-9 (T-shirt/top, Trouser, Pullover, Dress, Coat, Sandal, Shirt, Sneaker, Bag, Ankle boot); ``index``
= the image's position in its file.
"""
from __future__ import annotations

import numpy as np
import tensorflow_datasets as tfds

from paenet.datasets.common import ManualBuilder
from paenet.data.idx import FASHION_MNIST_CLASSES, FASHION_MNIST_DIR, load_fashion_mnist

MANUAL = f"""\
Put the four Fashion-MNIST files `train-images-idx3-ubyte.gz`, `train-labels-idx1-ubyte.gz`,
`t10k-images-idx3-ubyte.gz` and `t10k-labels-idx1-ubyte.gz` (gzip'd or not) in `manual_dir`. Debian's
package installs them: `apt-get install dataset-fashion-mnist`, then `--manual_dir={FASHION_MNIST_DIR}`.
"""


class PaenetFashionMnist(ManualBuilder):
    """Fashion-MNIST from its four IDX files."""

    name = "paenet_fashion_mnist"
    MANUAL_DOWNLOAD_INSTRUCTIONS = MANUAL

    def _info(self):
        return tfds.core.DatasetInfo(
            builder=self, description=__doc__,
            features=tfds.features.FeaturesDict({
                "image": tfds.features.Image(shape=(28, 28, 1)),
                "label": tfds.features.ClassLabel(names=FASHION_MNIST_CLASSES),
                "index": tfds.features.Scalar(np.int64),
            }),
            supervised_keys=("image", "label"))

    def _split_generators(self, dl_manager):
        x_train, y_train, x_test, y_test = load_fashion_mnist(self.manual_root(dl_manager))
        return {"train": self._examples(x_train, y_train), "test": self._examples(x_test, y_test)}

    @staticmethod
    def _examples(images, labels):
        for i, (image, label) in enumerate(zip(images, labels)):
            yield i, {"image": image[..., None], "label": int(label), "index": i}
