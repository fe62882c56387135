"""`predict(texts)` for Python callers, through the same pyfunc the registry serves."""

from __future__ import annotations

import functools

import pandas as pd

from training import MODEL_NAME

DEFAULT_MODEL_URI = f"models:/{MODEL_NAME}@champion"


@functools.lru_cache(maxsize=4)
def load_model(model_uri: str = DEFAULT_MODEL_URI, tracking_uri: str | None = None):
    import mlflow

    from training.tracking import tracking_uri as resolve_uri

    uri = resolve_uri(tracking_uri)
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    return mlflow.pyfunc.load_model(model_uri)


def predict(texts, model_uri: str = DEFAULT_MODEL_URI, ids=None, tracking_uri: str | None = None) -> list[dict]:
    """Score whole articles: one dict per text with topics, probabilities, Turkey's stance and the evidence."""
    if isinstance(texts, str):
        texts = [texts]
    df = pd.DataFrame({"text": list(texts)})
    if ids is not None:
        df["id"] = [str(i) for i in ids]
    out = load_model(model_uri, tracking_uri).predict(df)
    return out.astype(object).where(out.notna(), None).to_dict(orient="records")
