"""Target-conditioned input for stance: the sentences of a passage that speak of a given topic."""

from __future__ import annotations

import numpy as np
from scipy import sparse

from training.articles import split_sentences
from training.lexicon import _pattern, fold


def focus_text(text: str, topic: str, lexicon: dict | None) -> str:
    """The sentences that carry a cue of `topic` (with their neighbour), or the whole text when none does."""
    cues = ((lexicon or {}).get("topics") or {}).get(topic)
    if not cues:
        return text
    sentences = split_sentences(text)
    pattern = _pattern(tuple(cues))
    hits = {i for i, s in enumerate(sentences) if pattern.search(fold(s))}
    if not hits:
        return text
    keep = sorted({j for i in hits for j in (i - 1, i, i + 1) if 0 <= j < len(sentences)})
    return " ".join(sentences[j] for j in keep)


def topic_block(F, row_topics: list[str], topics) -> sparse.csr_matrix:
    """Place each row's features in the column block of its topic (len(topics) blocks), plus a topic one-hot."""
    F = sparse.csr_matrix(F)
    n, d = F.shape
    index = {t: k for k, t in enumerate(topics)}
    k = np.array([index[t] for t in row_topics], dtype=np.int64)
    coo = F.tocoo()
    blocks = sparse.csr_matrix((coo.data, (coo.row, coo.col + k[coo.row] * d)), shape=(n, d * len(topics)))
    onehot = sparse.csr_matrix((np.ones(n), (np.arange(n), k)), shape=(n, len(topics)))
    return sparse.hstack([blocks, onehot]).tocsr()
