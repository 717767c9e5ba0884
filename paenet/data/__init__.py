"""Input data: preprocessing, splits and tf.data pipelines."""
