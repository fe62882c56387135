"""The labelling queue: rank unlabelled articles of a `tpc score` output by uncertainty and diversity.

The queue mixes three things (the usual active-learning recipe):
- uncertainty: an article's most uncertain topic, by the distance of its article-level probability to that
  topic's decision threshold in log-odds;
- diversity: maximal marginal relevance over the title and evidence passages (hashed word vectors), so the
  queue does not fill with twenty wire copies of one dispatch, taken round-robin over the topic each article is
  most uncertain about, so every topic gets its share;
- a random share of the remaining articles, which keeps the labelled sample's prevalence honest.
"""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pandas as pd

from training import TOPICS
from training.errors import TPCError

TEXT_COLUMNS = ("title",)  # plus every `<topic>_evidence`


class SuggestError(TPCError, ValueError):
    """A scored file that cannot be ranked; the message names the file and the missing column."""


def read_scored(path: str | Path) -> pd.DataFrame:
    path = Path(path)
    if not path.is_file():
        raise SuggestError(f"{path}: scored file not found (make one with `tpc score INPUT -o {path.name}`)")
    df = pd.read_parquet(path) if path.suffix == ".parquet" else pd.read_json(path, lines=True, dtype={"id": str})
    labels = [t for t in TOPICS if f"{t}_prob" in df.columns]
    if "id" not in df.columns or not labels:
        raise SuggestError(f"{path}: not a `tpc score` output (needs `id` and `<topic>_prob` columns, "
                           f"has {list(df.columns)[:8]})")
    if "error" in df.columns:
        df = df[df["error"].isna()]
    return df.reset_index(drop=True)


def decision_thresholds(df: pd.DataFrame, labels: list[str]) -> np.ndarray:
    """Each topic's decision threshold as the scores show it: midway between the lowest probability decided
    positive and the highest decided negative (0.5 when the file has no decision on one side)."""
    out = []
    for t in labels:
        p, d = df[f"{t}_prob"].astype(float), df[t].fillna(False).astype(bool) if t in df.columns else None
        if d is None or not d.any() or d.all():
            out.append(0.5)
            continue
        lo, hi = p[d].min(), p[~d & (p <= p[d].min())].max() if (~d & (p <= p[d].min())).any() else p[d].min()
        out.append(float((lo + hi) / 2))
    return np.asarray(out)


