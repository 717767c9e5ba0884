"""PAENet: pack many face tasks into one compact TensorFlow/Keras network."""
from setuptools import find_packages, setup

setup(
    name="paenet",
    version="0.1.0",
    description="Packing and Expanding (PAE) continual learning of face tasks for TensorFlow 2 / Keras 3",
    long_description=open("README.md", encoding="utf-8").read(),
    long_description_content_type="text/markdown",
    packages=find_packages(include=["paenet", "paenet.*", "data_prep", "data_prep.*"]),
    python_requires=">=3.11",
    install_requires=[
        "tensorflow==2.21.*",
        "keras>=3.15,<4",
        "tensorflow-datasets>=4.9.10",
        # TFDS 4.9.10 imports it for any builder defined in a package but does not declare it
        # (tensorflow/datasets#11212).
        "importlib_resources>=6",
        # Reads IMDB-WIKI's MATLAB metadata (paenet.datasets.imdb_wiki).
        "scipy>=1.11",
        # tf.summary needs it and TensorFlow 2.21 no longer installs it.
        "tensorboard>=2.21",
        "numpy>=2.0",
        "absl-py>=2.0",
        # The LiteRT interpreter: checks paenet.export --litert's models (2.3.0 runs with TF 2.21, numpy 2).
        "ai-edge-litert>=2.3",
        # The headless build: the same cv2 API without the X11/OpenGL system libraries.
        "opencv-python-headless>=4.10",
        # TensorFlow 2.21 needs h5py < 3.15.
        "h5py<3.15",
        "mtcnn>=1.0",
        "tqdm>=4.60",
        # The report's plots (drawn on the Agg canvas: no display needed).
        "matplotlib>=3.8",
    ],
    extras_require={"test": ["pytest>=8"]},
)
