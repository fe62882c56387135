"""Splits of the real labelled articles by event and date.

An event is a set of articles that report one story: near-duplicate texts (word 3-gram Jaccard, the wire copy
and its updates; ANNOTATION.md hard case 4). Whole calendar months go to one split, and an event that spans two
months joins them, so no story and no week of news sits on both sides. Months are dealt to the split furthest
below its target share, in a seeded random order.
"""

from __future__ import annotations

import random

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


def month_blocks(ids: list[str], dates: list[str | None], event_of: dict[str, str]) -> dict[str, str]:
    """article id -> block id: its month, merged with every month its event touches."""
    months = sorted({(d or "undated")[:7] for d in dates})
    index = {m: k for k, m in enumerate(months)}
    uf = _UnionFind(len(months))
    first: dict[str, str] = {}
    for aid, d in zip(ids, dates):
        m = (d or "undated")[:7]
        ev = event_of[aid]
        if ev in first:
            uf.union(index[m], index[first[ev]])
        else:
            first[ev] = m
    return {aid: months[uf.find(index[(d or "undated")[:7]])] for aid, d in zip(ids, dates)}


def assign(ids: list[str], texts: list[str], dates: list[str | None], seed: int = 13,
           targets: dict[str, float] = TARGETS) -> tuple[dict[str, str], dict[str, str]]:
    """(event by article id, split by article id)."""
    event_of = events(ids, texts)
    block_of = month_blocks(ids, dates, event_of)
    sizes: dict[str, int] = {}
    for aid in ids:
        sizes[block_of[aid]] = sizes.get(block_of[aid], 0) + 1
    blocks = sorted(sizes)
    random.Random(seed).shuffle(blocks)
    filled = {s: 0 for s in targets}
    split_of_block = {}
    for b in blocks:
        total = sum(filled.values()) + sizes[b]
        split = max(targets, key=lambda s: targets[s] * total - filled[s])
        split_of_block[b] = split
        filled[split] += sizes[b]
    return event_of, {aid: split_of_block[block_of[aid]] for aid in ids}
