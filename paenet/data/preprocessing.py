"""Image preprocessing shared by every input path: FaceNet's fixed standardisation."""
import tensorflow as tf


def fixed_standardization(images):
    """(x - 127.5) / 128 as float32: FaceNet 2018 models' input scaling (uint8 or float input)."""
    return (tf.cast(images, tf.float32) - 127.5) / 128.0
