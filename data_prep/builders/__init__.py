"""TFDS builders for the manually downloaded data sets (faces; Fashion-MNIST and CIFAR-100 for the
continual-learning benchmark); importing this package registers them.

Build one with ``python -m data_prep.build NAME --manual_dir=DIR [--data_dir=DIR]``, then read it with
``tfds.builder(f"paenet_{NAME}", data_dir=DIR)`` (after ``import data_prep.builders``).
"""
from data_prep.builders.adience import PaenetAdience
from data_prep.builders.affectnet import PaenetAffectnet
from data_prep.builders.cifar100 import PaenetCifar100
from data_prep.builders.fashion_mnist import PaenetFashionMnist
from data_prep.builders.fer2013 import PaenetFer2013
from data_prep.builders.fotw import PaenetFotwGender
from data_prep.builders.imdb_wiki import PaenetImdbWiki
from data_prep.builders.lfw import PaenetLfw
from data_prep.builders.utkface import PaenetUtkface
from data_prep.builders.vggface2 import PaenetVggface2

BUILDERS = {b.name.removeprefix("paenet_"): b for b in (
    PaenetAdience, PaenetAffectnet, PaenetCifar100, PaenetFashionMnist, PaenetFer2013, PaenetFotwGender,
    PaenetImdbWiki, PaenetLfw, PaenetUtkface, PaenetVggface2)}

__all__ = ["BUILDERS", *(b.__name__ for b in BUILDERS.values())]
