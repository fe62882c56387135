"""Labelled data: load and validate JSONL (file and line in every error), digests, per-task views."""

from __future__ import annotations

import glob
import hashlib
import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training import STANCES, TOPICS
from training.articles import _valid_date, read_article, text_digest
from training.errors import TPCError

_ISO_DATE = re.compile(r"\d{4}-\d{2}(?:-\d{2})?")
PASSAGE_KEYS = {"id", "text", "topics", "stance", "event", "source"}
OPTIONAL_KEYS = {"article_id", "passage_index", "digest", "date", "phenomenon"}


class DataError(TPCError, ValueError):
    """A data file that cannot be used; the message names the file and line."""


@dataclass
class Example:
    id: str
    text: str
    topics: list[str]
    stance: dict[str, str]
    event: str
    source: str
    date: str | None = None
    origin: str = ""  # "path:line", for error reports


@dataclass
class Corpus:
    examples: list[Example]
    files: list[str] = field(default_factory=list)

    def __len__(self) -> int:
        return len(self.examples)

    @property
    def texts(self) -> list[str]:
        return [e.text for e in self.examples]

    @property
    def groups(self) -> list[str]:
        return [e.event for e in self.examples]

    def topic_matrix(self, labels=TOPICS) -> np.ndarray:
        return np.array([[int(t in e.topics) for t in labels] for e in self.examples], dtype=np.int64)

    def stance_pairs(self) -> tuple[list[str], list[str], list[str], list[int]]:
        """(texts, topics, stances, example index) for every (passage, present topic) pair."""
        texts, topics, stances, index = [], [], [], []
        for i, e in enumerate(self.examples):
            for t in e.topics:
                texts.append(e.text)
                topics.append(t)
                stances.append(e.stance[t])
                index.append(i)
        return texts, topics, stances, index

    def digest(self) -> str:
        h = hashlib.sha256()
        for e in self.examples:
            h.update(json.dumps([e.id, e.text, sorted(e.topics), e.stance], ensure_ascii=False, sort_keys=True).encode())
        return h.hexdigest()[:16]

    def __add__(self, other: "Corpus") -> "Corpus":
        return Corpus(self.examples + other.examples, self.files + other.files)

    def subset(self, idx) -> "Corpus":
        return Corpus([self.examples[i] for i in idx], self.files)

    def to_dataset(self, task: str = "topic"):
        """A Hugging Face `datasets.Dataset` for one task: topic (multi-hot labels) or stance (pairs)."""
        from datasets import Dataset

        if task == "topic":
            return Dataset.from_dict(
                {"id": [e.id for e in self.examples], "text": self.texts, "labels": self.topic_matrix().tolist(),
                 "event": self.groups}
            )
        texts, topics, stances, index = self.stance_pairs()
        return Dataset.from_dict(
            {"text": texts, "topic": topics, "label": [STANCES.index(s) for s in stances],
             "event": [self.examples[i].event for i in index]}
        )


def _check_row(row: object, where: str) -> Example:
    if not isinstance(row, dict):
        raise DataError(f"{where}: expected a JSON object, got {type(row).__name__}")
    missing = PASSAGE_KEYS - row.keys()
    if missing:
        raise DataError(f"{where}: missing key(s) {sorted(missing)}")
    unknown = row.keys() - PASSAGE_KEYS - OPTIONAL_KEYS
    if unknown:
        raise DataError(f"{where}: unknown key(s) {sorted(unknown)}; allowed: {sorted(PASSAGE_KEYS | OPTIONAL_KEYS)}")
    text, topics, stance = row["text"], row["topics"], row["stance"]
    if not isinstance(text, str) or not text.strip():
        raise DataError(f"{where}: `text` must be a non-empty string")
    if not isinstance(row["id"], str) or not row["id"]:
        raise DataError(f"{where}: `id` must be a non-empty string")
    if not isinstance(topics, list) or any(t not in TOPICS for t in topics) or len(set(topics)) != len(topics):
        raise DataError(f"{where}: `topics` must be a list of distinct labels from {list(TOPICS)}, got {topics!r}")
    if not isinstance(stance, dict) or set(stance) != set(topics):
        raise DataError(f"{where}: `stance` must have exactly one entry per topic present {topics}, got {stance!r}")
    bad = {k: v for k, v in stance.items() if v not in STANCES}
    if bad:
        raise DataError(f"{where}: stance value(s) {bad} not in {list(STANCES)}")
    if not isinstance(row["event"], str) or not row["event"]:
        raise DataError(f"{where}: `event` must be a non-empty string")
    if row["source"] not in ("synthetic", "seed"):
        raise DataError(f"{where}: `source` must be 'synthetic' (written) or 'seed' (real), got {row['source']!r}")
    # Temporal splits order events by `date`: a value that is not a real date would sort silently wrong.
    date = row.get("date")
    if date is not None and not (isinstance(date, str) and _ISO_DATE.fullmatch(date) and _valid_date(*date.split("-"))):
        raise DataError(f"{where}: `date` must be YYYY-MM-DD or YYYY-MM (a real date) or null, got {date!r}")
    return Example(row["id"], text, list(topics), dict(stance), row["event"], row["source"], row.get("date"), where)


