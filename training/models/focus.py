"""Target-conditioned input for stance: the sentences of a passage that speak of a given topic."""

from __future__ import annotations

import re

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


# Negators that close a "ne ... X" scope, and words that open a condition running to the end of the clause.
_NEGATORS = {"pas", "jamais", "plus", "rien", "aucun", "aucune", "guere", "point", "nullement", "personne", "ni"}
_CONDITIONS = ("a condition que", "a condition qu", "a condition de", "pourvu que", "sous reserve", "tant que",
               "a moins que", "a moins qu", "pas avant", "des que", "des lors que", "si", "s'il", "s'ils",
               "au prealable", "d'abord")
_CLAUSE_END = {".", ",", ";", ":", "!", "?", "«", "»", '"', "(", ")", "mais", "et"}
_TOKEN = re.compile(r"\w+(?:-\w+)*|[^\w\s]")
_TURKEY = {"turquie", "ankara", "erdogan", "fidan", "turc", "turque", "turcs", "turques", "nous", "guler"}
_COND_RE = re.compile(r"(?<!\w)(" + "|".join(re.escape(c) for c in sorted(_CONDITIONS, key=len, reverse=True))
                      + r")(?!\w)")


def mark_scope(text: str, after: int = 3, window: int = 6) -> str:
    """Tokens that sit under a negation or a condition, and the words Turkey is the subject of, as marked tokens.

    "La Turquie n'enverra pas de troupes" -> "TR_n'enverra ... NEG_enverra NEG_pas NEG_de NEG_troupes": the same
    word means the opposite under "ne ... pas", so a linear model needs it as a different feature. A negation scope
    runs from "ne"/"n'" over at most `window` tokens to its negator and `after` tokens beyond (or to the clause end);
    "sans" opens a scope of `after` tokens; a condition ("si", "à condition que", "pas avant") marks the rest of its
    clause COND_; the `window` tokens after a Turkish actor are marked TR_ (Turkey as the holder of the stance)."""
    folded = _COND_RE.sub(lambda m: "COND_" + re.sub(r"\W", "_", m.group(1)), fold(text).replace("n'", "ne "))
    tokens = _TOKEN.findall(folded)
    marked: list[str] = []
    neg_left = cond = tr_left = 0
    pending = 0  # tokens left to find the negator of an open "ne"
    for tok in tokens:
        if tok in ("'", "-"):
            continue
        if tok in _CLAUSE_END:
            neg_left = cond = pending = 0
            tr_left = tr_left if tok == "et" else 0
            continue
        if tok.startswith("COND"):
            cond = 1
            marked.append(tok)
            continue
        if tok == "ne":
            pending = window
            continue
        if tok == "sans":
            neg_left = max(neg_left, after)
            continue
        if pending:
            marked.append("NEG_" + tok)
            if tok in _NEGATORS:
                pending, neg_left = 0, after
            else:
                pending -= 1
        elif neg_left:
            marked.append("NEG_" + tok)
            neg_left -= 1
        if cond:
            marked.append("COND_" + tok)
        if tr_left:
            marked.append("TR_" + tok)
            tr_left -= 1
        if tok in _TURKEY:
            tr_left = window
    return " ".join(marked)
