"""`tfidf_linear`: TF-IDF word + character n-grams (+ cue-lexicon counts) and logistic regression."""

from __future__ import annotations

import contextlib
import contextvars
from typing import Literal

import numpy as np
from pydantic import Field
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin
from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
from sklearn.linear_model import LogisticRegression
from sklearn.pipeline import FeatureUnion, Pipeline

from training import STANCES, TOPICS
from training.lexicon import LexiconFeatures
from training.models.base import Family, StanceClassifier, StrictConfig, TopicClassifier, qualname
from training.models.fast_hashing import hashed_counts
from training.models.focus import focus_text, mark_scope, topic_block


class SeenColumns(BaseEstimator, TransformerMixin):
    """Keep the hashed columns seen in at least `min_df` training documents (an int array, not a vocabulary),
    so the linear model is as small as with a vocabulary and fits as fast."""

    def __init__(self, min_df=1):
        self.min_df = min_df

    def fit(self, X, y=None):
        df = np.asarray((sparse.csr_matrix(X) > 0).sum(0)).ravel()
        self.columns_ = np.flatnonzero(df >= self.min_df).astype(np.int32)
        return self

    def transform(self, X):
        return sparse.csr_matrix(X)[:, self.columns_]


def text_features(word_ngrams=(1, 2), char_ngrams=(2, 5), hash_bits=18, sublinear_tf=True,
                  lexicon_groups=None, min_df=1) -> FeatureUnion:
    """Hashed word and char_wb n-gram counts re-weighted by TF-IDF, plus lexicon cue counts.

    Hashing keeps no vocabulary: the saved model stays small and fast to load (a 200k-term vocabulary took
    seconds and 80 MB in skops' JSON schema), and scoring needs no dictionary look-ups."""
    def hashed(**kw):
        return Pipeline([("hash", HashingVectorizer(n_features=2 ** hash_bits, alternate_sign=False, norm=None,
                                                    lowercase=True, **kw)),
                         ("seen", SeenColumns(min_df=min_df)),
                         ("tfidf", TfidfTransformer(sublinear_tf=sublinear_tf))])

    parts = [("word", hashed(ngram_range=tuple(word_ngrams), strip_accents="unicode"))]
    if char_ngrams:
        parts.append(("char", hashed(analyzer="char_wb", ngram_range=tuple(char_ngrams))))
    if lexicon_groups:
        parts.append(("lexicon", LexiconFeatures(groups=lexicon_groups)))
    return FeatureUnion(parts)


# Hashed n-gram counts shared within one scoring call (`shared_hashing`): the topic model hashes every passage and
# the stance model hashes the topic-carrying ones again with the same vectorizer settings (about 80% of the
# passages of an article), so its second hashing of the same text is a row look-up. Only counts are shared: each
# model keeps its own fitted column selection and IDF weights. A context variable, so concurrent predictions in
# threads (a threaded server) each see their own memo, never another's.
_HASH_MEMO: contextvars.ContextVar[dict | None] = contextvars.ContextVar("tpc_hash_memo", default=None)


@contextlib.contextmanager
def shared_hashing():
    """Within this block, `transform_texts` hashes each (vectorizer settings, text) once. Each block has its own
    memo, dropped at its end (a memo kept across batches would hold every batch's matrices)."""
    token = _HASH_MEMO.set({})
    try:
        yield
    finally:
        _HASH_MEMO.reset(token)


def _hash_key(vectorizer: HashingVectorizer) -> tuple:
    return tuple(sorted((k, repr(v)) for k, v in vectorizer.get_params().items()))


def _memo_hash(vectorizer: HashingVectorizer, texts: list[str]) -> sparse.csr_matrix:
    memo = _HASH_MEMO.get()
    if memo is None or not texts:
        return hashed_counts(vectorizer, texts)
    key = _hash_key(vectorizer)
    rows, H = memo.setdefault(key, ({}, None))
    missing = list(dict.fromkeys(t for t in texts if t not in rows))
    if missing:
        new = hashed_counts(vectorizer, missing)
        for t in missing:
            rows[t] = len(rows)
        H = new if H is None else sparse.vstack([H, new]).tocsr()
        memo[key] = (rows, H)
    return H[[rows[t] for t in texts]]


