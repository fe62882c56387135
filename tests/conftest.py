"""Shared fixtures: a copy of the project's data in a temporary directory, a temporary MLflow store, and one
default pipeline trained there once per session (registered as turkey-policy@champion)."""

from __future__ import annotations

import contextlib
import os
import shutil
from pathlib import Path

import pytest
from hypothesis import settings
from threadpoolctl import threadpool_limits

# One BLAS/OpenMP thread per process: the tests run several trainings and servers side by side, and oversubscribed
# BLAS threads made one topic fit 20x slower (50 s vs 2.7 s, measured on this 2-core machine under load).
for _var in ("OPENBLAS_NUM_THREADS", "OMP_NUM_THREADS", "MKL_NUM_THREADS"):
    os.environ.setdefault(_var, "1")  # inherited by the `tpc` and server subprocesses the tests start
threadpool_limits(1)

# Hypothesis draws the same examples on every run, so the suite (and CI) goes red only when the code changes, and
# keeps no example database (tests never write into the repository). To hunt for new counterexamples:
#   python -m pytest tests/test_properties.py tests/test_fast_hashing.py --hypothesis-profile=explore
settings.register_profile("tpc", derandomize=True, database=None)
settings.register_profile("explore", derandomize=False, database=None, max_examples=2000)
settings.load_profile("tpc")

REPO = Path(__file__).resolve().parents[1]
SHARED = REPO.parent / "shared"
# OrangeSum is read from ../shared/data (never copied into the project): tests run in scratch copies of the project,
# so they name the data directory the way a user elsewhere would.
os.environ.setdefault("TPC_DATA_DIR", str(SHARED / "data"))
# Fewer folds and composite articles than the default config: same code path, a third of the time.
FAST = ["splits.n_folds=3", "article.composite_articles=150"]


@contextlib.contextmanager
def own_store(directory: Path, store: str = "mlflow.db"):
    """Run in `directory` with a SQLite MLflow store of its own there (yields its URI), as a user working in that
    directory would; the working directory, MLFLOW_TRACKING_URI and MLflow's process-wide URIs are put back after."""
    import mlflow

    old = (os.getcwd(), os.environ.get("MLFLOW_TRACKING_URI"), mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    uri = f"sqlite:///{Path(directory) / store}"
    os.environ["MLFLOW_TRACKING_URI"] = uri
    os.chdir(directory)
    try:
        yield uri
    finally:
        os.chdir(old[0])
        if old[1] is None:
            os.environ.pop("MLFLOW_TRACKING_URI", None)
        else:
            os.environ["MLFLOW_TRACKING_URI"] = old[1]
        mlflow.set_tracking_uri(old[2])
        mlflow.set_registry_uri(old[3])


def copy_project(dst: Path) -> Path:
    for name in ("configs", "data", "seeds"):
        shutil.copytree(REPO / name, dst / name)
    return dst


@pytest.fixture(scope="session")
def project(tmp_path_factory) -> Path:
    """A scratch copy of configs/, data/ and seeds/ (tests never write into the repository)."""
    return copy_project(tmp_path_factory.mktemp("project"))


@pytest.fixture(scope="session")
def trained(project):
    """Train the default pipeline once into a temporary SQLite MLflow store; yields the run result and store."""
    import mlflow

    from training.config import load_config, resolve
    from training.train import run

    with own_store(project) as uri:
        cfg = load_config("configs/default.yaml", FAST)
        result = run(cfg, resolve("configs/default.yaml", FAST), "configs/default.yaml")
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    with pytest.MonkeyPatch.context() as session:  # the session's tests read this store from wherever they run
        session.setenv("MLFLOW_TRACKING_URI", uri)
        yield {"result": result, "uri": uri, "dir": project, "config": cfg}


@pytest.fixture(scope="session")
def champion(trained):
    import mlflow

    return mlflow.pyfunc.load_model("models:/turkey-policy@champion")


@pytest.fixture(autouse=True)
def _restore_mlflow_uris():
    """Put MLflow's process-wide tracking and registry URIs back after each test: a test that trains in-process
    into its own store (tpc train sets them) must not point later tests' clients at that store."""
    import mlflow

    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    yield
    mlflow.set_tracking_uri(before[0])
    mlflow.set_registry_uri(before[1])
