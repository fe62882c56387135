"""The article reader on bad and extreme input: it never crashes, never invents text, and stays linear in size."""

import json
import time
from pathlib import Path

import pytest

from training.articles import MAX_PASSAGE_CHARS, read_article, split_sentences, text_digest

REPO = Path(__file__).resolve().parents[1]


def _check_passages(article, max_chars=MAX_PASSAGE_CHARS):
    assert [p.index for p in article.passages] == list(range(len(article.passages)))
    for p in article.passages:
        assert p.text and p.text == p.text.strip()
        assert len(p.text) <= max_chars


@pytest.mark.parametrize("text", ["", " ", "\n\n\t \r\n", "\x00\x00", "\xa0\u2003\n"])
def test_empty_and_whitespace_give_no_passages(text):
    article = read_article(text)
    assert article.passages == [] and article.title is None and article.date is None


def test_nul_characters_become_spaces():
    article = read_article("La Turquie\x00refuse\x00 l'embargo.")
    assert article.texts == ["La Turquie refuse l'embargo."]


def test_text_decoded_from_invalid_utf8_is_read_and_digested():
    raw = b"Ankara d\xe9ment \xff\xfe toute livraison.\n\x80\x81 Le minist\xe8re se tait."
    text = raw.decode("utf-8", errors="surrogateescape")  # lone surrogates survive into the reader
    article = read_article(text)
    _check_passages(article)
    assert len(article.passages) == 2
    assert all(len(p.digest) == 12 for p in article.passages)
    replaced = read_article(raw.decode("utf-8", errors="replace"))
    assert "\ufffd" in replaced.passages[0].text


def test_binary_garbage_never_raises():
    data = bytes(range(256)) * 40
    article = read_article(data.decode("latin-1"))
    _check_passages(article)


def test_one_character_article():
    article = read_article("x")
    assert article.texts == ["x"] and article.title is None


def test_non_french_text_is_split_like_any_other():
    article = read_article("The ministry declined to comment. " * 40 + "\n" + "Министерство отказалось. " * 40)
    _check_passages(article)
    assert "".join(article.texts).replace(" ", "") == (
        "The ministry declined to comment. " * 40 + "Министерство отказалось. " * 40).replace(" ", "")


def test_long_sentence_without_punctuation_is_cut_at_spaces():
    words = [f"mot{i}" for i in range(3000)]
    article = read_article(" ".join(words))
    _check_passages(article)
    assert len(article.passages) > 1
    assert " ".join(article.texts).split() == words  # cut between words, nothing lost


def test_text_without_any_space_is_cut_at_the_limit():
    article = read_article("x" * 2000)
    assert [len(p.text) for p in article.passages] == [800, 800, 400]


@pytest.mark.parametrize("limit", [0, -5])
def test_window_size_below_one_is_refused(limit):
    with pytest.raises(ValueError, match="max_chars must be at least 1"):
        read_article("Un texte. Deux textes.", max_chars=limit)


def test_tiny_windows_still_cover_the_text():
    article = read_article("Ankara refuse. Moscou insiste.", max_chars=1)
    assert "".join(article.texts) == "Ankararefuse.Moscouinsiste."


def test_only_boilerplate_gives_no_passages():
    page = "Partager\nPublicité\n12 commentaires\nNewsletter\nLire aussi : autre chose\nQue pensez-vous de cet article ?\nTexte du pied"
    assert read_article(page).passages == []


@pytest.mark.parametrize("size", [10_000_000])
def test_ten_megabyte_article_is_read_in_bounded_passages(size):
    text = ("La Turquie a dit non. Le ministre de la Défense parle aux journalistes à Ankara. " * 130_000)[:size]
    start = time.perf_counter()
    article = read_article(text)
    elapsed = time.perf_counter() - start
    _check_passages(article)
    assert len(article.passages) > 10_000
    # A loose bound (measured ~5 s on a busy 2-core machine): it only catches a return to quadratic splitting.
    assert elapsed < 60


@pytest.mark.parametrize("text", [
    ("A. " * 400_000)[:1_000_000],  # a run of initials: every split is re-joined as an abbreviation
    ("mot " * 250_000)[:1_000_000],  # one run-on sentence of 1 MB
])
def test_pathological_megabyte_inputs_are_linear(text):
    start = time.perf_counter()
    article = read_article(text)
    _check_passages(article)
    # The previous splitter took minutes on the first input (quadratic re-joining); now about a second.
    assert time.perf_counter() - start < 30


def test_abbreviations_do_not_end_sentences():
    assert split_sentences("M. Fidan a parlé. Mme Dupont aussi. Le 3 av. J.-C. Rien.") == [
        "M. Fidan a parlé.", "Mme Dupont aussi.", "Le 3 av. J.-C. Rien."]


def test_closing_quote_kept_at_sentence_cut():
    assert split_sentences("Il a dit « non. » Ensuite il est parti.") == ["Il a dit « non. »", "Ensuite il est parti."]


# -- dates: the three header forms of the seed articles ----------------------------------------------------------
@pytest.mark.parametrize("text,date,first", [
    (" date 2025-08-21 La Turquie n'enverra pas de troupes.", "2025-08-21", "La Turquie n'enverra pas de troupes."),
    (" date 2025-07 Ankara propose sa médiation.", "2025-07", "Ankara propose sa médiation."),
    ("08.01.22\n18:50\nLa Turquie exhorte la Russie.", "2022-01-08", "La Turquie exhorte la Russie."),
    ("29.02.2024\nAnkara accueille les pourparlers.", "2024-02-29", "Ankara accueille les pourparlers."),
])
def test_date_headers(text, date, first):
    article = read_article(text)
    assert article.date == date and article.texts[0] == first


@pytest.mark.parametrize("text", [
    " date 2025-13-01 Texte.", " date 2025-02-30 Texte.", " date 2025-00 Texte.",
    "31.02.22\nTexte.", "00.05.22\nTexte.", "12.13.2022\nTexte.", "29.02.23\nTexte.",
])
def test_impossible_dates_are_rejected(text):
    article = read_article(text)
    assert article.date is None
    assert article.texts[-1] == "Texte."


def test_seed_articles_split_as_the_gold_labels_expect():
    """The gold labels are keyed by passage digest: the reader must split the seeds exactly as when they were made."""
    rows = [json.loads(line) for line in (REPO / "data" / "seeds_gold.jsonl").read_text(encoding="utf-8").splitlines()]
    by_article: dict[str, list[dict]] = {}
    for r in rows:
        by_article.setdefault(r["id"].split("#")[0], []).append(r)
    for aid, labelled in by_article.items():
        article = read_article((REPO / "seeds" / f"{aid}.txt").read_text(encoding="utf-8"), id=aid)
        _check_passages(article)
        assert [text_digest(r["text"]) for r in sorted(labelled, key=lambda r: int(r["id"].split("#")[1]))] == [
            p.digest for p in article.passages], aid
    assert {a: read_article((REPO / "seeds" / f"{a}.txt").read_text(encoding="utf-8")).date for a in by_article} == {
        "000_7557a05424130f05": "2025-08-21", "001_294c4f5c5fe71038": "2022-01-08",
        "002_99e90f51f9341215": "2025-07", "003_dab20d11591470dc": None, "004_8b8f0449d90cfa34": None}


def test_a_title_line_that_is_all_boilerplate_is_no_title():
    """Found by Hypothesis in CI: the title line was dropped as boilerplate but still reported as the title."""
    article = read_article("0 0 ABONNEZ-VOUS\n:", max_chars=20)
    assert article.title is None
    assert [(p.text, p.is_title) for p in article.passages] == [(":", False)]