def transform_texts(union: FeatureUnion, texts: list[str], fit: bool = False):
    """`union.transform(texts)` (or `fit_transform` when `fit`; the same matrix), with hashed counts from
    `hashed_counts` (numpy character n-grams) instead of scikit-learn's string-at-a-time analyzer, which was most
    of a fit's and a scoring's time, taken from the `shared_hashing` memo when it is active."""
    if union.transformer_weights is not None:
        return union.fit_transform(texts) if fit else union.transform(texts)
    blocks = []
    for _, part in union.transformer_list:
        if isinstance(part, Pipeline) and isinstance(part.steps[0][1], HashingVectorizer):
            part, inputs = part[1:], _memo_hash(part.steps[0][1], texts)
        else:
            inputs = texts
        blocks.append(part.fit_transform(inputs) if fit else part.transform(inputs))
    return sparse.hstack(blocks).tocsr()


def fit_transform_texts(union: FeatureUnion, texts: list[str]):
    return transform_texts(union, texts, fit=True)


def fit_label_heads(F, Y, C, class_weight, max_iter, random_state, tol=1e-4) -> list:
    """One logistic regression per label column of Y; a label absent (or always present) in this fit becomes its
    constant probability."""
    heads = []
    for j in range(Y.shape[1]):
        if len(np.unique(Y[:, j])) < 2:
            heads.append(float(Y[0, j]) if len(Y) else 0.0)
            continue
        head = LogisticRegression(C=C, class_weight=class_weight, max_iter=max_iter, random_state=random_state, tol=tol)
        heads.append(head.fit(F, Y[:, j]))
    return heads


def stance_proba(head, F) -> np.ndarray:
    """A fitted stance classifier's probabilities in the fixed STANCES order, whatever classes its fit saw."""
    proba = head.predict_proba(F)
    out = np.zeros((F.shape[0], len(STANCES)))
    for j, c in enumerate(head.classes_):
        out[:, STANCES.index(c)] = proba[:, j]
    return out


def predict_label_heads(heads, F) -> np.ndarray:
    cols = [np.full(F.shape[0], h) if isinstance(h, float) else h.predict_proba(F)[:, 1] for h in heads]
    return np.column_stack(cols) if cols else np.zeros((F.shape[0], 0))


class _TfidfLinear:
    """The settings both tf-idf estimators share (scikit-learn reads the parameters off `__init__`)."""

    def __init__(self, labels=TOPICS, word_ngrams=(1, 2), char_ngrams=(2, 5), hash_bits=18, min_df=1,
                 sublinear_tf=True, C=4.0, class_weight="balanced", max_iter=2000, lexicon=None, random_state=0,
                 tol=1e-3):
        self.labels = labels
        self.tol = tol
        self.word_ngrams = word_ngrams
        self.char_ngrams = char_ngrams
        self.hash_bits = hash_bits
        self.min_df = min_df
        self.sublinear_tf = sublinear_tf
        self.C = C
        self.class_weight = class_weight
        self.max_iter = max_iter
        self.lexicon = lexicon
        self.random_state = random_state


class TfidfLinearTopic(_TfidfLinear, TopicClassifier):
    """Multi-label topic classifier: one logistic regression per topic over shared TF-IDF features."""

    _fitted_attr = "heads_"

    def fit(self, X, Y):
        Y = np.asarray(Y)
        groups = (self.lexicon or {}).get("topics")
        self.features_ = text_features(self.word_ngrams, self.char_ngrams, self.hash_bits,
                                       self.sublinear_tf, groups, self.min_df)
        F = fit_transform_texts(self.features_, list(X))
        self.heads_ = fit_label_heads(F, Y, self.C, self.class_weight, self.max_iter, self.random_state, self.tol)
        return self

    def _predict_proba(self, X) -> np.ndarray:
        return predict_label_heads(self.heads_, transform_texts(self.features_, list(X)))


