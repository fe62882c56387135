"""The model `tpc score` scores with: the URI resolved and downloaded once by `training.modelref` (which owns URIs,
aliases, versions and the store), named the way the output rows and the resume check name it."""

from __future__ import annotations

import contextlib
import tempfile
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NamedTuple

from training.modelref import ModelError, check_path, download, needs_store, resolve, use_store


class WorkerSpec(NamedTuple):
    """What a worker needs to load the model once and label its rows; plain values, so it pickles to a process."""

    model_path: str
    model_name: str
    model_version: str
    max_chars: int
    fmt: str


@dataclass(frozen=True)
class ResolvedModel:
    uri: str
    name: str  # '' unless a registry URI
    version: str  # pinned: an alias resolves to the version it points to when the run starts
    path: str  # the local copy

    @property
    def display(self) -> str:
        return f"{self.name}/{self.version}" if self.name else self.uri

    def identity(self) -> dict:
        """What a resumed run must share with the interrupted one: the version, and the model's own uuid (a folder
        or run can be replaced in place)."""
        from mlflow.models import Model

        try:
            meta = Model.load(self.path)
        except Exception as exc:
            raise ModelError(f"--model {self.uri}: not an MLflow model ({' '.join(str(exc).split())[:300]}); give a "
                             "folder holding an MLmodel file, or a models:/ or runs:/ URI") from None
        return {"model": self.display, "model_uuid": meta.model_uuid}

    def worker_spec(self, max_chars: int, fmt: str) -> WorkerSpec:
        # Rows name a registered model by name and version; any other model by its URI and the run it came from.
        return WorkerSpec(self.path, self.name or self.uri, self.version if self.name else _run_id(self.path),
                          max_chars, fmt)


@contextlib.contextmanager
def resolved(model_uri: str, allow_code_drift: bool = False) -> Iterator[ResolvedModel]:
    """The model at `model_uri`, downloaded into a temporary folder that lasts as long as the block. A model whose
    logged predict code differs from the installed package is refused unless `allow_code_drift`."""
    check_path(model_uri, "--model")
    if needs_store(model_uri):
        use_store()  # an existing store only: scoring never creates an empty one
    name, version = resolve(model_uri, "--model")
    with tempfile.TemporaryDirectory(prefix="tpc-model-") as model_dir:
        model = ResolvedModel(model_uri, name, version, download(model_uri, name, version, model_dir, "--model"))
        if not allow_code_drift:
            check_code(model)
        yield model


def check_code(model: ResolvedModel) -> None:
    """Refuse a model that the installed package would not score as it was logged (and validated)."""
    from training.modelcode import code_drift

    drift = code_drift(model.path)
    if not drift:
        return
    what = f"version {model.version} of {model.name}" if model.name else model.uri
    commit = _logged_commit(model.path)
    raise ModelError(
        f"--model {model.uri}: {what} was logged with other predict code than the installed package: "
        f"{', '.join(drift[:6])}{' ...' if len(drift) > 6 else ''} differ, so its rows could differ from the ones it "
        f"was validated with. Score it with its own code (`mlflow models serve -m {model.uri} --env-manager local`, "
        f"or this package at {commit or 'the commit its run was logged at'}), or pass --allow-code-drift to score it "
        "with the installed code.")


def _logged_commit(local_model: str) -> str:
    import mlflow

    try:
        run_id = mlflow.models.get_model_info(local_model).run_id
        return mlflow.MlflowClient().get_run(run_id).data.tags.get("git_commit", "") if run_id else ""
    except Exception:
        return ""


def _run_id(local_model: str) -> str:
    import mlflow

    try:
        return mlflow.models.get_model_info(local_model).run_id or ""
    except Exception:
        return ""
