"""Importing TensorFlow and Keras without matplotlib, for processes that draw nothing.

Keras imports ``matplotlib.pyplot`` whenever matplotlib is installed
(``keras/src/visualization/plot_image_gallery.py``: ``try: import matplotlib.pyplot``, reached
from ``keras/__init__.py`` through ``keras.src.visualization``), and ``import tensorflow`` imports
Keras. No option or environment variable turns that off. A scene-job worker process draws no
figure, yet would pay about a second for pyplot when it loads the model (measured on 2 cores:
the worker's imports, unet.predict then TensorFlow, Keras and the loss, took 6.43 s (median of 7
fresh processes) with pyplot and 5.42 s without; ``-X importtime`` gives pyplot 0.84-0.89 s).

Within ``matplotlib_kept_out()``, ``import matplotlib`` fails at once with ImportError, which
Keras catches (its two plotting helpers are then unavailable in that process); afterwards
matplotlib imports normally again. Importing this module imports nothing heavy.
"""

from __future__ import annotations

import sys
from collections.abc import Iterator
from contextlib import contextmanager


@contextmanager
def matplotlib_kept_out() -> Iterator[None]:
    """Make ``import matplotlib`` (and every submodule) raise ImportError within the block.

    A matplotlib already imported is left alone, and so is an enclosing block's. Meant for the
    first import of TensorFlow or Keras in a process, e.g. a worker loading the model:

        with matplotlib_kept_out():
            model, bundle = load_bundle(model_dir)
    """
    if "matplotlib" in sys.modules:  # imported already, or kept out by an enclosing block
        yield
        return
    sys.modules["matplotlib"] = None  # the import system's "known missing" marker
    try:
        yield
    finally:
        if "matplotlib" in sys.modules and sys.modules["matplotlib"] is None:
            del sys.modules["matplotlib"]
