"""Article-level topic decision from passage scores: a learned step, not "any passage above 0.5"."""

from __future__ import annotations

import numpy as np
from sklearn.base import BaseEstimator
from sklearn.linear_model import LogisticRegression


def article_features(P: np.ndarray, thresholds: np.ndarray, cues: np.ndarray | None) -> np.ndarray:
    """Per topic: max, mean of the top 2, mean, count and share above threshold, length, cue hits.

    P: (n_passages, n_topics) passage probabilities; cues: (n_passages, n_topics) lexicon cue counts or None.
    Returns (n_topics, n_features)."""
    n, L = P.shape
    if n == 0:
        return np.zeros((L, 8))
    top = -np.sort(-P, axis=0)
    above = (P >= thresholds).sum(0)
    cue_total = np.log1p(cues.sum(0)) if cues is not None else np.zeros(L)
    cue_share = (cues > 0).mean(0) if cues is not None else np.zeros(L)
    return np.column_stack([
        top[0], top[: min(2, n)].mean(0), P.mean(0), np.log1p(above), above / n,
        np.full(L, np.log1p(n)), cue_total, cue_share,
    ])


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
        cols = [np.full(len(feats), h) if isinstance(h, float) else h.predict_proba(feats[:, j])[:, 1]
                for j, h in enumerate(self.heads_)]
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
