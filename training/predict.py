"""`predict(texts)` for Python callers, through the same pyfunc the registry serves."""

from __future__ import annotations

import functools

import pandas as pd

from training import MODEL_NAME

DEFAULT_MODEL_URI = f"models:/{MODEL_NAME}@champion"


@functools.lru_cache(maxsize=4)
def load_model(model_uri: str = DEFAULT_MODEL_URI, tracking_uri: str | None = None):
    """The pyfunc, found the way `tpc score` finds it: MLFLOW_TRACKING_URI, else `tracking_uri`, else the first
    `mlflow.db` in the working directory or its parents, else the one of the project the package is installed from.
    The store must exist (nothing is created); a model that cannot be found or loaded raises
    `training.modelref.ModelError` (a store that cannot be found: `training.tracking.TrackingError`), one paragraph
    each."""
    from training.modelref import load, needs_store, use_store

    if needs_store(model_uri):
        use_store(tracking_uri)
    return load(model_uri, "model_uri")


def predict(texts, model_uri: str = DEFAULT_MODEL_URI, ids=None, tracking_uri: str | None = None) -> list[dict]:
    """Score whole articles: one dict per text with topics, probabilities, Turkey's stance and the evidence."""
    if isinstance(texts, str):
        texts = [texts]
    df = pd.DataFrame({"text": list(texts)})
    if ids is not None:
        df["id"] = [str(i) for i in ids]
    out = load_model(model_uri, tracking_uri).predict(df)
    return out.astype(object).where(out.notna(), None).to_dict(orient="records")
