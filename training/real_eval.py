"""Quality on real text: article topics and Turkey's stance on the labelled OrangeSum splits, for any model.

A model here is anything with the scoring output schema: `Bundle.predict_frame`, a loaded pyfunc's `predict`, or
the keyword baseline below. The numbers are the ones a user of `tpc score` gets:
- article topics: each whole article scored, its decisions against the union of its passages' gold topics;
- Turkey's stance: every gold (passage, topic) pair of the articles that name Turkey, the passage scored as a
  one-passage article; a topic the model does not find there counts as stance `none` (what the user is told).
"""

from __future__ import annotations

from collections.abc import Callable

import numpy as np
import pandas as pd

from training import STANCES, TOPICS
from training.evaluate import stance_metrics, topic_metrics
from training.lexicon import _pattern, count_matrix
from training.real import RealArticle, article_gold, turkey_pairs

Predict = Callable[[pd.DataFrame], pd.DataFrame]


def _decisions(out: pd.DataFrame, labels) -> np.ndarray:
    return np.column_stack([[int(bool(v)) if pd.notna(v) else 0 for v in out[t]] for t in labels])


def real_metrics(predict: Predict, arts: list[RealArticle], prefix: str, labels=TOPICS) -> dict[str, float]:
    """`{prefix}_article_topic_*` (per-topic precision/recall/F1, macro-F1) and `{prefix}_turkey_stance_*`."""
    labels = tuple(labels)
    if not arts:
        return {}
    out = predict(pd.DataFrame({"id": [a.id for a in arts], "text": [a.text for a in arts]}))
    metrics = topic_metrics(article_gold(arts, labels), _decisions(out, labels), labels, f"{prefix}_article_topic")
    texts, topics, gold = turkey_pairs(arts)
    if texts:
        uniq = list(dict.fromkeys(texts))
        pout = predict(pd.DataFrame({"id": [str(i) for i in range(len(uniq))], "text": uniq}))
        row = {t: i for i, t in enumerate(uniq)}
        pred = []
        for text, topic in zip(texts, topics):
            r = pout.iloc[row[text]]
            s = r[f"{topic}_stance"] if bool(r[topic]) else "none"
            pred.append(s if s in STANCES else "none")
        metrics.update(stance_metrics(gold, pred, f"{prefix}_turkey_stance"))
        metrics[f"{prefix}_turkey_pairs"] = float(len(gold))
    metrics[f"{prefix}_articles"] = float(len(arts))
    return metrics


class KeywordBaseline:
    """The lexicon's cues as a regex: an article has a topic when a passage names one of its cues; Turkey's stance
    is `against` when that passage also names an against cue and Turkey, `favor` with a favor cue and Turkey."""

    def __init__(self, lexicon: dict, labels=TOPICS):
        self.labels = tuple(labels)
        self.topic_patterns = [_pattern(tuple(lexicon["topics"].get(t, []))) for t in self.labels]
        stance = lexicon.get("stance", {})
        self.against, self.favor, self.turkey = (_pattern(tuple(stance.get(k, []))) for k in ("against", "favor", "turkey"))

    def _stance(self, passage_counts: np.ndarray) -> str:
        against, favor, turkey = passage_counts
        if not turkey:
            return "none"
        return "against" if against else "favor" if favor else "none"

    def predict_frame(self, df: pd.DataFrame) -> pd.DataFrame:
        from training.articles import read_article

        rows = []
        for rid, text in zip(df["id"], df["text"]):
            passages = [p.text for p in read_article(text or "").passages]
            C = count_matrix(passages, self.topic_patterns) if passages else np.zeros((0, len(self.labels)))
            S = count_matrix(passages, [self.against, self.favor, self.turkey]) if passages else np.zeros((0, 3))
            row = {"id": rid}
            for j, t in enumerate(self.labels):
                hit = np.flatnonzero(C[:, j] > 0)
                row[t], row[f"{t}_prob"] = bool(len(hit)), float(bool(len(hit)))
                stances = {self._stance(S[k]) for k in hit}
                row[f"{t}_stance"] = None if not len(hit) else (
                    "mixed" if {"favor", "against"} <= stances else "against" if "against" in stances
                    else "favor" if "favor" in stances else "none")
            rows.append(row)
        return pd.DataFrame(rows)


def stance_given_topics(bundle, arts: list[RealArticle], prefix: str) -> dict[str, float]:
    """Turkey's stance with the gold topics given (the stance classifier alone, no topic misses):
    `{prefix}_turkey_stance_given_topic_*`. Needs the model's own stance classifier (a Bundle)."""
    texts, topics, gold = turkey_pairs(arts)
    if not texts:
        return {}
    pred = bundle.stance_model.predict(np.array([texts, topics], dtype=object).T.reshape(-1, 2))
    return stance_metrics(gold, list(pred), f"{prefix}_turkey_stance_given_topic")
