"""The import boundaries that keep scene jobs light: tiler/ never loads TensorFlow, and neither
does the client of jobs.infer (it reads bundle.json only; the workers load the model)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("module", ["jobs.infer", "jobs.tile", "mapping.scene", "tiler.run",
                                    "tiler.polygons",
                                    "unet.bundle", "unet.predict"])
def test_importing_does_not_load_tensorflow_or_keras(module):
    code = (f"import sys, {module}; "
            "print(sorted(m for m in ('tensorflow', 'keras') if m in sys.modules))")
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "[]"


def test_the_check_sees_tensorflow_when_it_is_loaded():
    code = "import sys, unet.model; print('keras' in sys.modules)"
    out = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                         check=True).stdout
    assert out.strip() == "True"


def test_tensorflow_imported_through_unet_quiet_prints_nothing_on_stderr():
    """A job's one-line error stays one line on CPUs where TensorFlow announces oneDNN."""
    code = ("import sys; from unet.quiet import import_tensorflow; tf = import_tensorflow(); "
            "tf.constant(1.0); sys.stderr.write('the only line\\n')")
    r = subprocess.run([sys.executable, "-c", code], cwd=REPO, capture_output=True, text=True,
                       check=True)
    assert r.stderr == "the only line\n"
