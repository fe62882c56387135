"""Pretrained text encoders that work offline, behind one small interface, with an embedding cache.

An encoder has an `id` (backend, model and version: the cache key and what a saved model records), a `dim`, and
`encode(texts) -> float32 array (n, dim)` with L2-normalised rows. Backends are optional extras of the package:
a missing one raises `MissingBackendError` naming the pip command that installs it.
"""

from __future__ import annotations

import importlib

import numpy as np

from training.encoders.cache import EmbeddingCache, text_digest
from training.errors import TPCError

# backend name -> (module, class, pyproject extra)
BACKENDS = {
    "spacy_vectors": ("training.encoders.spacy_vectors", "SpacyVectors", "spacy"),
    "use_multilingual": ("training.encoders.use", "FastUSE", "use"),
    "sentence_transformers": ("training.encoders.sentence_transformers", "LocalSentenceTransformer",
                              "sentence-transformers"),
}


class MissingBackendError(TPCError, ImportError):
    """An encoder backend whose optional dependencies are not installed; the message gives the pip command."""


def install_hint(backend: str) -> str:
    extra = BACKENDS[backend][2]
    return f'pip install "turkey-policy-classifiers[{extra}]"  (from a checkout: pip install -e ".[{extra}]")'


def missing(backend: str, what: str, exc: Exception | None = None) -> MissingBackendError:
    detail = f" ({exc})" if exc else ""
    return MissingBackendError(f"encoder {backend!r} needs {what}, which is not installed{detail}. "
                               f"Install it with: {install_hint(backend)}")


def get_encoder(backend: str, path: str | None = None, **options):
    """A ready encoder for `backend` ("spacy_vectors", "use_multilingual", "sentence_transformers")."""
    if backend not in BACKENDS:
        raise ValueError(f"model.encoder: {backend!r} is not one of {sorted(BACKENDS)}")
    module, cls, _ = BACKENDS[backend]
    return getattr(importlib.import_module(module), cls)(path, **options)


# Encoders are loaded once per process (USE weights and spaCy vectors take seconds and hundreds of MB); every
# estimator of a cross-validation shares them.
_LOADED: dict[tuple, object] = {}


def shared_encoder(backend: str, path: str | None = None):
    key = (backend, path)
    if key not in _LOADED:
        _LOADED[key] = get_encoder(backend, path)
    return _LOADED[key]


def embed(encoder, texts: list[str], cache_dir=None) -> np.ndarray:
    """Embeddings of `texts` (float32, n x dim), each distinct text encoded once and looked up in the cache
    (in memory, then on disk under `cache_dir` when given) before being encoded."""
    texts = list(texts)
    out = np.zeros((len(texts), encoder.dim), dtype=np.float32)
    if not texts:
        return out
    cache = EmbeddingCache.for_encoder(encoder.id, cache_dir)
    digests = [text_digest(t) for t in texts]
    found = cache.get_many(digests)
    todo: dict[str, str] = {}
    for d, t in zip(digests, texts):
        if d not in found and d not in todo:
            todo[d] = t
    if todo:
        vectors = np.asarray(encoder.encode(list(todo.values())), dtype=np.float32)
        new = dict(zip(todo, vectors))
        cache.put_many(new)
        found.update(new)
    for i, d in enumerate(digests):
        out[i] = found[d]
    return out


__all__ = ["BACKENDS", "EmbeddingCache", "MissingBackendError", "embed", "get_encoder", "install_hint",
           "shared_encoder", "text_digest"]
