"""Entry points (python -m jobs.NAME): they compose tiler/ and unet/ and load cluster.yaml."""

import os

# TensorFlow's C++ start-up chatter hides the jobs' own output; set before any TF import, and
# inherited by the Dask worker processes the jobs start.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
