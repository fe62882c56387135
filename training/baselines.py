"""The model trained on the seed passages alone, measured leave-one-article-out: the yardstick the written corpus
must beat (5 articles cannot train two classifiers; this shows by how much)."""

from __future__ import annotations

import numpy as np

from training import STANCES
from training import models as families
from training.config import stance_model_config
from training.evaluate import stance_metrics, topic_metrics


def seeds_only_loao(cfg, seeds, lexicon, labels, prefix: str = "seedsonly") -> dict[str, float]:
    """Passage-level topic (threshold 0.5: no held-out data is left to tune one) and stance on gold topics."""
    articles = np.array([e.id.split("#")[0] for e in seeds.examples])
    Y = seeds.topic_matrix(labels)
    P = np.zeros(Y.shape)
    texts, topics, gold, owner = seeds.stance_pairs()
    pair_article = articles[np.asarray(owner, dtype=int)] if owner else np.array([])
    X = np.array([texts, topics], dtype=object).T.reshape(-1, 2)
    pred = np.empty(len(gold), dtype=object)
    for a in np.unique(articles):
        tr, te = articles != a, articles == a
        est = families.build("topic", cfg.model, lexicon, cfg.seed, labels)
        est.fit([t for t, m in zip(seeds.texts, tr) if m], Y[tr])
        P[te] = est.predict_proba([t for t, m in zip(seeds.texts, te) if m])
        ptr, pte = pair_article != a, pair_article == a
        if not pte.any():
            continue
        y_tr = np.asarray(gold)[ptr]
        if len(set(y_tr)) < 2:  # one stance class in the other articles: the only possible answer
            pred[pte] = y_tr[0] if len(y_tr) else "none"
            continue
        stance = families.build("stance", stance_model_config(cfg), lexicon, cfg.seed, labels).fit(X[ptr], y_tr)
        pred[pte] = np.asarray(STANCES)[stance.predict_proba(X[pte]).argmax(1)]
    metrics = topic_metrics(Y, (P >= 0.5).astype(int), labels, f"{prefix}_passage_topic")
    metrics.update(stance_metrics(list(gold), list(pred), f"{prefix}_stance"))
    return metrics
