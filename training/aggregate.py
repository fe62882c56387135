"""Article-level topic decision from passage scores: a learned step, not "any passage above 0.5"."""

from __future__ import annotations

import re

import numpy as np
from scipy.special import expit
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression


N_FEATURES = 11


def article_features(P: np.ndarray, thresholds: np.ndarray, cues: np.ndarray | None) -> np.ndarray:
    """Per topic: max, mean of the top 2 and top 3, mean, count and share above threshold, length, cue hits, the
    best score among passages that carry a cue of the topic, and the lead passage's score.

    P: (n_passages, n_topics) passage probabilities; cues: (n_passages, n_topics) lexicon cue counts or None.
    Returns (n_topics, N_FEATURES)."""
    n, L = P.shape
    if n == 0:
        return np.zeros((L, N_FEATURES))
    top = -np.sort(-P, axis=0)
    above = (P >= thresholds).sum(0)
    cue_total = np.log1p(cues.sum(0)) if cues is not None else np.zeros(L)
    cue_share = (cues > 0).mean(0) if cues is not None else np.zeros(L)
    # A passage that scores high *and* names the topic's own vocabulary is better evidence than a high score on a
    # passage that only shares the theatre (a war, Russia, NATO); without a lexicon this is the plain max.
    cue_max = np.where(cues > 0, P, 0.0).max(0) if cues is not None else top[0]
    return np.column_stack([
        top[0], top[: min(2, n)].mean(0), top[: min(3, n)].mean(0), P.mean(0), np.log1p(above), above / n,
        np.full(L, np.log1p(n)), cue_total, cue_share, cue_max, P[0],
    ])


# Names of the theatres the topics live in: a no-topic passage that names one is "same-theatre" context (the
# war reported on every line of an explainer), one that names none is everyday news.
THEATRE = re.compile(
    r"(?<!\w)(?:russ|ukrain|kiev|kyiv|moscou|kremlin|poutine|zelensk|syri|damas|assad|idleb|alep|kurd|pkk|ypg|fds"
    r"|libye|libyen|tripoli|haftar|azerba|armeni|bakou|erevan|karabakh|gaza|israel|hamas|iran|irak|chypre|otan"
    r"|mer noire|crimee|soudan|somali|qatar|guerre|front|frappe|missile|armee|militaire|troupes|soldats)")


def is_theatre(texts) -> np.ndarray:
    from training.lexicon import fold

    return np.array([bool(THEATRE.search(fold(t))) for t in texts])


def composite_articles(pool, Y: np.ndarray, theatre: np.ndarray, n_articles: int, min_passages: int,
                       max_passages: int, rng: np.random.Generator) -> list[np.ndarray]:
    """Articles of 5-40 written passages (indices into Y) shaped like real ones.

    Half are about a topic: a few on-topic passages (often one) drowned in context, mostly from the same theatres;
    a third are explainers of a theatre with no topic at all (the case where "any passage above threshold" fails);
    the rest are everyday news. Passages are shuffled, so the on-topic sentence can be anywhere."""
    pool = np.asarray(pool)
    topical = pool[Y[pool].sum(1) > 0]
    same = pool[(Y[pool].sum(1) == 0) & theatre[pool]]
    plain = pool[(Y[pool].sum(1) == 0) & ~theatre[pool]]
    if len(same) == 0:
        same = plain
    if len(plain) == 0:
        plain = same
    if len(same) == 0:  # no off-topic passage at all: nothing realistic to build
        return []
    arts = []
    for _ in range(n_articles):
        n = int(rng.integers(min_passages, max_passages + 1))
        kind = rng.choice(["topic", "theatre", "everyday"], p=[0.5, 0.33, 0.17])
        k = min(n, int(rng.choice([1, 1, 1, 2, 2, 3, 4, 6])), len(topical)) if kind == "topic" else 0
        share_same = {"topic": 0.7, "theatre": 0.85, "everyday": 0.1}[kind]
        n_same = int(rng.binomial(n - k, share_same))
        chosen = np.r_[rng.choice(topical, k, replace=False),
                       rng.choice(same, n_same, replace=len(same) < n_same),
                       rng.choice(plain, n - k - n_same, replace=len(plain) < n - k - n_same)]
        rng.shuffle(chosen)
        arts.append(chosen.astype(int))
    return arts


class ArticleAggregator(BaseEstimator):
    """One logistic regression per topic over `article_features`, with a tuned decision threshold."""

    def __init__(self, labels=(), C=1.0):
        self.labels = labels
        self.C = C

    def fit(self, feats: np.ndarray, Y: np.ndarray):
        """feats: (n_articles, n_topics, n_features); Y: (n_articles, n_topics)."""
        from sklearn.model_selection import cross_val_predict

        self.heads_, self.thresholds_ = [], []
        for j in range(len(self.labels)):
            y = Y[:, j]
            if len(np.unique(y)) < 2:
                self.heads_.append(float(y[0]))
                self.thresholds_.append(0.5)
                continue
            head = LogisticRegression(C=self.C, max_iter=2000, class_weight="balanced")
            oof = cross_val_predict(head, feats[:, j], y, cv=min(5, int(min(y.sum(), (1 - y).sum()))),
                                    method="predict_proba")[:, 1]
            self.thresholds_.append(best_f1_threshold(y, oof))
            self.heads_.append(head.fit(feats[:, j], y))
        self.thresholds_ = np.asarray(self.thresholds_)
        return self

    def predict_proba(self, feats: np.ndarray) -> np.ndarray:
        # The logistic function of each head written out row by row (an elementwise product summed along each
        # row), not as one matrix product: BLAS gives a row slightly different last bits depending on how many
        # rows share the call, and scoring must give an article the same bytes in any chunk, with any workers.
        cols = []
        for j, h in enumerate(self.heads_):
            if isinstance(h, float):
                cols.append(np.full(len(feats), h))
                continue
            X = np.ascontiguousarray(feats[:, j])
            if h.coef_.shape != (1, X.shape[1]):  # binary heads over N_FEATURES, as fitted
                raise ValueError(f"roll-up head {j}: coefficients {h.coef_.shape} for features {X.shape}")
            cols.append(expit((X * h.coef_[0]).sum(axis=1) + h.intercept_[0]))
        return np.column_stack(cols)


def best_f1_threshold(y: np.ndarray, p: np.ndarray, floor: float = 0.05) -> float:
    """The threshold that maximizes F1 on (y, p), midway between neighbouring scores; 0.5 with no positives."""
    y = np.asarray(y).astype(int)
    if y.sum() == 0:
        return 0.5
    order = np.argsort(-p)
    ps, ys = p[order], y[order]
    tp = np.cumsum(ys)
    k = np.arange(1, len(ys) + 1)
    f1 = 2 * tp / (k + ys.sum())
    # only cut between distinct scores
    distinct = np.r_[ps[1:] != ps[:-1], True]
    f1 = np.where(distinct, f1, -1)
    i = int(np.argmax(f1))
    nxt = ps[i + 1] if i + 1 < len(ps) else 0.0
    return float(max(floor, (ps[i] + nxt) / 2))
