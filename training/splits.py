"""Folds that do not leak: grouped by event, near-duplicates merged into one group, multi-label stratified;
or temporal (train on older, test on newer)."""

from __future__ import annotations

import datetime
import re

import numpy as np
from datasketch import MinHash, MinHashLSH
from iterstrat.ml_stratifiers import MultilabelStratifiedKFold


class _UnionFind:
    def __init__(self, n: int):
        self.parent = list(range(n))

    def find(self, i: int) -> int:
        while self.parent[i] != i:
            self.parent[i] = self.parent[self.parent[i]]
            i = self.parent[i]
        return i

    def union(self, a: int, b: int) -> None:
        self.parent[self.find(a)] = self.find(b)


def _shingles(text: str, n: int = 3) -> set[str]:
    words = re.findall(r"\w+", text.lower())
    return {" ".join(words[i:i + n]) for i in range(max(1, len(words) - n + 1))}


def near_duplicate_pairs(texts: list[str], threshold: float = 0.5, num_perm: int = 128, seed: int = 1):
    """Pairs (i, j) whose word-3-gram Jaccard similarity is at least `threshold` (MinHash LSH, then verified)."""
    lsh = MinHashLSH(threshold=threshold, num_perm=num_perm)
    shingles = [_shingles(t) for t in texts]
    pairs = []
    for i, sh in enumerate(shingles):
        m = MinHash(num_perm=num_perm, seed=seed)
        m.update_batch([s.encode("utf-8") for s in sh])
        for j in lsh.query(m):
            jac = len(sh & shingles[j]) / max(1, len(sh | shingles[j]))
            if jac >= threshold:
                pairs.append((j, i))
        lsh.insert(i, m)
    return pairs


def leak_free_groups(texts: list[str], events: list[str], threshold: float = 0.5) -> np.ndarray:
    """A group id per passage: passages of one event, or nearly the same text, share a group."""
    uf = _UnionFind(len(texts))
    first: dict[str, int] = {}
    for i, ev in enumerate(events):
        if ev in first:
            uf.union(i, first[ev])
        else:
            first[ev] = i
    for i, j in near_duplicate_pairs(texts, threshold):
        uf.union(i, j)
    roots = [uf.find(i) for i in range(len(texts))]
    _, ids = np.unique(roots, return_inverse=True)
    return ids


def grouped_stratified_folds(Y: np.ndarray, groups: np.ndarray, n_folds: int, seed: int):
    """(train_idx, test_idx) pairs; each group falls in exactly one test fold, label mix balanced across folds."""
    Y = np.asarray(Y)
    uniq = np.unique(groups)
    # A group's label vector: the union of its passages' topics, plus a "no topic" column.
    G = np.zeros((len(uniq), Y.shape[1] + 1), dtype=int)
    pos = np.searchsorted(uniq, groups)
    for i, g in enumerate(pos):
        G[g, :-1] |= Y[i]
        G[g, -1] |= int(Y[i].sum() == 0)
    n_folds = min(n_folds, len(uniq))
    splitter = MultilabelStratifiedKFold(n_splits=n_folds, shuffle=True, random_state=seed)
    folds = []
    for _, test_groups in splitter.split(np.zeros(len(uniq)), G):
        test_mask = np.isin(pos, test_groups)
        folds.append((np.flatnonzero(~test_mask), np.flatnonzero(test_mask)))
    return folds


def temporal_folds(dates: list[str | None], groups: np.ndarray, n_folds: int):
    """Expanding-window folds over groups ordered by their earliest date: train on older, test on the next chunk.

    Passages without a date are only ever used for training."""
    first: dict[int, str] = {}
    for d, g in zip(dates, groups):
        if d:
            first[g] = min(first.get(g, d), d)
    ordered = sorted(first, key=lambda g: (first[g], g))
    if len(ordered) < n_folds + 1:
        from training.config import ConfigError

        raise ConfigError(
            f"splits.kind=temporal: needs passages with a `date` in at least {n_folds + 1} groups (events) to make "
            f"{n_folds} train-older/test-newer folds; the training data has {len(ordered)}. Add `date` (YYYY-MM-DD) "
            "to the passages, lower splits.n_folds, or use splits.kind=grouped_stratified")
    chunks = np.array_split(np.asarray(ordered), n_folds + 1)
    groups = np.asarray(groups)
    undated = np.flatnonzero(~np.isin(groups, ordered))
    folds = []
    for k in range(1, n_folds + 1):
        train_g = np.concatenate(chunks[:k])
        folds.append((np.union1d(np.flatnonzero(np.isin(groups, train_g)), undated),
                      np.flatnonzero(np.isin(groups, chunks[k]))))
    return folds


def _iso_date(example) -> str | None:
    """The passage's date as YYYY-MM-DD (compared as text, so every date must have that exact form)."""
    if not example.date:
        return None
    try:
        return datetime.date.fromisoformat(str(example.date)[:10]).isoformat()
    except ValueError:
        from training.data import DataError

        raise DataError(f"{example.origin or example.id}: `date` {example.date!r} is not a date (YYYY-MM-DD)") from None


def make_folds(corpus, cfg, seed: int, labels) -> list[tuple[np.ndarray, np.ndarray]]:
    groups = leak_free_groups(corpus.texts, corpus.groups, cfg.near_duplicate_jaccard)
    if cfg.kind == "temporal":
        return temporal_folds([_iso_date(e) for e in corpus.examples], groups, cfg.n_folds)
    return grouped_stratified_folds(corpus.topic_matrix(labels), groups, cfg.n_folds, seed)
