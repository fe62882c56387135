"""The trained system as one object: both classifiers, thresholds, the article roll-up and the output schema.

Every consumer (the pyfunc, `predict`, `tpc score`, `mlflow models serve`, Spark) goes through
`Bundle.predict_frame`, so the roll-up and the schema exist once.
"""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pandas as pd

from training import STANCES, TOPICS
from training import models as families
from training.aggregate import article_features
from training.articles import Article, read_article
from training.lexicon import _pattern, count_matrix, shared_counts
from training.models.tfidf import shared_hashing
from training.scoring.schema import OutputSchema

MAX_ARTICLE_CHARS = 200_000  # longer text is cut there and flagged `truncated`
# Articles per classifier call inside predict_frame: a DataFrame of 100,000 articles scored in one call would hold
# the n-gram matrix of all their passages at once (gigabytes); per batch it holds 500 articles' worth. With the
# tfidf family an article's result does not depend on the batch it is in (tests/test_aggregate.py,
# tests/test_score.py); an encoder's micro-batches may change an embedding's last bits.
PREDICT_BATCH = 500


def output_columns(labels=TOPICS) -> list[str]:
    return OutputSchema(labels).columns


def rollup_stance(passage_stances: list[str]) -> str:
    """ANNOTATION.md: favor if some passage says favor and none against; against in the mirror case; mixed if both."""
    favor, against = "favor" in passage_stances, "against" in passage_stances
    return "mixed" if favor and against else "favor" if favor else "against" if against else "none"


