"""Folds that do not leak: events and near-duplicate passages (wire copies) never straddle train and test, the
label mix stays balanced across folds, and the temporal option trains on older events and tests on newer ones."""

from __future__ import annotations

import random
from pathlib import Path

import numpy as np
import pytest

from training import TOPICS
from training.config import ConfigError, SplitsConfig, load_config
from training.data import Corpus, DataError, Example, load_files
from training.splits import leak_free_groups, make_folds, near_duplicate_pairs

REPO = Path(__file__).resolve().parents[1]
WORDS = ("ankara kiev moscou drones accord ministre sommet livraison contrat embargo troupes mer noire "
         "corridor céréales négociation frontière parlement sanction marine otan visite défense usine "
         "bayraktar président déclaration rencontre délégation échange prisonniers port navire").split()


def passage(rng: random.Random, n: int = 60) -> str:
    return " ".join(rng.choice(WORDS) + str(rng.randrange(50)) for _ in range(n))


def wire_copy(rng: random.Random, text: str) -> str:
    """An outlet's re-publication: a dateline, a couple of words changed, the last sentence cut."""
    words = text.split()
    for k in rng.sample(range(len(words)), 2):
        words[k] = rng.choice(WORDS)
    return "ISTANBUL (AFP) - " + " ".join(words[:-4])


def synthetic_corpus(n_events: int = 120, seed: int = 0, dated: bool = False) -> tuple[Corpus, list[tuple[int, int]]]:
    """Events of 1-3 passages with random topics; every 4th event's first passage is re-published (near-copy)
    under a *different* event id, as wire copies are. Returns the corpus and the (original, copy) index pairs."""
    rng = random.Random(seed)
    examples, copies = [], []
    for ev in range(n_events):
        topics = [t for t in TOPICS if rng.random() < 0.3]
        date = f"2023-{1 + ev % 12:02d}-{1 + ev % 28:02d}" if dated else None
        for k in range(rng.randint(1, 3)):
            examples.append(Example(f"e{ev}-{k}", passage(rng), topics, {t: "favor" for t in topics}, f"ev{ev}",
                                    "synthetic", date))
        if ev % 4 == 0:
            orig = len(examples) - 1
            examples.append(Example(f"copy{ev}", wire_copy(rng, examples[orig].text), topics,
                                    {t: "favor" for t in topics}, f"wire-{ev}", "synthetic",
                                    f"2024-12-{1 + ev % 28:02d}" if dated else None))
            copies.append((orig, len(examples) - 1))
    return Corpus(examples), copies


def jaccard(a: str, b: str) -> float:
    from training.splits import _shingles

    sa, sb = _shingles(a), _shingles(b)
    return len(sa & sb) / len(sa | sb)


def fold_of(folds, n: int) -> np.ndarray:
    where = np.full(n, -1)
    for k, (_, test) in enumerate(folds):
        assert (where[test] == -1).all(), "a passage is in two test folds"
        where[test] = k
    return where


def test_wire_copies_are_found_as_near_duplicates():
    corpus, copies = synthetic_corpus()
    assert all(jaccard(corpus.texts[i], corpus.texts[j]) >= 0.5 for i, j in copies)  # they really are near-copies
    found = {tuple(sorted(p)) for p in near_duplicate_pairs(corpus.texts, 0.5)}
    assert set(copies) <= found
    # unrelated passages are not merged: every found pair really is similar
    assert all(jaccard(corpus.texts[i], corpus.texts[j]) >= 0.5 for i, j in found)


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_near_duplicates_and_events_never_straddle_folds(seed):
    corpus, copies = synthetic_corpus(seed=seed)
    folds = make_folds(corpus, SplitsConfig(n_folds=5), seed=seed, labels=TOPICS)
    assert len(folds) == 5
    where = fold_of(folds, len(corpus))
    assert (where >= 0).all(), "every passage is tested exactly once"
    for train, test in folds:
        assert not set(train) & set(test)
    for i, j in copies:  # different event ids, nearly the same text: same fold
        assert where[i] == where[j]
    events: dict[str, set[int]] = {}
    for e, k in zip(corpus.groups, where):
        events.setdefault(e, set()).add(int(k))
    assert all(len(ks) == 1 for ks in events.values())


def test_without_near_duplicate_merging_copies_would_straddle():
    """The grouping is what keeps copies together: by event id alone, some wire copies land in another fold."""
    corpus, copies = synthetic_corpus()
    by_event = np.unique(corpus.groups, return_inverse=True)[1]
    from training.splits import grouped_stratified_folds

    where = fold_of(grouped_stratified_folds(corpus.topic_matrix(TOPICS), by_event, 5, 0), len(corpus))
    assert any(where[i] != where[j] for i, j in copies)


def test_groups_merge_transitively():
    texts = ["a b c d e f g h i j", "a b c d e f g h i k", "x y z w v u t s r q", "a b c d e f g h i l"]
    groups = leak_free_groups(texts, ["e1", "e2", "e3", "e4"], 0.5)
    assert groups[0] == groups[1] == groups[3] != groups[2]


