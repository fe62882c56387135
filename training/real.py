"""Real labelled articles (OrangeSum): labels by article id + passage digest, joined to the text at load time.

`data/real/labels.jsonl` has one row per article:
`{"article_id", "date", "section", "sample", "event", "split", "passages": [{"i", "digest", "labels"}]}` with every
passage of the reader's splitting listed (so a change of the reader, or of the data file, is caught here) and
`labels` mapping each topic of the passage to Turkey's stance. The text itself is read from OrangeSum.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training import STANCES, TOPICS
from training.articles import Article
from training.data import Corpus, DataError, Example
from training.orangesum import TURKEY_PATTERN, article_text, load_articles, read_row

SPLITS = ("train", "dev", "test")
_TURKEY = re.compile(TURKEY_PATTERN, re.IGNORECASE)


@dataclass
class RealArticle:
    id: str
    split: str
    event: str
    date: str | None
    section: str | None
    sample: str
    article: Article
    labels: dict[int, dict[str, str]] = field(default_factory=dict)
    text: str = ""  # what a scorer is given: the title line, then the body (orangesum.article_text)

    @property
    def names_turkey(self) -> bool:
        return any(_TURKEY.search(p.text) for p in self.article.passages)

    def topics(self, labels=TOPICS) -> np.ndarray:
        present = {t for lab in self.labels.values() for t in lab}
        return np.array([int(t in present) for t in labels])


def _check_label_row(row: dict, where: str) -> None:
    for key in ("article_id", "event", "split", "passages"):
        if key not in row:
            raise DataError(f"{where}: missing key {key!r}")
    if row["split"] not in SPLITS:
        raise DataError(f"{where}: split {row['split']!r} not in {SPLITS}")
    for p in row["passages"]:
        bad = {t: s for t, s in p.get("labels", {}).items() if t not in TOPICS or s not in STANCES}
        if bad:
            raise DataError(f"{where}: passage {p.get('i')}: labels {bad} not in topics {TOPICS} x stances {STANCES}")


def read_label_rows(path: str | Path) -> list[tuple[dict, str]]:
    path = Path(path)
    if not path.is_file():
        raise DataError(f"{path}: real labels not found (data.real)")
    rows = []
    for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
        if line.strip():
            where = f"{path}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise DataError(f"{where}: invalid JSON: {exc.msg}") from None
            _check_label_row(row, where)
            rows.append((row, where))
    return rows


def load_real(path: str | Path, data_dir: str | None = None, splits=SPLITS) -> list[RealArticle]:
    """The labelled articles of the given splits, with their text from OrangeSum, every digest checked."""
    rows = [(r, w) for r, w in read_label_rows(path) if r["split"] in splits]
    texts = load_articles({r["article_id"] for r, _ in rows}, data_dir)
    out = []
    for row, where in rows:
        aid = row["article_id"]
        if aid not in texts:
            raise DataError(f"{where}: article {aid} is not in the OrangeSum file")
        article = read_row(texts[aid])
        passages = row["passages"]
        if len(passages) != len(article.passages):
            raise DataError(f"{where}: {aid} has {len(article.passages)} passages in the reader's splitting, the labels "
                            f"list {len(passages)}; the reader or the data changed: re-key the labels")
        for lab, p in zip(passages, article.passages):
            if lab["i"] != p.index or lab["digest"] != p.digest:
                raise DataError(f"{where}: {aid}#{lab['i']}: digest {lab['digest']} no longer matches the reader's "
                                f"passage ({p.digest}); the reader or the data changed: re-key the labels")
        labels = {int(p["i"]): dict(p["labels"]) for p in passages if p.get("labels")}
        out.append(RealArticle(aid, row["split"], row["event"], row.get("date") or article.date, row.get("section"),
                               row.get("sample", ""), article, labels, article_text(texts[aid])))
    return out


def passage_corpus(arts: list[RealArticle], name: str = "real") -> Corpus:
    """Every passage of the articles as a labelled example (`source: real`), grouped by the article's event."""
    examples = []
    for a in arts:
        for p in a.article.passages:
            lab = a.labels.get(p.index, {})
            examples.append(Example(f"{a.id}#{p.index}", p.text, list(lab), dict(lab), a.event, "real", a.date,
                                    f"{name}:{a.id}#{p.index}"))
    return Corpus(examples, [name])


def article_gold(arts: list[RealArticle], labels=TOPICS) -> np.ndarray:
    return np.stack([a.topics(labels) for a in arts]) if arts else np.zeros((0, len(labels)), dtype=int)


def turkey_pairs(arts: list[RealArticle]) -> tuple[list[str], list[str], list[str]]:
    """(passage text, topic, gold stance) for every labelled pair in articles that name Turkey."""
    texts, topics, stances = [], [], []
    for a in arts:
        if not a.names_turkey:
            continue
        for p in a.article.passages:
            for t, s in a.labels.get(p.index, {}).items():
                texts.append(p.text)
                topics.append(t)
                stances.append(s)
    return texts, topics, stances