class Bundle:
    def __init__(self, topic_model, stance_model, labels, thresholds, aggregator=None, lexicon=None, meta=None):
        self.topic_model = topic_model
        self.stance_model = stance_model
        self.labels = tuple(labels)
        self.thresholds = np.asarray(thresholds, dtype=float)
        if hasattr(topic_model, "set_thresholds"):  # the topic model's own predict() is then the passage decision
            topic_model.set_thresholds(self.thresholds)
        self.aggregator = aggregator
        self.lexicon = lexicon
        self.meta = meta or {}

    # -- scoring -------------------------------------------------------------------------------------------
    def cue_matrix(self, texts: list[str]) -> np.ndarray | None:
        groups = (self.lexicon or {}).get("topics")
        if not groups:
            return None
        return count_matrix(texts, [_pattern(tuple(groups.get(t, []))) for t in self.labels])

    def articles_decisions(self, Ps: list[np.ndarray], cues: list[np.ndarray | None]) -> tuple[np.ndarray, np.ndarray]:
        """(probabilities, decisions) per article and topic from each article's passage probabilities, in one
        roll-up call for all (per-article calls to the logistic regressions cost more than their arithmetic)."""
        prob = np.zeros((len(Ps), len(self.labels)))
        full = [i for i, P in enumerate(Ps) if len(P)]
        if self.aggregator is None:
            for i in full:
                prob[i] = Ps[i].max(0)
            return prob, prob >= self.thresholds
        rolled = np.zeros(len(Ps), dtype=bool)
        if full:
            feats = np.stack([article_features(Ps[i], self.thresholds, cues[i]) for i in full])
            prob[full] = self.aggregator.predict_proba(feats)
            rolled[full] = True
        # An article without passages keeps the plain rule on its zero scores.
        decided = np.where(rolled[:, None], prob >= self.aggregator.thresholds_, prob >= self.thresholds)
        return prob, decided

    def predict_articles(self, articles: list[Article]) -> list[dict]:
        # The two classifiers hash the same passages with the same vectorizer settings: count them once.
        with shared_hashing(), shared_counts():
            return self._predict_articles(articles)

    def _predict_articles(self, articles: list[Article]) -> list[dict]:
        texts = [p.text for a in articles for p in a.passages]
        P_all = self.topic_model.predict_proba(texts) if texts else np.zeros((0, len(self.labels)))
        cues_all = self.cue_matrix(texts) if texts else None
        bounds = np.cumsum([0] + [len(a.passages) for a in articles])
        Ps = [P_all[bounds[i]:bounds[i + 1]] for i in range(len(articles))]
        cues = [cues_all[bounds[i]:bounds[i + 1]] if cues_all is not None else None for i in range(len(articles))]
        probs, decisions = self.articles_decisions(Ps, cues)
        results, pairs, owners = [], [], []
        for a, P, prob, decided in zip(articles, Ps, probs, decisions):
            n = len(a.passages)
            row = {"id": a.id, "title": a.title, "date": a.date, "n_passages": n, "topics": []}
            for j, t in enumerate(self.labels):
                row[f"{t}_prob"] = float(prob[j])
                row[t] = bool(decided[j])
                row.update({f"{t}_stance": None, f"{t}_favor": None, f"{t}_against": None, f"{t}_none": None,
                            f"{t}_evidence": None})
                if decided[j] and n:
                    row["topics"].append(t)
                    carrying = np.flatnonzero(P[:, j] >= self.thresholds[j])
                    if len(carrying) == 0:
                        carrying = np.array([int(P[:, j].argmax())])
                    row[f"{t}_evidence"] = a.passages[int(P[:, j].argmax())].text
                    for k in carrying:
                        pairs.append([a.passages[int(k)].text, t])
                        owners.append((len(results), t))
            results.append(row)
        if pairs:
            S = self.stance_model.predict_proba(pairs)
            by_owner: dict[tuple[int, str], list[np.ndarray]] = {}
            for (i, t), s in zip(owners, S):
                by_owner.setdefault((i, t), []).append(s)
            for (i, t), probs in by_owner.items():
                probs = np.asarray(probs)
                mean = probs.mean(0)
                row = results[i]
                row[f"{t}_stance"] = rollup_stance([STANCES[k] for k in probs.argmax(1)])
                for k, s in enumerate(STANCES):
                    row[f"{t}_{s}"] = float(mean[k])
        return results

    def predict_frame(self, df: pd.DataFrame, max_chars: int = MAX_ARTICLE_CHARS) -> pd.DataFrame:
        """DataFrame with a `text` column (optional `id`) -> one row per input row, in order, with the schema of
        `output_columns`. A row that cannot be scored comes out with `error` set, never dropped."""
        if "text" not in df.columns:
            raise ValueError(f"input needs a `text` column; got columns {list(df.columns)}")
        ids = df["id"] if "id" in df.columns else pd.Series(range(len(df)), index=df.index)
        articles, slots, rows = [], [], []
        for pos, (raw_id, text) in enumerate(zip(ids.tolist(), df["text"].tolist())):
            rid = "" if raw_id is None or (isinstance(raw_id, float) and math.isnan(raw_id)) else str(raw_id)
            error = None
            if not isinstance(text, str):
                error = f"`text` is {'missing' if text is None or (isinstance(text, float) and math.isnan(text)) else type(text).__name__}, expected a string"
            elif not text.strip():
                error = "`text` is empty"
            if error:
                rows.append(self._error_row(rid, error))
                continue
            truncated = len(text) > max_chars
            article = read_article(text[:max_chars], id=rid)
            if not article.passages:
                rows.append(self._error_row(rid, "no text left after removing boilerplate"))
                continue
            articles.append(article)
            slots.append((pos, truncated))
            rows.append(None)
        results = [r for i in range(0, len(articles), PREDICT_BATCH)
                   for r in self.predict_articles(articles[i:i + PREDICT_BATCH])]
        for (pos, truncated), result in zip(slots, results):
            result["truncated"], result["error"] = truncated, None
            rows[pos] = result
        return pd.DataFrame(rows, columns=output_columns(self.labels))

    def _error_row(self, rid: str, error: str) -> dict:
        row = {c: None for c in output_columns(self.labels)}
        row.update({"id": rid, "n_passages": 0, "topics": [], "truncated": False, "error": error})
        for t in self.labels:
            row[t] = False
        return row

    # -- persistence (no pickle: skops with declared types, JSON, safetensors) -------------------------------
    def save(self, directory: str | Path) -> Path:
        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        families.save(self.topic_model, directory / "topic")
        families.save(self.stance_model, directory / "stance")
        if self.aggregator is not None:
            families.dump_skops(self.aggregator, directory / "aggregator.skops")
        spec = {"labels": list(self.labels), "thresholds": self.thresholds.tolist(), "lexicon": self.lexicon,
                "meta": self.meta, "has_aggregator": self.aggregator is not None}
        (directory / "bundle.json").write_text(json.dumps(spec, ensure_ascii=False, indent=1))
        return directory

    @classmethod
    def load(cls, directory: str | Path) -> "Bundle":
        directory = Path(directory)
        spec = json.loads((directory / "bundle.json").read_text())
        aggregator = families.load_skops(directory / "aggregator.skops") if spec["has_aggregator"] else None
        return cls(families.load(directory / "topic"), families.load(directory / "stance"), spec["labels"],
                   spec["thresholds"], aggregator, spec["lexicon"], spec["meta"])
