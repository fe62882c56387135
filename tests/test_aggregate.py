"""The article-level decision: features of passage scores, realistic composite articles, the learned roll-up."""

from __future__ import annotations

import numpy as np
import pytest

from training.aggregate import (N_FEATURES, ArticleAggregator, article_features, best_f1_threshold,
                                composite_articles, is_theatre)


def test_article_features_shape_and_cue_evidence():
    P = np.array([[0.9, 0.1], [0.2, 0.6], [0.1, 0.1]])
    cues = np.array([[0, 1], [0, 0], [0, 0]])
    F = article_features(P, np.array([0.5, 0.5]), cues)
    assert F.shape == (2, N_FEATURES)
    assert F[0, 0] == 0.9 and F[1, 0] == 0.6  # max per topic
    assert F[0, 9] == 0.0  # topic 0 scores high on a passage without any of its cues
    assert F[1, 9] == 0.1  # topic 1's only cue-bearing passage scores 0.1
    assert F[0, 10] == 0.9 and F[1, 10] == 0.1  # the lead passage
    assert article_features(np.zeros((0, 2)), np.array([0.5, 0.5]), None).shape == (2, N_FEATURES)
    assert np.array_equal(article_features(P, np.array([0.5, 0.5]), None)[:, 9], P.max(0))


def test_is_theatre_separates_war_context_from_everyday_news():
    assert is_theatre(["Des drones russes ont frappé Kiev.", "Fenerbahçe bat Galatasaray 2-1.",
                       "L'armée syrienne avance vers Idleb."]).tolist() == [True, False, True]


def test_composite_articles_are_realistic_mixes_within_the_pool():
    rng = np.random.default_rng(0)
    Y = np.zeros((300, 4), dtype=int)
    Y[:60, 0] = 1  # 60 on-topic passages
    theatre = np.zeros(300, dtype=bool)
    theatre[60:200] = True  # 140 same-theatre negatives, 100 everyday ones
    pool = np.arange(0, 300, 2)
    arts = composite_articles(pool, Y, theatre, 300, 5, 40, rng)
    assert len(arts) == 300
    assert all(5 <= len(a) <= 40 and set(a) <= set(pool) for a in arts)
    on_topic = np.array([Y[a].any() for a in arts])
    assert 0.35 < on_topic.mean() < 0.65  # about half the articles are about a topic
    # Topic articles hold few on-topic passages, drowned in context.
    assert np.median([Y[a, 0].mean() for a, t in zip(arts, on_topic) if t]) < 0.25
    # Off-topic articles: some theatre explainers (mostly same-theatre), some everyday news (mostly not).
    share = np.array([theatre[a].mean() for a, t in zip(arts, on_topic) if not t])
    assert (share > 0.6).sum() > 50 and (share < 0.4).sum() > 20
    assert composite_articles(pool, Y, theatre, 0, 5, 40, rng) == []


def _synthetic_articles(rng, n):
    """Topic present: one passage scores high. Absent: long theatre articles whose best passage is often above
    the passage threshold too, but with no cue of the topic."""
    feats, gold = [], []
    for i in range(n):
        length = int(rng.integers(5, 41))
        P = rng.uniform(0.0, 0.45, size=(length, 1))
        cues = np.zeros((length, 1))
        present = i % 2 == 0
        k = int(rng.integers(length))
        if present:
            P[k, 0], cues[k, 0] = rng.uniform(0.55, 1.0), 1
        elif rng.random() < 0.6:
            P[k, 0] = rng.uniform(0.5, 0.8)  # a spurious passage above threshold
        feats.append(article_features(P, np.array([0.5]), cues))
        gold.append([int(present)])
    return np.stack(feats), np.array(gold)


def test_learned_aggregator_beats_max_rule_on_spurious_passages():
    rng = np.random.default_rng(1)
    Ff, Gf = _synthetic_articles(rng, 300)
    Fe, Ge = _synthetic_articles(rng, 200)
    agg = ArticleAggregator(labels=("t",)).fit(Ff, Gf)
    learned = (agg.predict_proba(Fe) >= agg.thresholds_).astype(int)[:, 0]
    rule = (Fe[:, 0, 0] >= 0.5).astype(int)
    precision = lambda d: (d & Ge[:, 0]).sum() / max(1, d.sum())  # noqa: E731
    assert precision(rule) < 0.8 and precision(learned) > 0.95
    assert (learned & Ge[:, 0]).sum() / Ge[:, 0].sum() > 0.95


def test_aggregator_with_a_constant_label_and_best_threshold():
    F = np.random.default_rng(0).random((20, 2, N_FEATURES))
    Y = np.zeros((20, 2), dtype=int)
    Y[::2, 1] = 1
    agg = ArticleAggregator(labels=("a", "b")).fit(F, Y)
    assert np.all(agg.predict_proba(F)[:, 0] == 0.0)
    assert best_f1_threshold(np.array([1, 1, 0, 0]), np.array([0.9, 0.8, 0.3, 0.1])) == 0.55
    assert best_f1_threshold(np.array([0, 0]), np.array([0.9, 0.1])) == 0.5


@pytest.mark.parametrize("learned", [True, False])
def test_batched_article_decisions_match_one_article_at_a_time(learned):
    """Scoring rolls up a whole chunk of articles in one call; each article's decision is its own."""
    from training.bundle import Bundle

    rng = np.random.default_rng(0)
    F, G = _synthetic_articles(rng, 60)
    agg = ArticleAggregator(labels=("t",)).fit(F, G) if learned else None
    bundle = Bundle(None, None, ("t",), [0.5], aggregator=agg)
    Ps = [rng.random((n, 1)) for n in (1, 5, 0, 12, 3, 30)]
    cues = [rng.integers(0, 2, (len(P), 1)).astype(float) for P in Ps]
    prob, decided = bundle.articles_decisions(Ps, cues)
    assert decided.any() and not decided.all()
    for i, (P, c) in enumerate(zip(Ps, cues)):
        one_prob, one_decided = bundle.articles_decisions([P], [c])
        assert np.allclose(prob[i], one_prob[0], rtol=0, atol=1e-12)
        assert decided[i].tolist() == one_decided[0].tolist()
    assert not decided[2].any() and not prob[2].any()  # no passages: nothing decided


def test_roll_up_gives_an_article_the_same_bits_in_any_batch():
    """`tpc score` output must not depend on the chunk an article falls in, nor on the worker count."""
    rng = np.random.default_rng(3)
    F, G = _synthetic_articles(rng, 80)
    agg = ArticleAggregator(labels=("t",)).fit(F, G)
    batch = agg.predict_proba(F)
    assert all(np.array_equal(agg.predict_proba(F[i:i + 1]), batch[i:i + 1]) for i in range(len(F)))
    assert np.array_equal(agg.predict_proba(F[7:53]), batch[7:53])
    head = agg.heads_[0]
    assert np.allclose(batch[:, 0], head.predict_proba(F[:, 0])[:, 1], rtol=0, atol=1e-12)
