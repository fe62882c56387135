"""The tfidf_linear family: negation/condition scope marking, flat and hierarchical stance, safe persistence."""

from __future__ import annotations

import numpy as np
import pytest

from training import STANCES, TOPICS
from training import models as families
from training.models.focus import mark_scope
from training.models.tfidf import TfidfLinearStance, TfidfLinearTopic


def test_mark_scope_negation_condition_and_holder():
    marked = mark_scope("La Turquie n'enverra pas de troupes en Ukraine, a dit le ministre.").split()
    assert {"NEG_enverra", "NEG_pas", "NEG_troupes"} <= set(marked)
    assert not any(m.endswith(("_ministre", "_dit")) for m in marked)  # the scope stops at the clause end
    assert "TR_enverra" in marked  # Turkey is the subject
    assert not any(m.startswith("NEG_") for m in mark_scope("La Turquie enverra des troupes.").split())
    cond = mark_scope("Ankara livrera des drones à condition que Kiev paie comptant.").split()
    assert "COND_a_condition_que" in cond and "COND_paie" in cond and "COND_drones" not in cond
    assert "NEG_mandat" in mark_scope("Pas de soldats sans mandat de l'ONU.").split()
    assert mark_scope("") == ""


PLACES = ["Ukraine", "Libye", "Syrie", "Somalie", "Irak", "Kosovo", "Qatar", "Soudan", "Liban", "Bosnie"]


def _pairs(places):
    X, y = [], []
    for p in places:
        X += [[f"La Turquie enverra des troupes en {p}, a annoncé Ankara.", "deployment"],
              [f"La Turquie n'enverra pas de troupes en {p}, a annoncé Ankara.", "deployment"],
              [f"Des troupes étrangères sont arrivées en {p} selon Ankara.", "deployment"]]
        y += ["favor", "against", "none"]
    return np.array(X, dtype=object), np.array(y)


@pytest.mark.parametrize("structure", ["flat", "hierarchical"])
def test_stance_reads_negation_in_both_structures(structure):
    X, y = _pairs(PLACES[:8])
    model = TfidfLinearStance(char_ngrams=None, structure=structure).fit(X, y)
    Xt, yt = _pairs(PLACES[8:])
    proba = model.predict_proba(Xt)
    assert proba.shape == (len(yt), len(STANCES)) and np.allclose(proba.sum(1), 1.0)
    assert model.predict(Xt).tolist() == yt.tolist()


def test_hierarchical_stance_round_trips_through_skops(tmp_path):
    X, y = _pairs(PLACES)
    model = TfidfLinearStance(char_ngrams=None, structure="hierarchical").fit(X, y)
    families.save(model, tmp_path / "stance")
    loaded = families.load(tmp_path / "stance")
    assert np.allclose(loaded.predict_proba(X), model.predict_proba(X))


def test_unknown_structure_is_refused():
    X, y = _pairs(PLACES[:2])
    with pytest.raises(ValueError, match="structure"):
        TfidfLinearStance(structure="tree").fit(X, y)


def test_topic_model_multilabel_probabilities():
    texts = [f"Ankara livre des drones Bayraktar à {p}." for p in PLACES] + \
            [f"Fenerbahçe a battu {p} en match amical." for p in PLACES]
    Y = np.zeros((len(texts), len(TOPICS)), dtype=int)
    Y[: len(PLACES), TOPICS.index("arms_trade")] = 1
    model = TfidfLinearTopic(char_ngrams=None).fit(texts, Y)
    P = model.predict_proba(["La Turquie livre des drones Bayraktar au Maroc.", "Galatasaray a battu Fenerbahçe."])
    assert P.shape == (2, len(TOPICS))
    assert P[0, TOPICS.index("arms_trade")] > 0.5 > P[1, TOPICS.index("arms_trade")]
    assert np.all(P[:, TOPICS.index("sanctions")] == 0.0)  # a label never seen: constant output


def test_shared_hashing_gives_the_same_features_and_probabilities():
    """Scoring hashes a passage once for both classifiers; the matrices must be exactly the unshared ones."""
    from training.models import tfidf
    from training.models.tfidf import shared_hashing, transform_texts

    X, y = _pairs(PLACES)
    texts = list(X[:, 0])
    Y = np.array([[int(s != "none"), 0, 0, int(s == "favor")] for s in y])
    Y[0, 1] = Y[1, 2] = 1
    topic = TfidfLinearTopic(char_ngrams=(2, 4)).fit(texts, Y)
    stance = TfidfLinearStance(char_ngrams=(2, 4)).fit(X, y)
    plain = (topic.features_.transform(texts), topic.predict_proba(texts), stance.predict_proba(X))
    with shared_hashing():
        shared = transform_texts(topic.features_, texts)
        p_topic = topic.predict_proba(texts)
        p_stance = stance.predict_proba(X[::-1])[::-1]  # rows looked up out of order, texts seen before
        unseen = stance.predict_proba([["Ankara livrera des drones au Qatar.", "arms_trade"]])
        assert len(tfidf._HASH_MEMO.get()) == 2  # one word and one char count per text, shared by both models
    assert tfidf._HASH_MEMO.get() is None  # the memo lives only inside the block
    assert (shared != plain[0]).nnz == 0
    assert np.array_equal(p_topic, plain[1]) and np.array_equal(p_stance, plain[2])
    assert np.array_equal(unseen, stance.predict_proba([["Ankara livrera des drones au Qatar.", "arms_trade"]]))


def test_shared_cue_counts_are_the_plain_counts():
    from training import lexicon
    from training.lexicon import _pattern, count_matrix, shared_counts

    patterns = [_pattern(("sanctions", "embargo")), _pattern(("drones", "Bayraktar")), _pattern(("médiation",))]
    texts = ["Ankara refuse les sanctions et l'embargo.", "Des drones Bayraktar, des DRONES.", "", "Médiation turque"]
    plain = count_matrix(texts, patterns)
    assert plain.tolist() == [[2, 0, 0], [0, 3, 0], [0, 0, 0], [0, 0, 1]]
    with shared_counts():
        first = count_matrix(texts, patterns)
        again = count_matrix(texts[::-1], patterns[::-1])
        assert len(lexicon._COUNT_MEMO.get()) == len(texts) * len(patterns)  # each pair counted once
    assert np.array_equal(first, plain) and np.array_equal(again, plain[::-1, ::-1])
    assert lexicon._COUNT_MEMO.get() is None


def test_memos_are_per_thread():
    """A threaded server predicting in two threads at once: neither sees, nor ends, the other's memo."""
    import threading

    from training import lexicon
    from training.models import tfidf

    inside, release = threading.Event(), threading.Event()
    seen = {}

    def other():
        seen["before"] = tfidf._HASH_MEMO.get(), lexicon._COUNT_MEMO.get()
        with tfidf.shared_hashing(), lexicon.shared_counts():
            inside.set()
            release.wait(5)
        seen["after"] = tfidf._HASH_MEMO.get(), lexicon._COUNT_MEMO.get()

    with tfidf.shared_hashing(), lexicon.shared_counts():
        mine = tfidf._HASH_MEMO.get()
        t = threading.Thread(target=other)
        t.start()
        inside.wait(5)
        assert tfidf._HASH_MEMO.get() is mine
        release.set()
        t.join()
        assert tfidf._HASH_MEMO.get() is mine
    assert seen == {"before": (None, None), "after": (None, None)}
    assert tfidf._HASH_MEMO.get() is None and lexicon._COUNT_MEMO.get() is None