class TfidfLinearStance(_TfidfLinear, StanceClassifier):
    """Turkey's stance toward a topic, from (passage, topic) pairs.

    X is a 2-column array of [text, topic]. The text is represented twice: as a whole, and as the sentences that
    speak of the topic placed in a block of features owned by that topic, so one linear model learns stance cues
    shared by all topics and cues specific to each (feature augmentation); stance cue counts come from the lexicon.
    """

    _fitted_attr = "head_"

    def __init__(self, labels=TOPICS, word_ngrams=(1, 2), char_ngrams=(2, 5), hash_bits=18, min_df=1,
                 sublinear_tf=True, C=4.0, class_weight="balanced", max_iter=2000, lexicon=None, random_state=0,
                 scope_features=True, structure="flat", tol=1e-3):
        super().__init__(labels, word_ngrams, char_ngrams, hash_bits, min_df, sublinear_tf, C, class_weight,
                         max_iter, lexicon, random_state, tol)
        self.scope_features = scope_features
        self.structure = structure

    def _features(self, X, fit=False):
        X = np.asarray(X, dtype=object).reshape(-1, 2)
        texts, topics = list(X[:, 0]), list(X[:, 1])
        focus = [focus_text(t, topic, self.lexicon) for t, topic in zip(texts, topics)]
        parts = [self.whole_, self.local_] + ([self.scope_] if self.scope_features else [])
        inputs = [texts, focus] + ([[mark_scope(f) for f in focus]] if self.scope_features else [])
        blocks = [transform_texts(p, x, fit) for p, x in zip(parts, inputs)]
        blocks[1] = topic_block(blocks[1], topics, self.labels)
        return sparse.hstack(blocks).tocsr()

    def _head(self):
        return LogisticRegression(C=self.C, class_weight=self.class_weight, max_iter=self.max_iter, tol=self.tol,
                                  random_state=self.random_state)

    def fit(self, X, y):
        if self.structure not in ("flat", "hierarchical"):
            raise ValueError(f"structure: {self.structure!r} is not 'flat' or 'hierarchical'")
        groups = (self.lexicon or {}).get("stance")
        self.whole_ = text_features(self.word_ngrams, self.char_ngrams, self.hash_bits,
                                    self.sublinear_tf, groups, self.min_df)
        self.local_ = text_features(self.word_ngrams, None, self.hash_bits, self.sublinear_tf, groups, self.min_df)
        # Negation/condition/holder-marked tokens of the focus sentences (see focus.mark_scope).
        self.scope_ = text_features(self.word_ngrams, None, self.hash_bits, self.sublinear_tf, None, self.min_df)
        F = self._features(X, fit=True)
        y = np.asarray(y)
        self.head_ = self._head().fit(F, y) if self.structure == "flat" else None
        if self.structure == "hierarchical":
            # Two questions with different evidence: does the passage state a position at all (none vs stance),
            # and which one (favor vs against, learned only on passages that state one).
            stated = y != "none"
            self.stated_ = self._head().fit(F, stated) if 0 < stated.sum() < len(y) else float(stated.mean())
            sides = y[stated]
            self.side_ = self._head().fit(F[stated], sides == "favor") if len(set(sides)) == 2 else \
                float(np.mean(sides == "favor")) if len(sides) else 0.5
        return self

    def _predict_proba(self, X) -> np.ndarray:
        F = self._features(X)
        if self.structure == "hierarchical":
            def p1(head):
                return np.full(F.shape[0], head) if isinstance(head, float) else head.predict_proba(F)[:, 1]

            out = np.zeros((F.shape[0], len(STANCES)))
            stated, favor = p1(self.stated_), p1(self.side_)
            out[:, 0], out[:, 1], out[:, 2] = stated * favor, stated * (1 - favor), 1 - stated
            return out
        return stance_proba(self.head_, F)


class TfidfLinearConfig(StrictConfig):
    family: Literal["tfidf_linear"] = "tfidf_linear"
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] | None = (2, 5)
    hash_bits: int = Field(18, ge=10, le=24)  # 2**hash_bits hashed n-gram features per analyzer
    min_df: int = Field(1, ge=1)  # keep n-grams seen in at least this many training passages
    sublinear_tf: bool = True
    C: float = Field(4.0, gt=0)
    class_weight: Literal["balanced"] | None = "balanced"
    max_iter: int = 2000
    # the solver's stopping tolerance: 1e-3 halves the fits on the real corpus (24k passages) next to 1e-4
    tol: float = Field(1e-3, gt=0)
    use_lexicon: bool = True
    # stance only: negation/condition/holder-marked tokens (models/focus.mark_scope); none-vs-stance then
    # favor-vs-against ("hierarchical") or one three-way model ("flat")
    scope_features: bool = True
    structure: Literal["flat", "hierarchical"] = "flat"


# Types a fitted estimator of the tf-idf features holds beyond skops' defaults (embedding_linear reuses them).
FEATURE_TYPES = (qualname(SeenColumns), qualname(LexiconFeatures))
FAMILY = Family("tfidf_linear", TfidfLinearConfig, TfidfLinearTopic, TfidfLinearStance,
                trusted=(qualname(TfidfLinearTopic), qualname(TfidfLinearStance)) + FEATURE_TYPES, parallel_fits=True)
