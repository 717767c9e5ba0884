"""One image in, one FaceNet-style face crop out: read, detect with MTCNN, pick a face, crop with margin.

FaceNet aligns by cropping the MTCNN box enlarged by `margin` pixels in total (margin/2 on each side,
clipped to the image) and resizing the crop to `image_size` x `image_size` (bilinear): 182 px with margin
44 for training data (train time then takes random 160 crops), 160 px with margin 32 for LFW. The `mtcnn`
package ships its P/R/O-Net weights, so nothing is downloaded.
"""
from __future__ import annotations

import numpy as np
from PIL import Image, ImageOps

# FaceNet's detector settings: smallest face 20 px, stage thresholds 0.6/0.7/0.7, pyramid factor 0.709.
DETECTOR_SETTINGS = dict(min_face_size=20, threshold_pnet=0.6, threshold_rnet=0.7, threshold_onet=0.7,
                         scale_factor=0.709)

# When several faces are found, those at least this fraction of the largest one's area compete, and the
# most central of them is kept. FaceNet's own rule (area - 2 x squared centre offset) lets a tiny false
# detection near the centre beat every real face (celebs/Jerry_Seinfeld_0016: a 15x18 px hand).
MIN_RELATIVE_AREA = 0.5


class UnreadableImage(ValueError):
    """The file is not an image that can be decoded."""


def read_rgb(path) -> np.ndarray:
    """The image at `path` as uint8 RGB [H, W, 3], upright as its EXIF orientation says.

    Grayscale, palette, RGBA (alpha dropped) and CMYK images are converted; the format is taken from the
    content, not the extension. Raises ``UnreadableImage`` naming the file when it cannot be decoded.
    """
    try:
        with Image.open(path) as image:
            image = ImageOps.exif_transpose(image)
            return np.asarray(image.convert("RGB"))
    except (OSError, SyntaxError, ValueError, Image.DecompressionBombError) as e:
        raise UnreadableImage(f"{path}: not a readable image ({e})") from e


def select_face(boxes, image_shape) -> int:
    """Index of the face to keep among `boxes` ([N, 4] x1, y1, x2, y2) in an image of `image_shape`:
    among the faces whose area is at least ``MIN_RELATIVE_AREA`` of the largest, the one whose centre is
    nearest the image centre (the largest, most central face)."""
    boxes = np.asarray(boxes, dtype=np.float64).reshape(-1, 4)
    if not len(boxes):
        raise ValueError("select_face needs at least one box")
    height, width = image_shape[:2]
    area = (boxes[:, 2] - boxes[:, 0]) * (boxes[:, 3] - boxes[:, 1])
    offset = np.hypot((boxes[:, 0] + boxes[:, 2]) / 2 - width / 2, (boxes[:, 1] + boxes[:, 3]) / 2 - height / 2)
    offset[area < MIN_RELATIVE_AREA * area.max()] = np.inf
    return int(np.argmin(offset))


def crop_face(image: np.ndarray, box, image_size: int, margin: int) -> np.ndarray:
    """The crop of `box` (x1, y1, x2, y2) enlarged by `margin` px in total, clipped to the image,
    resized to `image_size` x `image_size` uint8 RGB."""
    height, width = image.shape[:2]
    x1, y1, x2, y2 = (float(v) for v in box)
    left, top = int(max(np.floor(x1 - margin / 2), 0)), int(max(np.floor(y1 - margin / 2), 0))
    right, bottom = int(min(np.ceil(x2 + margin / 2), width)), int(min(np.ceil(y2 + margin / 2), height))
    if right <= left or bottom <= top:
        raise ValueError(f"box {box} lies outside the {width}x{height} image")
    crop = Image.fromarray(image[top:bottom, left:right])
    return np.asarray(crop.resize((image_size, image_size), Image.BILINEAR))


class FaceAligner:
    """MTCNN detection + face selection + crop; holds one detector (≈3 s to set up)."""

    def __init__(self, image_size: int = 160, margin: int = 32, **detector_settings):
        from mtcnn import MTCNN
        self.image_size = int(image_size)
        self.margin = int(margin)
        self.settings = {**DETECTOR_SETTINGS, **detector_settings}
        self._detector = MTCNN(stages="face_and_landmarks_detection", device="CPU:0")

    def detect(self, image: np.ndarray) -> np.ndarray:
        """Face boxes [N, 4] (x1, y1, x2, y2, in pixels) found in uint8 RGB `image`."""
        return self.detect_scored(image)[0]

    def detect_scored(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(face boxes [N, 4] as ``detect``, MTCNN's confidence of each [N])."""
        faces = self._detector.detect_faces(image, box_format="xyxy", **self.settings)
        return (np.array([f["box"] for f in faces], dtype=np.float64).reshape(-1, 4),
                np.array([f["confidence"] for f in faces], dtype=np.float64))

    def align(self, image: np.ndarray) -> tuple[np.ndarray, np.ndarray] | None:
        """(crop, chosen box) for uint8 RGB `image`, or ``None`` when no face is found."""
        boxes = self.detect(image)
        if not len(boxes):
            return None
        box = boxes[select_face(boxes, image.shape)]
        return crop_face(image, box, self.image_size, self.margin), box