def load_jsonl(path: str | Path) -> Corpus:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: data file not found" if not path.exists() else f"{path}: not a regular file")
    examples: list[Example] = []
    try:
        fh = path.open("rb")
    except OSError as exc:
        raise DataError(f"{path}: cannot read ({exc.strerror})") from None
    with fh:
        for n, raw in enumerate(fh, 1):
            where = f"{path}:{n}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{where}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
            if not line.strip():
                continue
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: invalid JSON: {exc.msg} (column {exc.colno})") from None
            examples.append(_check_row(row, where))
    if not examples:
        raise DataError(f"{path}: no passages (the file is empty or holds only blank lines)")
    return Corpus(examples, [str(path)])


def _unique_ids(corpus: Corpus) -> Corpus:
    seen: dict[str, str] = {}
    for e in corpus.examples:
        if e.id in seen:
            raise DataError(f"{e.origin}: duplicate id {e.id!r} (first at {seen[e.id]})")
        seen[e.id] = e.origin
    return corpus


def load_files(patterns: list[str], root: str | Path = ".", key: str = "data.train") -> Corpus:
    """Load every file matched by the glob patterns (relative to root), validated, ids unique across files.

    `key` names the config key or option the patterns came from, for the error message."""
    paths: list[str] = []
    for pattern in patterns:
        full = pattern if Path(pattern).is_absolute() else str(Path(root) / pattern)
        matched = sorted(glob.glob(full))
        if not matched:
            raise DataError(f"{key}: pattern {pattern!r} matched no file under {Path(root).resolve()}")
        paths.extend(matched)
    corpus = Corpus([], [])
    for p in paths:
        corpus = corpus + load_jsonl(p)
    return _unique_ids(corpus)


def load_seed_gold(path: str | Path, seeds_dir: str | Path) -> Corpus:
    """Gold labels of the seed passages, checked against the current passage splitting of the seed articles.

    Each row is keyed by article id + passage index + a digest of the passage text, so a change in the reader's
    splitting is reported here instead of silently pairing labels with the wrong passages.
    """
    corpus = _unique_ids(load_jsonl(path))
    articles: dict[str, list] = {}
    for e in corpus.examples:
        aid, _, idx = e.id.partition("#")
        if aid not in articles:
            # The id names a file: keep it a plain name inside seeds_dir.
            if not aid or Path(aid).name != aid or aid in (".", ".."):
                raise DataError(f"{e.origin}: id {e.id!r} must be ARTICLE#INDEX with a plain article file name")
            f = Path(seeds_dir) / f"{aid}.txt"
            if not f.is_file():
                raise DataError(f"{e.origin}: seed article {f} not found")
            try:
                raw = f.read_text(encoding="utf-8")
            except UnicodeDecodeError as exc:
                raise DataError(f"{f}: not valid UTF-8 ({exc.reason} at byte {exc.start})") from None
            article = read_article(raw, id=aid)
            articles[aid] = article.passages
            for ex in corpus.examples:
                if ex.id.startswith(aid + "#"):
                    ex.date = article.date
        passages = articles[aid]
        if not (idx.isascii() and idx.isdigit()) or int(idx) >= len(passages):
            raise DataError(f"{e.origin}: {e.id!r} names no passage of {aid} (it has {len(passages)})")
        if text_digest(passages[int(idx)].text) != text_digest(e.text):
            raise DataError(
                f"{e.origin}: passage {e.id!r} no longer matches the reader's splitting of seeds/{aid}.txt "
                f"(digest {text_digest(e.text)} vs {passages[int(idx)].digest}); re-key the gold labels"
            )
    covered = {e.id for e in corpus.examples}
    for aid, passages in articles.items():
        missing = [f"{aid}#{p.index}" for p in passages if f"{aid}#{p.index}" not in covered]
        if missing:
            raise DataError(f"{path}: passages without gold labels: {missing[:5]}")
    return corpus


def file_digest(paths: list[str]) -> str:
    h = hashlib.sha256()
    for p in sorted(paths):
        h.update(Path(p).read_bytes())
    return h.hexdigest()[:16]
