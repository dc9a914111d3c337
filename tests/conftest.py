import os

os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "2")
os.environ.setdefault("KERAS_BACKEND", "tensorflow")


import pytest  # noqa: E402


@pytest.fixture(scope="session")
def small_model(tmp_path_factory):
    """The small trained bundle of tests/data/model, made once per session (read-only: tests
    that change a bundle make their own)."""
    from tests.data.model.data import make_bundle

    return make_bundle(tmp_path_factory.mktemp("small-model") / "m")


@pytest.fixture(scope="session")
def one_worker_cluster(tmp_path_factory):
    """cluster.yaml of an embedded cluster of one worker process with two threads, no
    dashboard."""
    path = tmp_path_factory.mktemp("cluster") / "cluster.yaml"
    path.write_text("local:\n  n_workers: 1\n  threads_per_worker: 2\n"
                    "  dashboard_address: null\n")
    return path
