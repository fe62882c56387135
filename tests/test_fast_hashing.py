"""The numpy char n-gram hashing must be scikit-learn's HashingVectorizer, bit for bit: models are fitted with
scikit-learn's and scored through this path."""

from __future__ import annotations

import glob
import json

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.utils.murmurhash import murmurhash3_32 as sk_murmur

from training.models import fast_hashing
from training.models.fast_hashing import char_wb_counts, hashed_counts, murmurhash3_32, supported


def _vectorizer(ngram_range=(2, 5), **kw):
    return HashingVectorizer(n_features=2 ** 18, alternate_sign=False, norm=None, lowercase=True,
                             analyzer="char_wb", ngram_range=ngram_range, **kw)


def _same(a, b):
    return a.shape == b.shape and (a != b).nnz == 0


def test_murmurhash_matches_scikit_learn_on_keys_of_every_length():
    rng = np.random.default_rng(0)
    keys = [rng.integers(0, 256, n, dtype=np.uint8).tobytes() for n in list(range(0, 25)) * 40]
    data = np.frombuffer(b"".join(keys) + b"\0\0\0", dtype=np.uint8)
    lengths = np.array([len(k) for k in keys])
    starts = np.concatenate(([0], np.cumsum(lengths)[:-1]))
    assert murmurhash3_32(data, starts, lengths).tolist() == [sk_murmur(k, seed=0) for k in keys]


@pytest.mark.parametrize("ngram_range", [(2, 5), (1, 3), (3, 3), (4, 7)])
def test_same_matrix_as_scikit_learn_on_the_corpus(ngram_range):
    texts = [json.loads(line)["text"] for path in sorted(glob.glob("data/written/*.jsonl"))[:2]
             for line in open(path, encoding="utf-8")]
    v = _vectorizer(ngram_range)
    assert supported(v)
    assert _same(char_wb_counts(v, texts), v.transform(texts))


def test_same_matrix_across_batches(monkeypatch):
    monkeypatch.setattr(fast_hashing, "_BATCH_CHARS", 50)
    texts = ["La Turquie livre des drones à l'Ukraine.", "", "Ça   va\tbien", "x" * 120, "😀 ΟΔΟΣ d’abord"] * 3
    v = _vectorizer()
    assert _same(char_wb_counts(v, texts), v.transform(texts))


@settings(max_examples=200, deadline=None)
@given(st.lists(st.text(alphabet=st.characters(blacklist_categories=("Cs",))), min_size=1, max_size=6))
def test_same_matrix_as_scikit_learn_on_any_text(texts):
    v = _vectorizer((1, 4))
    assert _same(char_wb_counts(v, texts), v.transform(texts))


def test_settings_it_does_not_reproduce_go_to_scikit_learn():
    texts = ["Ankara accueille les négociateurs."]
    for v in (_vectorizer(strip_accents="unicode"), _vectorizer(binary=True),
              HashingVectorizer(analyzer="word"), HashingVectorizer(analyzer="char_wb", norm="l2")):
        assert not supported(v)
        assert _same(hashed_counts(v, texts), v.transform(texts))


def test_errors_are_scikit_learns():
    v = _vectorizer()
    with pytest.raises(ValueError, match="empty sequence"):
        char_wb_counts(v, [])
    with pytest.raises(ValueError, match="string object received"):
        char_wb_counts(v, "a bare string")
    with pytest.raises(UnicodeEncodeError):
        char_wb_counts(v, ["caf\udce9"])
    with pytest.raises(UnicodeEncodeError):
        v.transform(["caf\udce9"])
