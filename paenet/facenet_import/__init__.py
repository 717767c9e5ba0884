"""FaceNet import (DESIGN §6): Inception-ResNet-v1 from a TF1 checkpoint, a frozen GraphDef or a TFLite model.

``load_facenet(path)`` returns a ``FacenetImport`` whose ``model`` is an ``InceptionResnetV1`` holding the
file's network as task 1, "face". Each reader turns its format into FaceNet-named values (``Source``); the
loader builds the model from their shapes and fills it.
"""
from paenet.facenet_import.checkpoint import find_checkpoint
from paenet.facenet_import.loader import FacenetImport, load_facenet, read_facenet_file
from paenet.facenet_import.source import FacenetImportError, Source

__all__ = ["FacenetImport", "FacenetImportError", "Source", "find_checkpoint", "load_facenet",
           "read_facenet_file"]
