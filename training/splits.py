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


def _equal_rows(band: np.ndarray):
    """Index arrays of the rows of `band` that are equal to each other (groups of two or more)."""
    order = np.lexsort(band.T[::-1])
    ranked = band[order]
    same = (ranked[1:] == ranked[:-1]).all(1)  # sorted row k+1 equals sorted row k
    starts = np.flatnonzero(same & ~np.r_[False, same[:-1]])
    for s in starts:
        e = s + 1
        while e < len(same) and same[e]:
            e += 1
        yield order[s:e + 1]


def near_duplicate_pairs(texts: list[str], threshold: float = 0.5, num_perm: int = 128, seed: int = 1):
    """Pairs (i, j), i < j, whose word-3-gram Jaccard similarity is at least `threshold`: MinHash LSH candidates
    (two passages whose signatures agree on any band of datasketch's banding for `threshold`), verified exactly.

    The signatures are computed at once (`MinHash.bulk`) and the bands compared as sorted arrays, the same
    candidates as inserting each passage into a `MinHashLSH` and querying it, in a tenth of the time."""
    shingles = [_shingles(t) for t in texts]
    signatures = MinHash.bulk([[s.encode("utf-8") for s in sh] for sh in shingles], num_perm=num_perm, seed=seed)
    sigs = np.stack([m.hashvalues for m in signatures]) if signatures else np.zeros((0, num_perm), np.uint64)
    candidates = set()
    for start, end in MinHashLSH(threshold=threshold, num_perm=num_perm).hashranges:
        for rows in _equal_rows(sigs[:, start:end]):
            rows = sorted(rows.tolist())
            candidates.update((a, b) for k, a in enumerate(rows) for b in rows[k + 1:])
    return [(i, j) for i, j in sorted(candidates)
            if len(shingles[i] & shingles[j]) / max(1, len(shingles[i] | shingles[j])) >= threshold]


def leak_free_groups(texts: list[str], events: list[str], threshold: float = 0.5) -> np.ndarray:
    """A group id per passage: passages of one event, or nearly the same text, share a group. Groups are numbered
    in the order of their first passage, whatever order the pairs were merged in."""
    uf = _UnionFind(len(texts))
    first: dict[str, int] = {}
    for i, ev in enumerate(events):
        if ev in first:
            uf.union(i, first[ev])
        else:
            first[ev] = i
    for i, j in near_duplicate_pairs(texts, threshold):
        uf.union(i, j)
    roots = np.array([uf.find(i) for i in range(len(texts))], dtype=np.int64)
    _, first_row, ids = np.unique(roots, return_index=True, return_inverse=True)
    return np.argsort(np.argsort(first_row))[ids]


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
