"""The import boundaries that keep scene jobs light: tiler/ never loads TensorFlow, and neither
does the client of jobs.infer (it reads bundle.json only; the workers load the model)."""

import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent


@pytest.mark.parametrize("module", ["jobs.infer", "jobs.tile", "mapping.scene", "tiler.run",
                                    "products.polygons",
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


MUST_NOT_IMPORT = {"common": ("tiler", "products", "unet", "mapping", "jobs"),
                   "tiler": ("products", "mapping", "jobs", "unet"),
                   "products": ("mapping", "jobs", "unet"),
                   "unet": ("tiler", "products", "mapping", "jobs")}


def _imports(path: Path) -> set[str]:
    """The top-level packages a module imports (every import statement, at any depth)."""
    import ast

    found = set()
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found |= {alias.name.split(".")[0] for alias in node.names}
        elif isinstance(node, ast.ImportFrom) and node.level == 0 and node.module:
            found.add(node.module.split(".")[0])
    return found


@pytest.mark.parametrize("package", sorted(MUST_NOT_IMPORT))
def test_data_flows_one_way_between_the_packages(package):
    """tiler/ never imports products/, mapping/ or jobs/; products/ never mapping/ or jobs/."""
    modules = sorted((REPO / package).glob("*.py"))
    assert modules
    bad = {f"{m.name} imports {p}" for m in modules for p in _imports(m)
           if p in MUST_NOT_IMPORT[package]}
    assert not bad, sorted(bad)
