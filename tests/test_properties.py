"""Property-based tests (Hypothesis): the article reader and the data loaders on arbitrary input.

Reader: never raises on any str (lone surrogates included); every passage is non-empty, stripped and at most
`max_chars` long (no slack is needed: a sentence longer than the limit is cut at a space, or at the limit when it
has none); indices are 0..n-1; passages only hold characters of the input, in order; on text without boilerplate
or closing quotes nothing is dropped. Loaders: any file either loads into rows that satisfy the schema, or fails
with a DataError naming the file and the line.
"""

import datetime
import json
import os
import tempfile
from pathlib import Path

from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training import STANCES, TOPICS
from training.articles import _clean, read_article, text_digest
from training.data import DataError, load_files, load_jsonl

# No example database: tests never write into the repository. TPC_HYPOTHESIS_EXAMPLES=2000 for a deeper run.
SETTINGS = settings(max_examples=int(os.environ.get("TPC_HYPOTHESIS_EXAMPLES", "150")), deadline=None, database=None,
                    suppress_health_check=[HealthCheck.too_slow])

any_text = st.text(st.characters(exclude_categories=()), max_size=3000)  # every code point, surrogates too
WORDS = ["La", "Turquie", "refuse", "M.", "Mme", "l'embargo", "Ankara", "«", "»", "(AFP)", "...", "!", "?", "...",
         "Partager", "Publicité", "12", "date", "2025-08-21", "08.01.22", "18:50", "abonnez-vous", "newsletter",
         "Lire aussi", "commentaires", "é", "e\u0301", "\x00", "\xa0", "\t", "\n", "\n\n", "\r\n", "x" * 900]
article_like = st.lists(st.sampled_from(WORDS), max_size=400).map(" ".join)
max_chars = st.integers(min_value=20, max_value=900)


def _is_subsequence(needle: str, haystack: str) -> bool:
    it = iter(haystack)
    return all(c in it for c in needle)


def _check(article, max_chars):
    assert [p.index for p in article.passages] == list(range(len(article.passages)))
    for p in article.passages:
        assert p.text and p.text == p.text.strip()
        assert len(p.text) <= max_chars
        assert len(p.digest) == 12


@SETTINGS
@given(text=st.one_of(any_text, article_like), limit=max_chars)
def test_reader_never_raises_and_bounds_passages(text, limit):
    article = read_article(text, max_chars=limit)
    _check(article, limit)
    cleaned = _clean(text)
    for p in article.passages:  # no invented text: each passage's characters appear in the input, in order
        assert _is_subsequence(p.text, cleaned)
    if article.title is not None:  # a title longer than max_chars is windowed like any paragraph
        title = [p.text for p in article.passages if p.is_title]
        assert article.passages[0].is_title and all(_is_subsequence(t, article.title) for t in title)


# Letters, sentence ends, capitals and every kind of whitespace, but nothing the reader drops on purpose
# (no digits, no boilerplate words, no closing quotes): every visible character must come out, in order.
plain = st.text(st.sampled_from("abc XYZ.!?\n\t\r\x00\xa0"), max_size=4000)


@SETTINGS
@given(text=plain, limit=max_chars)
def test_reader_loses_nothing_on_plain_text(text, limit):
    article = read_article(text, max_chars=limit)
    _check(article, limit)
    got = "".join("".join(article.texts).split())
    assert got == "".join(text.replace("\x00", " ").split())


@SETTINGS
@given(text=any_text)
def test_digest_ignores_whitespace_layout(text):
    assert text_digest(text) == text_digest("  " + "\n".join(text.split()) + " \t")


@SETTINGS
@given(day=st.dates(min_value=datetime.date(1900, 1, 1), max_value=datetime.date(2099, 12, 31)))
def test_valid_dates_in_every_header_form(day):
    body = "Ankara propose sa médiation."
    assert read_article(f" date {day.isoformat()} {body}").date == day.isoformat()
    assert read_article(f" date {day:%Y-%m} {body}").date == f"{day:%Y-%m}"
    art = read_article(f"{day:%d.%m.%y}\n18:50\n{body}")
    if day.year >= 2000:  # a two-digit year is read as 20yy
        assert art.date == day.isoformat() and art.texts == [body]
    assert read_article(f"{day:%d.%m.%Y}\n{body}").date == day.isoformat()


