"""scikit-learn's `HashingVectorizer(analyzer="char_wb")` counts, computed with numpy arrays instead of a Python
loop over every n-gram.

Character n-grams are most of the cost of scoring: a 2 KB article has about 6,000 of them, which scikit-learn
builds one Python string at a time and hashes one at a time (MurmurHash3 of the UTF-8 bytes). Here the n-grams
of a batch of texts are (byte offset, byte length) pairs into the UTF-8 encoding of the batch, and MurmurHash3
runs on all of them at once in uint32 arithmetic. The matrix is exactly scikit-learn's (same columns, same
counts; tests/test_fast_hashing.py holds the two to equality), so a model fitted with scikit-learn's vectorizer
scores identically through this path, and any setting this path does not reproduce falls back to scikit-learn.
"""

from __future__ import annotations

import numpy as np
from scipy import sparse

_C1, _C2 = np.uint32(0xCC9E2D51), np.uint32(0x1B873593)
# Characters per numpy batch: about 3 n-grams per character for (2, 5), about 100 bytes of temporaries per
# n-gram, so about 30 MB at a time.
_BATCH_CHARS = 100_000


def supported(vectorizer) -> bool:
    """True when `char_wb_counts` reproduces this vectorizer's `transform` exactly."""
    from sklearn.feature_extraction.text import HashingVectorizer

    p = vectorizer.get_params()
    return (type(vectorizer) is HashingVectorizer and p["analyzer"] == "char_wb" and p["input"] == "content"
            and p["lowercase"] and p["preprocessor"] is None and p["strip_accents"] is None
            and not p["alternate_sign"] and not p["binary"] and p["norm"] is None
            and p["dtype"] in (np.float64, "float64") and p["ngram_range"][0] >= 1)


def _rotl(x: np.ndarray, r: int) -> np.ndarray:
    return (x << np.uint32(r)) | (x >> np.uint32(32 - r))


def murmurhash3_32(data: np.ndarray, starts: np.ndarray, lengths: np.ndarray) -> np.ndarray:
    """MurmurHash3 x86 32-bit, seed 0, of data[s:s+n] for each (s, n), as signed int32 (scikit-learn's
    `murmurhash3_bytes_s32`). `data` is uint8 and must have 3 spare bytes after the last key."""
    h = np.zeros(len(starts), dtype=np.uint32)
    nblocks = lengths // 4
    d = data.astype(np.uint32)
    with np.errstate(over="ignore"):
        for j in range(int(nblocks.max(initial=0))):
            on = np.flatnonzero(nblocks > j)
            p = starts[on] + 4 * j
            k = d[p] | (d[p + 1] << np.uint32(8)) | (d[p + 2] << np.uint32(16)) | (d[p + 3] << np.uint32(24))
            k = _rotl(k * _C1, 15) * _C2
            hj = _rotl(h[on] ^ k, 13)
            h[on] = hj * np.uint32(5) + np.uint32(0xE6546B64)
        tail = lengths & 3
        on = np.flatnonzero(tail)
        if len(on):
            p = starts[on] + 4 * nblocks[on]
            t = tail[on]
            k = d[p] | np.where(t >= 2, d[p + 1] << np.uint32(8), 0).astype(np.uint32) \
                | np.where(t >= 3, d[p + 2] << np.uint32(16), 0).astype(np.uint32)
            h[on] ^= _rotl(k * _C1, 15) * _C2
        h ^= lengths.astype(np.uint32)
        h ^= h >> np.uint32(16)
        h *= np.uint32(0x85EBCA6B)
        h ^= h >> np.uint32(13)
        h *= np.uint32(0xC2B2AE35)
        h ^= h >> np.uint32(16)
    return h.view(np.int32)


def _utf8_len(codes: np.ndarray) -> np.ndarray:
    return 1 + (codes >= 0x80) + (codes >= 0x800) + (codes >= 0x10000)


def _batch(texts: list[str], ngram_range: tuple[int, int], n_features: int) -> sparse.csr_matrix:
    min_n, max_n = ngram_range
    # scikit-learn: lowercase, then each whitespace-separated word padded with one space on each side.
    words = [t.lower().split() for t in texts]
    n_words = np.fromiter(map(len, words), dtype=np.int64, count=len(words))
    flat = [w for ws in words for w in ws]
    if not flat:
        return sparse.csr_matrix((len(texts), n_features), dtype=np.float64)
    padded = " " + "  ".join(flat) + " "
    raw = padded.encode("utf-8")  # UnicodeEncodeError on a lone surrogate, as in scikit-learn
    codes = np.frombuffer(padded.encode("utf-32-le"), dtype=np.uint32)
    char_off = np.zeros(len(codes) + 1, dtype=np.int64)
    np.cumsum(_utf8_len(codes), out=char_off[1:])
    data = np.frombuffer(raw + b"\0\0\0", dtype=np.uint8)
    W = np.fromiter(map(len, flat), dtype=np.int64, count=len(flat)) + 2  # padded word lengths in characters
    word_start = np.zeros(len(flat), dtype=np.int64)
    np.cumsum(W[:-1], out=word_start[1:])
    word_doc = np.repeat(np.arange(len(texts)), n_words)
    starts, sizes, docs = [], [], []
    for n in range(min_n, max_n + 1):
        # A word yields its n-grams for every n up to its own length; a word shorter than min_n yields itself once.
        take = W >= n
        count = W[take] - n + 1
        if n == min_n and (~take).any():
            short = np.flatnonzero(~take)
            starts.append(word_start[short])
            sizes.append(W[short])
            docs.append(word_doc[short])
        if not len(count):
            continue
        first = np.repeat(word_start[take] - np.concatenate(([0], np.cumsum(count)[:-1])), count)
        starts.append(first + np.arange(int(count.sum())))
        sizes.append(np.full(int(count.sum()), n, dtype=np.int64))
        docs.append(np.repeat(word_doc[take], count))
    start, size, doc = np.concatenate(starts), np.concatenate(sizes), np.concatenate(docs)
    byte_start = char_off[start]
    h = murmurhash3_32(data, byte_start, char_off[start + size] - byte_start)
    col = np.abs(h.astype(np.int64)) % n_features  # abs(-2**31) in int64 is 2**31: scikit-learn's special case
    X = sparse.csr_matrix((np.ones(len(col)), (doc, col)), shape=(len(texts), n_features))
    X.sum_duplicates()
    return X


def char_wb_counts(vectorizer, texts) -> sparse.csr_matrix:
    """`vectorizer.transform(texts)` for a `supported` char_wb HashingVectorizer."""
    if isinstance(texts, str):
        raise ValueError("Iterable over raw text documents expected, string object received.")
    texts = list(texts)
    if not texts:
        raise ValueError("Cannot vectorize empty sequence.")
    ngram_range = tuple(vectorizer.ngram_range)
    out, batch, chars = [], [], 0
    for t in texts:
        if not isinstance(t, str):
            return vectorizer.transform(texts)
        batch.append(t)
        chars += len(t)
        if chars >= _BATCH_CHARS:
            out.append(_batch(batch, ngram_range, vectorizer.n_features))
            batch, chars = [], 0
    if batch:
        out.append(_batch(batch, ngram_range, vectorizer.n_features))
    return out[0] if len(out) == 1 else sparse.vstack(out).tocsr()


def hashed_counts(vectorizer, texts) -> sparse.csr_matrix:
    """`vectorizer.transform(texts)`, through the numpy path when it reproduces the vectorizer."""
    return char_wb_counts(vectorizer, texts) if supported(vectorizer) else vectorizer.transform(texts)
