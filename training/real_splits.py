"""Splits of the real labelled articles by event and date.

An event is a set of articles that report one story: near-duplicate texts (word 3-gram Jaccard, the wire copy
and its updates; ANNOTATION.md hard case 4). Whole ISO weeks go to one split, and an event that spans two weeks
joins them, so no story and no week of news sits on both sides. Blocks are dealt, largest first (seeded order
among equals), to the split furthest below its target share of what the evaluation needs: articles, articles of
each topic, and Turkey's favor/against pairs (a test split without stance pairs could not measure stance).
"""

from __future__ import annotations

import datetime
import random

import numpy as np

from training.splits import _UnionFind, near_duplicate_pairs

TARGETS = {"test": 0.25, "dev": 0.20, "train": 0.55}


def events(ids: list[str], texts: list[str], threshold: float = 0.3) -> dict[str, str]:
    """article id -> event id (the smallest article id of its near-duplicate group)."""
    uf = _UnionFind(len(ids))
    for i, j in near_duplicate_pairs(texts, threshold):
        uf.union(i, j)
    members: dict[int, list[str]] = {}
    for i, aid in enumerate(ids):
        members.setdefault(uf.find(i), []).append(aid)
    return {aid: "ev-" + min(group, key=lambda a: (len(a), a)).split("-")[-1]
            for group in members.values() for aid in group}


def week_of(date: str | None) -> str:
    try:
        y, w, _ = datetime.date.fromisoformat(str(date)[:10]).isocalendar()
    except ValueError:
        return "undated"
    return f"{y}-W{w:02d}"


def week_blocks(ids: list[str], dates: list[str | None], event_of: dict[str, str]) -> dict[str, str]:
    """article id -> block id: its ISO week, merged with every week its event touches."""
    weeks = sorted({week_of(d) for d in dates})
    index = {w: k for k, w in enumerate(weeks)}
    uf = _UnionFind(len(weeks))
    first: dict[str, str] = {}
    for aid, d in zip(ids, dates):
        w, ev = week_of(d), event_of[aid]
        if ev in first:
            uf.union(index[w], index[first[ev]])
        else:
            first[ev] = w
    return {aid: weeks[uf.find(index[week_of(d)])] for aid, d in zip(ids, dates)}


def assign(ids: list[str], texts: list[str], dates: list[str | None], counts: np.ndarray | None = None,
           seed: int = 13, targets: dict[str, float] = TARGETS) -> tuple[dict[str, str], dict[str, str]]:
    """(event by article id, split by article id). `counts` (n_articles, k): what each article brings that the
    splits must share (e.g. one column per topic, Turkey's stance pairs); the article count is always one."""
    event_of = events(ids, texts)
    block_of = week_blocks(ids, dates, event_of)
    counts = np.ones((len(ids), 1)) if counts is None else np.column_stack([np.ones(len(ids)), counts])
    blocks = sorted(set(block_of.values()))
    rows = {b: k for k, b in enumerate(blocks)}
    size = np.zeros((len(blocks), counts.shape[1]))
    for i, aid in enumerate(ids):
        size[rows[block_of[aid]]] += counts[i]
    total = np.maximum(size.sum(0), 1)
    rng = random.Random(seed)
    # blocks that carry a large share of something scarce (a week of Turkey's against pairs) are placed first
    order = sorted(range(len(blocks)), key=lambda b: (-(size[b] / total).max(), rng.random()))
    names = list(targets)
    share = np.array([targets[s] for s in names])
    filled = np.zeros((len(names), counts.shape[1]))
    split_of_block = {}
    for b in order:
        # the split furthest below target on what this block matters most for (its largest share of a quantity),
        # then over every quantity it brings
        deficit = (share[:, None] * total - filled) / total
        main = int(np.argmax(size[b] / total))
        k = max(range(len(names)), key=lambda j: (round(deficit[j, main], 6), (deficit[j] * (size[b] > 0)).sum()))
        split_of_block[blocks[b]] = names[k]
        filled[k] += size[b]
    return event_of, {aid: split_of_block[block_of[aid]] for aid in ids}
