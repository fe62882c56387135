"""`tpc data import-orangesum CLONE_DIR`: build orangesum/articles.jsonl.gz from a clone of the public OrangeSum
repository (github.com/Tixierae/OrangeSum), so a user elsewhere gets the file the labels were made on.

For each `data/docs/parsed/<n>.json` of the clone (title, heading, date) the raw page `data/docs/raw/<n>.txt`
gives the section (`article:section`, else the URL's first path segment), the author, the URL (`og:url`) and the
body: the `<p>` elements of the `articleBody` element, without its date line, one paragraph a line.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import re
from html.parser import HTMLParser
from pathlib import Path
from urllib.parse import urlparse

from training.orangesum import CONTENT_SHA256, RELATIVE_PATH, AssetError

FIELDS = ("id", "date", "section", "author", "url", "title", "abstract", "text")


class _PageParser(HTMLParser):
    """Meta properties, and the paragraphs inside the element whose itemprop is articleBody."""

    def __init__(self):
        super().__init__(convert_charrefs=True)
        self.meta: dict[str, str] = {}
        self.paragraphs: list[str] = []
        self._body_depth = 0  # > 0 inside articleBody: the open elements below it, itself included
        self._p: list[str] | None = None
        self._skip_p = False
        self._author_span = 0
        self.author_name = ""

    def handle_starttag(self, tag, attrs):
        a = dict(attrs)
        if tag == "meta" and a.get("property") and a.get("content") is not None:
            self.meta.setdefault(a["property"], a["content"])
        if self._body_depth:
            if tag not in ("br", "img", "meta", "hr", "input", "link"):
                self._body_depth += 1
            if tag == "p":
                self._p, self._skip_p = [], "date" in (a.get("class") or "").split()
            if a.get("itemprop") == "name" and self._skip_p:
                self._author_span = 1
        elif a.get("itemprop") == "articleBody":
            self._body_depth = 1

    def handle_endtag(self, tag):
        if not self._body_depth or tag in ("br", "img", "meta", "hr", "input", "link"):
            return
        if tag == "p" and self._p is not None:
            text = " ".join("".join(self._p).split())
            if text and not self._skip_p:
                self.paragraphs.append(text)
            self._p = None
        self._author_span = 0
        self._body_depth -= 1

    def handle_data(self, data):
        if self._author_span:
            self.author_name += data.strip()
        if self._p is not None:
            self._p.append(data)


def parse_page(html: str) -> dict:
    """section, author, url and text of one raw page."""
    parser = _PageParser()
    parser.feed(html)
    url = parser.meta.get("og:url", "")
    section = parser.meta.get("article:section") or (urlparse(url).path.strip("/").split("/") or [""])[0]
    author = parser.meta.get("author") or parser.author_name
    return {"section": section, "author": author, "url": url, "text": "\n".join(parser.paragraphs)}


def build_rows(clone_dir: Path):
    parsed = Path(clone_dir) / "data" / "docs" / "parsed"
    raw = Path(clone_dir) / "data" / "docs" / "raw"
    if not parsed.is_dir():
        raise AssetError(f"{parsed}: not found; CLONE_DIR must be a clone of the OrangeSum repository "
                         "(git clone https://github.com/Tixierae/OrangeSum)")
    numbers = sorted(int(p.stem) for p in parsed.glob("*.json") if re.fullmatch(r"\d+", p.stem))
    for n in numbers:
        doc = json.loads((parsed / f"{n}.json").read_text(encoding="utf-8"))
        page_path = raw / f"{n}.txt"
        page = parse_page(page_path.read_text(encoding="utf-8", errors="replace")) if page_path.is_file() else \
            {"section": "", "author": "", "url": "", "text": ""}
        yield {"id": f"orangesum-{n}", "date": doc.get("date"), "section": page["section"],
               "author": page["author"], "url": page["url"], "title": doc.get("title"),
               "abstract": doc.get("heading"), "text": page["text"]}


def import_clone(clone_dir: str | Path, data_dir: str | Path) -> dict:
    """Write DATA_DIR/orangesum/articles.jsonl.gz; returns rows, path, content sha256 and whether it matches."""
    out = Path(data_dir) / RELATIVE_PATH
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = out.with_name(out.name + ".partial")
    h, n = hashlib.sha256(), 0
    with tmp.open("wb") as raw, gzip.GzipFile(filename="articles.jsonl", mode="wb", fileobj=raw, mtime=0) as fh:
        for row in build_rows(Path(clone_dir)):
            line = (json.dumps({k: row[k] for k in FIELDS}, ensure_ascii=False) + "\n").encode("utf-8")
            fh.write(line)
            h.update(line)
            n += 1
    if n == 0:
        tmp.unlink()
        raise AssetError(f"{clone_dir}: no data/docs/parsed/<n>.json files found")
    tmp.replace(out)
    digest = h.hexdigest()
    return {"rows": n, "path": str(out), "content_sha256": digest, "matches_labels": digest == CONTENT_SHA256}