@SETTINGS
@given(y=st.integers(1000, 9999), m=st.integers(0, 99), d=st.integers(0, 99))
def test_any_date_header_gives_a_real_date_or_none(y, m, d):
    for text in (f" date {y:04d}-{m:02d}-{d:02d} Texte.", f"{d:02d}.{m:02d}.{y:04d}\nTexte."):
        date = read_article(text).date
        try:
            real = datetime.date(y, m, d).isoformat()
        except ValueError:
            real = None
        assert date == real


# -- loaders ---------------------------------------------------------------------------------------------------
json_scalar = st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), st.text(max_size=20))
json_value = st.recursive(json_scalar, lambda c: st.one_of(st.lists(c, max_size=4),
                                                         st.dictionaries(st.text(max_size=8), c, max_size=4)),
                          max_leaves=10)
topics_st = st.lists(st.sampled_from(list(TOPICS) + ["war", ""]), max_size=4)


@st.composite
def rows(draw):
    """Mostly near-valid rows with one or two things wrong, sometimes any JSON value at all."""
    if draw(st.integers(0, 9)) == 0:
        return draw(json_value)
    topics = draw(topics_st)
    row = {"id": draw(st.one_of(st.text(min_size=1, max_size=8), json_value)),
           "text": draw(st.one_of(st.text(max_size=40), json_value)),
           "topics": topics,
           "stance": draw(st.one_of(st.fixed_dictionaries({t: st.sampled_from(list(STANCES) + ["pro"]) for t in topics}),
                                    json_value)),
           "event": draw(st.one_of(st.just("ev-1"), json_value)),
           "source": draw(st.sampled_from(["synthetic", "seed", "web", None]))}
    for key in draw(st.lists(st.sampled_from(sorted(row) + ["date", "extra"]), max_size=2)):
        if key in row and draw(st.booleans()):
            del row[key]
        else:
            row[key] = draw(st.one_of(st.just("2024-02-29"), st.just("2023-02-29"), json_value))
    return row


def _valid(e) -> bool:
    return (isinstance(e.text, str) and e.text.strip() and isinstance(e.id, str) and e.id
            and len(set(e.topics)) == len(e.topics) and set(e.topics) <= set(TOPICS)
            and set(e.stance) == set(e.topics) and set(e.stance.values()) <= set(STANCES)
            and e.source in ("synthetic", "seed") and isinstance(e.event, str) and e.event)


@SETTINGS
@given(lines=st.lists(st.one_of(rows().map(lambda r: json.dumps(r, ensure_ascii=False)), st.just(""),
                                st.text(st.characters(exclude_characters="\n", exclude_categories=("Cs",)), max_size=30)), max_size=6))
def test_loader_loads_valid_rows_or_names_file_and_line(lines):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "rows.jsonl"
        path.write_text("\n".join(lines) + "\n", encoding="utf-8")
        try:
            corpus = load_jsonl(path)
        except DataError as exc:
            message = str(exc)
            assert message.startswith(str(path) + ":")
            where = message[len(str(path)) + 1:].split(":")[0]
            if where.isdigit():  # a row error: the line exists and is not blank
                assert 1 <= int(where) <= len(lines) and lines[int(where) - 1].strip()
            else:
                assert "no passages" in message and not any(line.strip() for line in lines)
            return
        assert len(corpus) == sum(1 for line in lines if line.strip())
        assert all(_valid(e) for e in corpus.examples)


@SETTINGS
@given(chunks=st.lists(st.binary(max_size=60), min_size=1, max_size=5))
def test_loader_on_arbitrary_bytes_raises_only_data_errors(chunks):
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bytes.jsonl"
        path.write_bytes(b"\n".join(chunks))
        try:
            load_files(["*.jsonl"], root=tmp)
        except DataError as exc:
            assert str(path) in str(exc)


@settings(max_examples=300, deadline=None)
@given(st.text())
def test_fold_table_equals_folding_the_whole_string(text):
    from training.lexicon import fold, fold_reference

    assert fold(text) == fold_reference(text)


def test_fold_every_code_point():
    from training.lexicon import fold, fold_reference

    every = "".join(chr(c) for c in range(0x110000) if not 0xD800 <= c < 0xE000)
    assert fold(every) == fold_reference(every)

