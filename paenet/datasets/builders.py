"""Every TFDS builder of ``paenet.datasets`` by name (``BUILDERS``); importing this module registers them
all with TFDS.

Build one with ``python -m data_prep.build NAME --manual_dir=DIR [--data_dir=DIR]``, then read it with
``tfds.builder(f"paenet_{NAME}", data_dir=DIR)`` (after ``import paenet.datasets.builders``).
"""
from paenet.datasets.adience import PaenetAdience
from paenet.datasets.affectnet import PaenetAffectnet
from paenet.datasets.cifar100 import PaenetCifar100
from paenet.datasets.fashion_mnist import PaenetFashionMnist
from paenet.datasets.fer2013 import PaenetFer2013
from paenet.datasets.fotw import PaenetFotwGender
from paenet.datasets.imdb_wiki import PaenetImdbWiki
from paenet.datasets.lfw import PaenetLfw
from paenet.datasets.utkface import PaenetUtkface
from paenet.datasets.vggface2 import PaenetVggface2

BUILDERS = {b.name.removeprefix("paenet_"): b for b in (
    PaenetAdience, PaenetAffectnet, PaenetCifar100, PaenetFashionMnist, PaenetFer2013, PaenetFotwGender,
    PaenetImdbWiki, PaenetLfw, PaenetUtkface, PaenetVggface2)}

__all__ = ["BUILDERS", *(b.__name__ for b in BUILDERS.values())]
