"""Cue lexicon: per-topic and per-stance-cue French terms, as count features (configurable in YAML)."""

from __future__ import annotations

import contextlib
import contextvars
import functools
import re
import unicodedata
from pathlib import Path

import numpy as np
import yaml
from scipy import sparse
from sklearn.base import BaseEstimator, TransformerMixin


class _FoldTable(dict):
    """code point -> its NFKD decomposition without combining marks, filled on first sight (for str.translate).

    Per character is exact: NFKD maps each character on its own, then only reorders combining marks (canonical
    ordering), and those are the characters dropped."""

    def __missing__(self, code: int) -> str:
        out = "".join(c for c in unicodedata.normalize("NFKD", chr(code)) if not unicodedata.combining(c))
        self[code] = out
        return out


_FOLD = _FoldTable()


def fold(text: str) -> str:
    """Lowercase and strip accents, and unify apostrophes, so cues match however the text is typed."""
    # Lowercase the whole string first: str.lower() is context-sensitive (a final capital sigma).
    text = text.lower().replace("’", "'")
    # A per-character table instead of a Python loop over the characters: scoring folds every passage several
    # times (lexicon features, cue counts, focus sentences), and the loop was a fifth of its time.
    return text if text.isascii() else text.translate(_FOLD)


def fold_reference(text: str) -> str:
    """`fold` written the direct way (normalize the string, drop combining marks); the tests hold `fold` to it."""
    text = unicodedata.normalize("NFKD", text.lower().replace("’", "'"))
    return "".join(c for c in text if not unicodedata.combining(c))


def load_lexicon(path: str | Path | None) -> dict[str, dict[str, list[str]]] | None:
    if not path:
        return None
    from training.errors import ConfigError

    path = Path(path)
    if not path.is_file():
        raise FileNotFoundError(f"lexicon.path: {path} not found (set lexicon.path=null to train without a lexicon)")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except (yaml.YAMLError, UnicodeDecodeError) as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping with sections topics, stance; "
                          f"got {type(raw).__name__}")
    unknown = set(raw) - {"topics", "stance"}
    if unknown:
        raise ConfigError(f"{path}: unknown section(s) {sorted(map(str, unknown))}; allowed: topics, stance")
    out: dict[str, dict[str, list[str]]] = {}
    for section in ("topics", "stance"):
        groups = raw.get(section) or {}
        if not isinstance(groups, dict):
            raise ConfigError(f"{path}: `{section}` must map a group name to a list of terms, "
                              f"got {type(groups).__name__}")
        for name, terms in groups.items():
            # A bare string would otherwise be read as a list of one-character cues.
            if not isinstance(terms, list):
                raise ConfigError(f"{path}: `{section}.{name}` must be a list of terms, e.g. [{name}], "
                                  f"got {type(terms).__name__} {terms!r}")
        out[section] = {str(k): [str(t) for t in v] for k, v in groups.items()}
    return out


@functools.lru_cache(maxsize=64)
def _pattern(terms: tuple[str, ...]) -> re.Pattern:
    alts = sorted({re.escape(fold(t)) for t in terms if t.strip()}, key=len, reverse=True)
    return re.compile(r"(?<!\w)(?:" + "|".join(alts) + ")") if alts else re.compile(r"(?!x)x")


# Cue counts shared within one scoring call (`shared_counts`): the topic model's lexicon features and the article
# roll-up count the same topic cues in the same passages, and the stance model sees a passage once per topic it
# carries. Keyed by (pattern, text); a context variable, so threads never share a memo.
_COUNT_MEMO: contextvars.ContextVar[dict | None] = contextvars.ContextVar("tpc_count_memo", default=None)


@contextlib.contextmanager
def shared_counts():
    """Within this block, `count_matrix` counts each (pattern, text) once; the memo is dropped at its end."""
    token = _COUNT_MEMO.set({})
    try:
        yield
    finally:
        _COUNT_MEMO.reset(token)


def count_matrix(texts, patterns: list[re.Pattern]) -> np.ndarray:
    """(len(texts), len(patterns)) float array: matches of each pattern in each folded text."""
    texts = list(texts)
    out = np.zeros((len(texts), len(patterns)))
    memo = _COUNT_MEMO.get()
    if memo is None:
        for i, folded in enumerate(map(fold, texts)):
            out[i] = [len(p.findall(folded)) for p in patterns]
        return out
    for i, text in enumerate(texts):
        folded = None
        for j, p in enumerate(patterns):
            key = (p.pattern, text)
            n = memo.get(key)
            if n is None:
                folded = fold(text) if folded is None else folded
                n = memo[key] = len(p.findall(folded))
            out[i, j] = n
    return out


class LexiconFeatures(BaseEstimator, TransformerMixin):
    """log1p counts of each cue group in each text (one column per group, in sorted group order)."""

    def __init__(self, groups: dict | None = None):
        self.groups = groups

    def fit(self, X, y=None):
        self.names_ = sorted(self.groups or {})
        return self

    def transform(self, X):
        groups = self.groups or {}
        patterns = [_pattern(tuple(groups[n])) for n in self.names_]
        return sparse.csr_matrix(np.log1p(count_matrix(X, patterns)))

    def get_feature_names_out(self, input_features=None):
        return np.asarray([f"cue_{n}" for n in self.names_], dtype=object)
