"""What every FaceNet file reader returns: FaceNet-named values, and where each came from."""
from __future__ import annotations

import dataclasses

import numpy as np


class FacenetImportError(ValueError):
    """A FaceNet file could not be imported; the message names the file and what is wrong with it."""


@dataclasses.dataclass
class Source:
    """The parameters of one FaceNet file in FaceNet's own parameterisation and checkpoint names.

    Attributes:
      path: the file (or checkpoint prefix) read.
      format: "checkpoint", "graphdef" or "tflite".
      values: FaceNet variable name (``InceptionResnetV1/.../weights``) → value.
      origin: FaceNet name → the file's own variable it was made from, where that differs from the name;
        None for a value the file implies without storing it (BatchNorm statistics of a folded layer).
      unmapped: the file's variables that gave no FaceNet value (reported as unused).
      input_size: the input side the file states, if it states one.
    """

    path: str
    format: str
    values: dict[str, np.ndarray]
    origin: dict[str, str | None] = dataclasses.field(default_factory=dict)
    unmapped: list[str] = dataclasses.field(default_factory=list)
    input_size: int | None = None

    def file_name(self, name: str) -> str | None:
        """The file's variable behind the FaceNet value `name` (None if implied)."""
        return self.origin.get(name, name)