def test_near_duplicate_pairs_are_those_of_datasketchs_lsh_index():
    """The banded comparison finds exactly the pairs that inserting each passage into a MinHashLSH and querying it
    finds (then verified), on passages with copies, chains of edits and shared boilerplate."""
    from datasketch import MinHash, MinHashLSH

    from training.splits import _shingles

    corpus, _ = synthetic_corpus(n_events=200, seed=3)
    rng = random.Random(5)
    texts = corpus.texts + [wire_copy(rng, wire_copy(rng, t)) for t in corpus.texts[:40]] + ["", "", "un mot"]
    lsh, shingles, expected = MinHashLSH(threshold=0.5, num_perm=128), [_shingles(t) for t in texts], set()
    for i, sh in enumerate(shingles):
        m = MinHash(num_perm=128, seed=1)
        m.update_batch([s.encode("utf-8") for s in sh])
        expected |= {(j, i) for j in lsh.query(m) if len(sh & shingles[j]) / max(1, len(sh | shingles[j])) >= 0.5}
        lsh.insert(i, m)
    found = near_duplicate_pairs(texts, 0.5)
    assert found == sorted(expected) and len(found) > 40


def test_group_ids_are_numbered_by_first_passage_whatever_the_merge_order():
    texts = ["x y z w v u t s r q", "a b c d e f g h i j", "p q r s t u v w x y", "a b c d e f g h i k"]
    assert leak_free_groups(texts, ["e1", "e2", "e3", "e4"], 0.5).tolist() == [0, 1, 2, 1]
    assert leak_free_groups(texts, ["e1", "e2", "e1", "e4"], 0.5).tolist() == [0, 1, 0, 1]


def test_written_corpus_folds_keep_events_apart_and_labels_balanced():
    cfg = load_config(REPO / "configs" / "default.yaml")
    corpus = load_files(cfg.data.train, root=REPO)
    folds = make_folds(corpus, cfg.splits, cfg.seed, TOPICS)
    where = fold_of(folds, len(corpus))
    assert (where >= 0).all() and len(folds) == cfg.splits.n_folds
    events: dict[str, set[int]] = {}
    for e, k in zip(corpus.groups, where):
        events.setdefault(e, set()).add(int(k))
    assert all(len(ks) == 1 for ks in events.values())
    Y = corpus.topic_matrix(TOPICS)
    per_fold = np.array([Y[test].sum(0) for _, test in folds])  # positives per fold and topic
    mean = per_fold.mean(0)
    assert (np.abs(per_fold - mean) <= 0.25 * mean).all(), per_fold
    negatives = np.array([(Y[test].sum(1) == 0).sum() for _, test in folds])
    assert np.abs(negatives - negatives.mean()).max() <= 0.25 * negatives.mean()


def test_temporal_folds_train_on_older_test_on_newer():
    corpus, copies = synthetic_corpus(dated=True)
    undated = Example("undated", passage(random.Random(9)), [], {}, "no-date-event", "synthetic", None)
    corpus = Corpus(corpus.examples + [undated])
    folds = make_folds(corpus, SplitsConfig(kind="temporal", n_folds=3), seed=0, labels=TOPICS)
    assert len(folds) == 3
    groups = leak_free_groups(corpus.texts, corpus.groups, 0.5)
    first = {}
    for e, g in zip(corpus.examples, groups):
        if e.date:
            first[g] = min(first.get(g, e.date), e.date)
    last_train_size = 0
    for train, test in folds:
        assert len(test) and not set(train) & set(test)
        assert max(first[groups[i]] for i in train if groups[i] in first) <= min(first[groups[i]] for i in test)
        assert len(corpus) - 1 in train and len(corpus) - 1 not in test  # undated: training only
        assert len(train) > last_train_size  # expanding window
        last_train_size = len(train)
        test_groups = set(groups[test])
        assert not test_groups & set(groups[train])
    where = fold_of(folds, len(corpus))
    for i, j in copies:  # a wire copy is dated later but belongs to the original's group and fold
        assert where[i] == where[j]


def test_temporal_without_dates_is_a_clear_config_error():
    cfg = load_config(REPO / "configs" / "default.yaml", ["splits.kind=temporal", "splits.n_folds=5"])
    corpus = load_files(cfg.data.train, root=REPO)  # written passages carry no dates
    with pytest.raises(ConfigError, match=r"splits.kind=temporal: needs passages with a `date` in at least 6 groups"):
        make_folds(corpus, cfg.splits, cfg.seed, TOPICS)


def test_temporal_rejects_malformed_dates():
    corpus, _ = synthetic_corpus(n_events=10, dated=True)
    corpus.examples[3].date, corpus.examples[3].origin = "03/04/2023", "x.jsonl:4"
    with pytest.raises(DataError, match=r"x.jsonl:4: `date` '03/04/2023' is not a date"):
        make_folds(corpus, SplitsConfig(kind="temporal", n_folds=2), seed=0, labels=TOPICS)
