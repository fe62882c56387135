"""What passage and stance labelling share: JSONL rows, the error a malformed pass raises, Cohen's kappa."""

from __future__ import annotations

import json
from collections import Counter
from pathlib import Path

from training.errors import TPCError


class PassError(TPCError, ValueError):
    """An annotation pass that does not follow the format; the message names the file and line."""


def cohen_kappa(a: list, b: list) -> float:
    """Cohen's kappa of two raters' labels over the same items (1.0 when both agree on a single category)."""
    n = len(a)
    if n == 0:
        return float("nan")
    po = sum(x == y for x, y in zip(a, b)) / n
    ca, cb = Counter(a), Counter(b)
    pe = sum(ca[k] * cb[k] for k in set(ca) | set(cb)) / (n * n)
    return 1.0 if pe == 1 else (po - pe) / (1 - pe)


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]


def write_jsonl(path: Path, rows: list[dict]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows), encoding="utf-8")
