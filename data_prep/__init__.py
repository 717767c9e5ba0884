"""Data preparation run once per data set: face alignment and TensorFlow Datasets builders."""
