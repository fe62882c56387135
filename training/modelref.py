"""Model URIs for the commands that read a model (`tpc score`, `tpc evaluate`, `tpc promote`, `training.predict`):
find the store (`use_store`, called once by each of them), pin an alias to its version, download and load. Every
failure is a `ModelError`: one paragraph that names the URI, what went wrong and the fix, never a traceback (the
command line exits 2 on it)."""

from __future__ import annotations

import contextlib
import re
import warnings
from pathlib import Path

from training.errors import TPCError

REGISTRY = "models:/"
EXAMPLE = "models:/turkey-policy@champion"
FORMS = (f"a registered model is models:/NAME@ALIAS or models:/NAME/VERSION (e.g. {EXAMPLE}); a run's model is "
         "runs:/RUN_ID/model; a model folder is its path (e.g. models/turkey-policy)")


class ModelError(TPCError, ValueError):
    """A model that cannot be resolved or loaded; the message is one paragraph with the fix."""


TYPE_HINT_ADVICE = "Add type hints to the `predict` method"


@contextlib.contextmanager
def quiet_loading():
    """Drop MLflow's advice to add type hints to the pyfunc's `predict` (its signature is explicit), printed on every
    load. MLflow forces that warning through its own filter, so it is dropped where warnings are shown; every other
    warning still is."""
    previous = warnings.showwarning

    def show(message, category, filename, lineno, file=None, line=None):
        if TYPE_HINT_ADVICE not in str(message):
            previous(message, category, filename, lineno, file, line)

    warnings.showwarning = show
    try:
        yield
    finally:
        warnings.showwarning = previous


def _why(exc: BaseException) -> str:
    text = getattr(exc, "message", None) or str(exc) or type(exc).__name__
    text = " ".join(str(text).split())
    return text if len(text) <= 400 else text[:397] + "..."


def has_scheme(uri: str) -> bool:
    return bool(re.match(r"^[a-zA-Z][a-zA-Z0-9+.-]*:/", uri))


def needs_store(uri: str) -> bool:
    """Whether the URI is looked up in an MLflow store (registry or run), rather than read from a folder."""
    return uri.startswith((REGISTRY, "runs:/"))


def use_store(config_uri: str | None = None) -> str:
    """Point MLflow at the existing store (see `tracking.existing_store`); nothing is created."""
    import mlflow

    from training.tracking import check_reachable, existing_store

    uri = existing_store(config_uri)
    check_reachable(uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return uri


def check_path(model_uri: str, what: str) -> None:
    """A URI without a scheme is a local folder: say so when it is not one (a bare model name ends up here)."""
    if has_scheme(model_uri) or Path(model_uri).exists():
        return
    raise ModelError(f"{what} {model_uri}: no such model folder, and not a model URI; {FORMS}.")


def resolve(model_uri: str, what: str = "--model") -> tuple[str, str]:
    """(name, version) of a registry URI (an alias is pinned to the version it points to now); ('', uri) for any
    other URI (a run's model, a logged model id models:/m-..., a folder)."""
    check_path(model_uri, what)
    if not model_uri.startswith(REGISTRY):
        return "", model_uri
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    ref = model_uri[len(REGISTRY):].rstrip("/")
    if "@" not in ref and "/" not in ref:
        return "", model_uri  # a logged model id (models:/m-...), not a registered version
    import mlflow

    store = mlflow.get_registry_uri()
    client = MlflowClient()
    if "@" in ref:
        name, alias = ref.split("@", 1)
        try:
            return name, str(client.get_model_version_by_alias(name, alias).version)
        except MlflowException as exc:
            raise ModelError(f"{what} {model_uri}: no version of {name!r} holds @{alias} in the store {store} "
                             f"({_why(exc)}); train and register one (tpc train configs/default.yaml), or name an "
                             f"existing alias or version; {FORMS}.") from None
    name, _, version = ref.rpartition("/")
    if not version.isdigit():
        raise ModelError(f"{what} {model_uri}: {version!r} is not a version number; {FORMS}.")
    try:
        client.get_model_version(name, version)
    except MlflowException as exc:
        raise ModelError(f"{what} {model_uri}: version {version} of {name!r} is not registered in the store {store} "
                         f"({_why(exc)}); name a registered version or an alias; {FORMS}.") from None
    return name, version


def download(model_uri: str, name: str, version: str, dst: str, what: str = "--model") -> str:
    """A local copy of the model (a folder is used in place); a registry URI is fetched at the pinned version."""
    import mlflow

    uri = f"{REGISTRY}{name}/{version}" if name else model_uri
    if Path(uri).exists():
        return uri
    try:
        return mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst)
    except Exception as exc:  # any failure to fetch the model is the user's URI or store, said in one paragraph
        raise ModelError(f"{what} {model_uri}: cannot download the model ({_why(exc)}); {FORMS}.") from None


def load(model_uri: str, what: str = "--model"):
    """`mlflow.pyfunc.load_model`, with every failure (URI, store, files, Python dependencies) as a ModelError."""
    import mlflow

    resolve(model_uri, what)  # a missing alias or version is said plainly, before MLflow's own message
    try:
        with quiet_loading():
            return mlflow.pyfunc.load_model(model_uri)
    except Exception as exc:
        raise ModelError(f"{what} {model_uri}: cannot load the model ({type(exc).__name__}: {_why(exc)}); "
                         f"{FORMS}.") from None


def labels_of(model) -> tuple[str, ...]:
    """The topics a loaded pyfunc model scores, read from its output signature (a model trained on other labels
    is measured and shown on its own labels, not on the package's default ones)."""
    from training.scoring.schema import OutputSchema

    outputs = model.metadata.get_output_schema()
    if outputs is None:
        raise ModelError("the model has no output signature: score with a model logged by this project")
    return OutputSchema.of(outputs.input_names()).labels