def uncertainty(df: pd.DataFrame, labels: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """Per article: the highest topic uncertainty and the index of that topic. A topic's uncertainty is 1 at its
    decision threshold and falls with the distance in log-odds (1 / (1 + |logit p - logit threshold|)): the
    articles the model is closest to deciding the other way, whatever its threshold."""
    P = np.clip(df[[f"{t}_prob" for t in labels]].to_numpy(dtype=float), 1e-6, 1 - 1e-6)
    tau = np.clip(decision_thresholds(df, labels), 1e-6, 1 - 1e-6)
    logit = np.log(P / (1 - P)) - np.log(tau / (1 - tau))
    U = 1.0 / (1.0 + np.abs(logit))
    return U.max(1), U.argmax(1)


def _vectors(df: pd.DataFrame, labels: list[str], bits: int = 16) -> np.ndarray:
    from sklearn.feature_extraction.text import HashingVectorizer

    cols = [c for c in (*TEXT_COLUMNS, *(f"{t}_evidence" for t in labels)) if c in df.columns]
    texts = df[cols].fillna("").astype(str).agg(" ".join, axis=1) if cols else df["id"].astype(str)
    vec = HashingVectorizer(n_features=2 ** bits, alternate_sign=False, norm="l2", ngram_range=(1, 1))
    return vec.transform(texts)


def likely_positive(df: pd.DataFrame, labels: list[str], margin: float) -> np.ndarray:
    """Articles with some topic at most `margin` log-odds below its decision threshold."""
    P = np.clip(df[[f"{t}_prob" for t in labels]].to_numpy(dtype=float), 1e-6, 1 - 1e-6)
    tau = np.clip(decision_thresholds(df, labels), 1e-6, 1 - 1e-6)
    return ((np.log(P / (1 - P)) - np.log(tau / (1 - tau))) >= -margin).any(1)


def _mmr_round_robin(pool, u, topic, X, n_topics: int, n: int, diversity: float) -> list[int]:
    """Up to `n` positions of `pool`, taking each topic's turn in order: the candidate of that topic with the best
    maximal-marginal-relevance score (its uncertainty against its similarity to what was already taken)."""
    chosen: list[int] = []
    max_sim = np.zeros(len(pool))
    per_topic = {k: [i for i in range(len(pool)) if topic[pool[i]] == k] for k in range(n_topics)}
    taken = np.zeros(len(pool), dtype=bool)
    k = 0
    while len(chosen) < n:
        candidates = [i for i in per_topic[k % n_topics] if not taken[i]]
        k += 1
        if not candidates:
            if not (~taken).any():
                break
            if all(not [i for i in per_topic[j] if not taken[i]] for j in per_topic):
                break
            continue
        cand = np.asarray(candidates)
        mmr = (1 - diversity) * u[pool[cand]] - diversity * max_sim[cand]
        best = int(cand[np.argmax(mmr)])
        taken[best] = True
        chosen.append(best)
        max_sim = np.maximum(max_sim, (X @ X[best].T).toarray().ravel())
    return chosen


def suggest(df: pd.DataFrame, n: int, exclude: set[str] = frozenset(), random_share: float = 0.2, seed: int = 0,
            pool_factor: int = 5, diversity: float = 0.5, positive_margin: float | None = None,
            topics: list[str] | None = None) -> pd.DataFrame:
    """The `n` articles to label next: (1 - random_share) by uncertainty + diversity, the rest at random.

    With `positive_margin`, only articles the model nearly or actually decides positive for some topic
    (`likely_positive`) are candidates: the retrieval of likely positives when a topic has too few labels.
    `topics` restricts the ranking to those topics (e.g. the one that lacks labels)."""
    if not 0 <= random_share <= 1:
        raise SuggestError(f"--random-share must be within [0, 1], got {random_share}")
    labels = [t for t in TOPICS if f"{t}_prob" in df.columns]
    if topics:
        unknown = sorted(set(topics) - set(labels))
        if unknown:
            raise SuggestError(f"--topics: {unknown} not among the scored topics {labels}")
        labels = [t for t in labels if t in topics]
    if positive_margin is not None:
        df = df[likely_positive(df, labels, positive_margin)]
    df = df[~df["id"].astype(str).isin(exclude)].drop_duplicates("id").reset_index(drop=True)
    n = min(n, len(df))
    n_random = int(round(n * random_share))
    u, topic = uncertainty(df, labels)
    order = np.argsort(-u, kind="stable")
    pool = order[: max(pool_factor * (n - n_random), n - n_random)]
    chosen = _mmr_round_robin(pool, u, topic, _vectors(df.iloc[pool], labels), len(labels), n - n_random,
                              diversity)
    picked = [int(pool[i]) for i in chosen]
    rest = np.setdiff1d(np.arange(len(df)), picked)
    rng = np.random.default_rng(seed)
    randoms = rng.choice(rest, size=min(n_random, len(rest)), replace=False).tolist() if len(rest) else []
    out = pd.DataFrame({
        "article_id": df["id"].astype(str).iloc[picked + randoms].to_numpy(),
        "sample": ["suggest:uncertainty"] * len(picked) + ["suggest:random"] * len(randoms),
        "uncertainty": np.round(u[picked + randoms], 4),
        "topic": [labels[topic[i]] for i in picked + randoms],
    })
    return out


def labelled_ids(paths: list[str]) -> set[str]:
    """Article ids already labelled or queued: `article_id` (or `id`) of every row of the given JSONL files."""
    ids: set[str] = set()
    for p in paths:
        for line in Path(p).read_text(encoding="utf-8").splitlines():
            if line.strip():
                row = json.loads(line)
                ids.add(str(row.get("article_id") or row.get("id")))
    return ids
