"""Counts for the data card: `python -m training.datacard` prints them for every data file (and checks minimums)."""

from __future__ import annotations

import argparse
import collections
import glob
import json
import sys
from pathlib import Path

from training import STANCES, TOPICS
from training.data import load_files

# The written corpus must cover every topic and stance (issue: labelled training corpus).
MINIMUMS = {"passages": 2000, "per_topic": 300, "per_topic_stance": 60, "no_topic": 700}


def counts(corpus) -> dict:
    topic = collections.Counter()
    pair = collections.Counter()
    n_topics = collections.Counter()
    for e in corpus.examples:
        n_topics[len(e.topics)] += 1
        for t in e.topics:
            topic[t] += 1
            pair[f"{t}:{e.stance[t]}"] += 1
    return {
        "passages": len(corpus),
        "events": len(set(corpus.groups)),
        "no_topic": n_topics[0],
        "multi_topic": sum(v for k, v in n_topics.items() if k > 1),
        "per_topic": {t: topic[t] for t in TOPICS},
        "per_topic_stance": {f"{t}:{s}": pair[f"{t}:{s}"] for t in TOPICS for s in STANCES},
        "sources": dict(collections.Counter(e.source for e in corpus.examples)),
    }


def shortfalls(c: dict) -> list[str]:
    out = []
    if c["passages"] < MINIMUMS["passages"]:
        out.append(f"passages {c['passages']} < {MINIMUMS['passages']}")
    if c["no_topic"] < MINIMUMS["no_topic"]:
        out.append(f"no-topic passages {c['no_topic']} < {MINIMUMS['no_topic']}")
    out += [f"{t} {n} < {MINIMUMS['per_topic']}" for t, n in c["per_topic"].items() if n < MINIMUMS["per_topic"]]
    out += [f"{k} {n} < {MINIMUMS['per_topic_stance']}" for k, n in c["per_topic_stance"].items()
            if n < MINIMUMS["per_topic_stance"]]
    return out


def real_counts(labels_path: str, annotations_dir: str, data_dir: str | None = None) -> dict:
    """The labelled real articles: sizes, splits, article-level topics, Turkey's stance pairs, and Cohen's kappa
    of the two blind annotation passes per topic (passage level, every passage)."""
    from training.labelling import agreement, read_pass
    from training.real import SPLITS, load_real

    arts = load_real(labels_path, data_dir)
    n_passages = {a.id: len(a.article.passages) for a in arts}
    topic_articles = collections.Counter(t for a in arts for t in {t for lab in a.labels.values() for t in lab})
    pairs = collections.Counter(s for a in arts if a.names_turkey for lab in a.labels.values() for s in lab.values())
    ann = Path(annotations_dir)
    kappa = {}
    if (ann / "pass_a.jsonl").is_file() and (ann / "pass_b.jsonl").is_file():
        agree = agreement(read_pass([ann / "pass_a.jsonl"], n_passages), read_pass([ann / "pass_b.jsonl"], n_passages),
                          n_passages)
        kappa = agree["topic_kappa"]
    return {
        "articles": len(arts),
        "passages": sum(n_passages.values()),
        "splits": {s: sum(a.split == s for a in arts) for s in SPLITS},
        "topic_articles": {t: topic_articles[t] for t in TOPICS},
        "no_topic_articles": sum(not a.labels for a in arts),
        "turkey_stance_pairs": {s: pairs[s] for s in STANCES},
        "kappa": kappa,
    }


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__)
    p.add_argument("--written", default="data/written/*.jsonl")
    p.add_argument("--real", default="data/real/labels.jsonl", help="labelled real articles (needs OrangeSum)")
    p.add_argument("--data-dir", default=None, help="OrangeSum's data directory (default: TPC_DATA_DIR, ../shared/data)")
    p.add_argument("--json", action="store_true")
    args = p.parse_args(argv)
    report = {"written (training)": counts(load_files([args.written]))}
    for f in sorted(glob.glob("data/challenge/*.jsonl")) + ["data/seeds_gold.jsonl"]:
        report[f] = counts(load_files([f]))
    real = real_counts(args.real, str(Path(args.real).parent / "annotations"), args.data_dir) if args.real else None
    if args.json:
        print(json.dumps({**report, **({"real": real} if real else {})}, indent=1))
    else:
        for name, c in report.items():
            print(f"== {name}: {c['passages']} passages, {c['events']} events, {c['no_topic']} without topic, "
                  f"{c['multi_topic']} with 2+ topics, sources {c['sources']}")
            print("   " + "  ".join(f"{t}={n}" for t, n in c["per_topic"].items()))
            print("   " + "  ".join(f"{k}={n}" for k, n in c["per_topic_stance"].items()))
        if real:
            print(f"== real (OrangeSum, {args.real}): " + json.dumps(real))
    missing = shortfalls(report["written (training)"])
    # with --json, stdout holds the JSON alone
    print("minimums met" if not missing else "BELOW MINIMUMS: " + "; ".join(missing),
          file=sys.stderr if args.json else sys.stdout)
    return 1 if missing else 0


if __name__ == "__main__":
    raise SystemExit(main())
