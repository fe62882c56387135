"""OrangeSum as a checksummed asset: where it is read from, what a wrong file gets, and the import from a clone
(tested on small HTML pages written here, shaped like the repository's raw pages)."""

import gzip
import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from training import orangesum
from training.orangesum import AssetError, article_text, data_dir, read_row, verified_path
from training.orangesum_import import import_clone, parse_page

PAGE = """<!DOCTYPE html><html><head><meta charset="utf-8"/><title>{title}</title>
<meta content="AFP" property="author"/><meta content="{section}" property="article:section"/>
<meta content="https://actu.orange.fr/monde/{slug}.html" property="og:url"/></head><body>
<div class="menu"><p>Menu: A la une</p></div>
<article><div class="provider-afp-news" itemprop="articleBody"><!-- Date --><p class="date"><span itemprop="author"
 itemscope=""><span itemprop="name">AFP</span></span>, publié le jeudi 02 juillet 2020</p><!-- TEXTE -->
<p>Ankara a proposé   d'accueillir des pourparlers.</p><p><strong>- "Sous-titre" -</strong></p><p> </p>
<p>Le ministre l'a dit <a href="x">mardi</a>.<br/>Fin.</p></div><!-- articleBody --></article>
<div class="fil-info"><p>Autre article</p></div></body></html>"""


def _clone(tmp_path: Path) -> Path:
    clone = tmp_path / "OrangeSum"
    (clone / "data/docs/parsed").mkdir(parents=True)
    (clone / "data/docs/raw").mkdir(parents=True)
    for n, section in ((12, "Monde"), (3, "")):
        (clone / f"data/docs/parsed/{n}.json").write_text(json.dumps(
            {"article": "ignored", "date": "2020-07-02", "heading": f"Résumé {n}", "title": f"Titre {n}"}))
        (clone / f"data/docs/raw/{n}.txt").write_text(PAGE.format(title=f"Titre {n}", section=section,
                                                                   slug=f"article-{n}"))
    (clone / "data/docs/parsed/7.json").write_text(json.dumps({"date": "2019-01-01", "heading": "h", "title": "t"}))
    return clone


def test_parse_page_keeps_the_article_body_paragraphs_only():
    page = parse_page(PAGE.format(title="T", section="Monde", slug="s"))
    assert page == {"section": "Monde", "author": "AFP", "url": "https://actu.orange.fr/monde/s.html",
                    "text": "Ankara a proposé d'accueillir des pourparlers.\n- \"Sous-titre\" -\nLe ministre l'a dit mardi.Fin."}


def test_import_builds_rows_in_file_number_order_with_every_field(tmp_path):
    result = import_clone(_clone(tmp_path), tmp_path / "data")
    rows = [json.loads(line) for line in gzip.open(result["path"], "rt", encoding="utf-8")]
    assert [r["id"] for r in rows] == ["orangesum-3", "orangesum-7", "orangesum-12"]
    assert list(rows[0]) == ["id", "date", "section", "author", "url", "title", "abstract", "text"]
    # no article:section on page 3: the URL's first path segment stands in
    assert rows[0]["section"] == "monde" and rows[2]["section"] == "Monde"
    assert rows[1]["text"] == "" and rows[1]["url"] == ""  # a parsed JSON without its raw page
    assert rows[2]["title"] == "Titre 12" and rows[2]["abstract"] == "Résumé 12"
    raw = gzip.open(result["path"], "rb").read()
    assert result["content_sha256"] == hashlib.sha256(raw).hexdigest() and result["rows"] == 3
    assert result["matches_labels"] is False  # these pages are not the real corpus


def test_import_refuses_a_folder_that_is_not_a_clone(tmp_path):
    with pytest.raises(AssetError, match="clone of the OrangeSum repository"):
        import_clone(tmp_path, tmp_path / "data")


def test_cli_import_warns_and_exits_1_when_the_content_is_not_the_labelled_file(tmp_path):
    out = subprocess.run([sys.executable, "-m", "training.cli", "data", "import-orangesum", str(_clone(tmp_path)),
                          "--data-dir", str(tmp_path / "d")], capture_output=True, text=True)
    assert out.returncode == 1 and "not the file the labels in data/real/ were made on" in out.stderr
    assert (tmp_path / "d/orangesum/articles.jsonl.gz").is_file()


def test_a_rebuilt_file_with_the_expected_content_is_accepted(tmp_path, monkeypatch):
    result = import_clone(_clone(tmp_path), tmp_path / "data")
    monkeypatch.setenv("TPC_DATA_DIR", str(tmp_path / "data"))
    with pytest.raises(AssetError, match="sha256 .* is not the expected"):
        verified_path()
    monkeypatch.setattr(orangesum, "CONTENT_SHA256", result["content_sha256"])
    orangesum._VERIFIED.clear()
    assert verified_path() == tmp_path / "data" / "orangesum" / "articles.jsonl.gz"


def test_a_wrong_file_is_refused_with_what_to_do(tmp_path, monkeypatch):
    path = tmp_path / "orangesum" / "articles.jsonl.gz"
    path.parent.mkdir()
    path.write_bytes(gzip.compress(b'{"id": "orangesum-1", "text": "x"}\n'))
    monkeypatch.setenv("TPC_DATA_DIR", str(tmp_path))
    with pytest.raises(AssetError, match="import-orangesum"):
        list(orangesum.iter_rows())


def test_missing_file_names_the_path_and_the_way_to_get_it(tmp_path, monkeypatch):
    monkeypatch.setenv("TPC_DATA_DIR", str(tmp_path / "nowhere"))
    with pytest.raises(AssetError, match=r"nowhere/orangesum/articles.jsonl.gz.*import-orangesum"):
        verified_path()


def test_environment_wins_over_config_which_wins_over_the_default(monkeypatch):
    monkeypatch.delenv("TPC_DATA_DIR", raising=False)
    assert data_dir() == Path("../shared/data")
    assert data_dir("/data") == Path("/data")
    monkeypatch.setenv("TPC_DATA_DIR", "/env")
    assert data_dir("/data") == Path("/env")


def test_the_shared_corpus_verifies_and_reads_as_articles():
    assert os.environ.get("TPC_DATA_DIR")  # set by conftest to ../shared/data
    rows = []
    for row in orangesum.iter_rows():
        rows.append(row)
        if len(rows) == 3:
            break
    article = read_row(rows[0])
    assert article.passages[0].is_title and article.passages[0].text == rows[0]["title"]
    assert article_text(rows[0]).startswith(rows[0]["title"] + "\n")
