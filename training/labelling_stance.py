"""Stance labelling of the real articles: a blind stance pass over every labelled (passage, topic) pair of the
articles that name Turkey, read back, merged with a second pass and the third reading."""

from __future__ import annotations

import json
from pathlib import Path

from training import STANCES
from training.labelling_common import PassError, cohen_kappa, read_jsonl, write_jsonl


def write_stance_batches(labels_path: Path, out_dir: Path, configured: str | None = None) -> tuple[Path, int]:
    """For a stance pass: every article that names Turkey and has labelled pairs, every passage shown, the
    topic-bearing passages marked with their topics only (never their stance)."""
    from training.real import load_real

    arts = [a for a in load_real(labels_path, configured) if a.names_turkey and a.labels]
    out_dir.mkdir(parents=True, exist_ok=True)
    path, n = out_dir / "stance_batch.txt", 0
    with path.open("w", encoding="utf-8") as fh:
        for a in arts:
            fh.write(f"=== {a.id} | {a.date} | {a.section}\n")
            for p in a.article.passages:
                topics = sorted(a.labels.get(p.index, {}))
                n += len(topics)
                fh.write(f"[{p.index}] {p.text}" + (f"  <<TOPICS: {', '.join(topics)}>>" if topics else "") + "\n")
            fh.write("\n")
    return path, n


def read_stance_pass(paths: list[Path], pairs: set[tuple[str, int, str]]) -> dict[tuple[str, int, str], str]:
    """Stance-pass lines `{"article_id", "passage": i, "stance": {topic: stance}}` covering exactly `pairs`."""
    out: dict[tuple[str, int, str], str] = {}
    for path in paths:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if line.strip():
                row = json.loads(line)
                for t, s in row["stance"].items():
                    key = (row["article_id"], int(row["passage"]), t)
                    if key not in pairs or s not in STANCES:
                        raise PassError(f"{path}:{n}: {key} -> {s!r} is not a marked pair with a stance in {STANCES}")
                    out[key] = s
    missing = pairs - set(out)
    if missing:
        raise PassError(f"{paths[0]}: {len(missing)} marked pairs without a stance, e.g. {sorted(missing)[:3]}")
    return out


def apply_stance(labels: Path, pass_a: list[Path], pass_b: list[Path], adjudication: list[Path],
                 adjudicate_out: Path | None, out: Path | None) -> dict:
    """Merge two blind stance passes (and the third reading of their disagreements) into the labels; with
    `adjudicate_out`, write the disputed pairs there instead. Returns the agreement."""
    from training.real import load_real

    # the articles the stance pass was given (labels may since hold more articles, e.g. a later round)
    passed = {r["article_id"] for path in pass_a for r in read_jsonl(path)}
    arts = {a.id: a for a in load_real(labels) if a.names_turkey and a.labels and a.id in passed}
    pairs = {(a.id, i, t) for a in arts.values() for i, lab in a.labels.items() for t in lab}
    sa, sb = read_stance_pass(pass_a, pairs), read_stance_pass(pass_b, pairs)
    keys = sorted(pairs)
    agree = {"pairs": len(keys), "stance_kappa": round(cohen_kappa([sa[k] for k in keys], [sb[k] for k in keys]), 3),
             "disputed": sum(sa[k] != sb[k] for k in keys)}
    disputed = [k for k in keys if sa[k] != sb[k]]
    if adjudicate_out:
        write_jsonl(adjudicate_out, [{"article_id": a, "passage": i, "topic": t, "A": sa[(a, i, t)],
                                      "B": sb[(a, i, t)]} for a, i, t in disputed])
        return agree
    settled = {}
    for path in adjudication:
        for row in read_jsonl(path):
            settled[(row["article_id"], int(row["passage"]), row["topic"])] = row["stance"]
    missing = [k for k in disputed if k not in settled]
    if missing:
        raise PassError(f"stance adjudication misses {len(missing)} disputed pairs, e.g. {missing[:3]}")
    rows = read_jsonl(labels)
    for row in rows:
        for p in row["passages"]:
            for t in p["labels"]:
                key = (row["article_id"], p["i"], t)
                if key in pairs:
                    p["labels"][t] = settled.get(key, sa[key])
    write_jsonl(out, rows)
    return agree
