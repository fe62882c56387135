"""OrangeSum, the real French news corpus, as a checksummed asset read from a data directory (never copied here).

The data directory is the config key `data.data_dir` (default `../shared/data`, relative to where `tpc` runs),
overridden by the environment variable `TPC_DATA_DIR`. The file is `orangesum/articles.jsonl.gz` below it; its
sha256 must be the one this code was labelled against, because the labels in `data/real/` are keyed by article id
and passage digest.
"""

from __future__ import annotations

import gzip
import hashlib
import json
import os
from collections.abc import Iterable, Iterator
from pathlib import Path

from training.articles import Article, read_article
from training.errors import TPCError

DEFAULT_DATA_DIR = "../shared/data"
RELATIVE_PATH = Path("orangesum") / "articles.jsonl.gz"
SHA256 = "89b975f76c43732001887133b4a37a33d12d4c4a7ec15dcb6464afdd6a1f0e5e"
# The sha256 of the decompressed JSONL: what `tpc data import-orangesum` rebuilds (gzip headers carry a file name
# and a time, so a rebuilt .gz has other bytes around the same content).
CONTENT_SHA256 = "b06fe36d0d42946eb47c0ece11ae0c241fdc67030e74264fc7e0cbd0948a78cd"
# What `tpc data import-orangesum` is checked against, and where the data comes from.
HOW_TO_GET = ("get it with `tpc data import-orangesum CLONE_DIR` from a clone of the public OrangeSum repository "
              "(github.com/Tixierae/OrangeSum), or point TPC_DATA_DIR (or the config key data.data_dir) at a "
              "directory holding orangesum/articles.jsonl.gz")

# Turkey is "named" in an article when this matches its title or text (the corpus' PROVENANCE.md uses the same).
TURKEY_PATTERN = r"turqu|turc|ankara|erdo"


class AssetError(TPCError, ValueError):
    """The OrangeSum file is missing or is not the file the labels were made on."""


def data_dir(configured: str | None = None) -> Path:
    """TPC_DATA_DIR wins over the config key, which wins over the default."""
    return Path(os.environ.get("TPC_DATA_DIR") or configured or DEFAULT_DATA_DIR)


def articles_path(configured: str | None = None) -> Path:
    return data_dir(configured) / RELATIVE_PATH


def sha256_of(path: Path, decompress: bool = False) -> str:
    h = hashlib.sha256()
    with (gzip.open(path, "rb") if decompress else path.open("rb")) as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            h.update(block)
    return h.hexdigest()


_VERIFIED: dict[tuple[str, float, int], bool] = {}  # (path, mtime, size) -> ok: check a 28 MB file once a process


def verified_path(configured: str | None = None) -> Path:
    """The articles file, after checking it exists and has the expected sha256 (of the file as published, or of
    its decompressed content for a file rebuilt by `tpc data import-orangesum`)."""
    path = articles_path(configured)
    if not path.is_file():
        raise AssetError(f"OrangeSum not found at {path} (data directory {data_dir(configured)}): {HOW_TO_GET}")
    st = path.stat()
    key = (str(path.resolve()), st.st_mtime, st.st_size)
    if key not in _VERIFIED:
        file_sha = sha256_of(path)
        try:
            _VERIFIED[key] = file_sha == SHA256 or sha256_of(path, decompress=True) == CONTENT_SHA256
        except (OSError, EOFError, gzip.BadGzipFile):
            _VERIFIED[key] = False
        if not _VERIFIED[key]:
            raise AssetError(
                f"{path}: sha256 {file_sha} is not the expected {SHA256} (nor is its content the expected "
                f"{CONTENT_SHA256}); the labels in data/real/ are keyed to that file's passages. Restore the "
                f"original file: {HOW_TO_GET}")
    if not _VERIFIED[key]:
        raise AssetError(f"{path}: not the expected OrangeSum file (sha256 mismatch); {HOW_TO_GET}")
    return path


def iter_rows(configured: str | None = None, path: Path | None = None) -> Iterator[dict]:
    """The rows of the verified articles file (or of `path`, unchecked, for tests and imports)."""
    path = path if path is not None else verified_path(configured)
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if line.strip():
                try:
                    yield json.loads(line)
                except json.JSONDecodeError as exc:
                    raise AssetError(f"{path}:{n}: invalid JSON: {exc.msg}") from None


def article_text(row: dict) -> str:
    """The text a scorer sees for one row: the title line, then the body paragraphs (the abstract usually
    repeats the first paragraph, so it is left out)."""
    title = (row.get("title") or "").strip()
    body = row.get("text") or ""
    return f"{title}\n{body}" if title else body


def read_row(row: dict) -> Article:
    article = read_article(article_text(row), id=row["id"])
    article.date = row.get("date") or article.date
    return article


def load_articles(ids: Iterable[str] | None = None, configured: str | None = None) -> dict[str, dict]:
    """Rows by id (all of them, or only `ids`)."""
    wanted = None if ids is None else set(ids)
    return {r["id"]: r for r in iter_rows(configured) if wanted is None or r["id"] in wanted}
