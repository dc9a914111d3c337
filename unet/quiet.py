"""Import TensorFlow without its C++ start-up lines on stderr.

TensorFlow 2.21 writes, from C++ and before any Python logging applies (``TF_CPP_MIN_LOG_LEVEL``
does not reach them), ``WARNING: All log messages before absl::InitializeLog() is called are
written to STDERR`` and an ``oneDNN custom operations are on`` notice, twice, on CPUs where
oneDNN is used. A job whose error is one line would print five. The import runs with file
descriptor 2 sent to a temporary file; those known lines are dropped and anything else the
import wrote is passed on unchanged.
"""

from __future__ import annotations

import os
import sys
import tempfile
from types import ModuleType

NOISE = ("WARNING: All log messages before absl::InitializeLog() is called",
         "oneDNN custom operations are on")


def import_tensorflow() -> ModuleType:
    """``import tensorflow`` (once per process), minus its start-up noise on stderr."""
    if "tensorflow" in sys.modules:
        return sys.modules["tensorflow"]
    sys.stderr.flush()
    saved = os.dup(2)
    with tempfile.TemporaryFile() as captured:
        os.dup2(captured.fileno(), 2)
        try:
            import tensorflow
        finally:
            os.dup2(saved, 2)
            os.close(saved)
            captured.seek(0)
            kept = [line for line in captured.read().decode(errors="replace").splitlines()
                    if not any(n in line for n in NOISE)]
            if kept:
                sys.stderr.write("\n".join(kept) + "\n")
    return tensorflow
