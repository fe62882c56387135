"""Labelling real articles: sample, export blind batches, read annotation passes, kappa, adjudicate, merge.

`python -m training.labelling sample ...` etc. (see `main`). Batches hold the article text and go to a directory
outside the repository (OrangeSum text is never committed); passes and final labels hold ids, passage indices,
digests and labels only.

A pass file has one JSON line per article: `{"article_id": "orangesum-12", "labels": {"3": {"sanctions": "none"}}}`;
passages that are absent from `labels` carry no topic. Every article of the batch must have a line.
"""

from __future__ import annotations

import argparse
import json
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np

from training import STANCES, TOPICS
from training.labelling_common import PassError, cohen_kappa, read_jsonl, write_jsonl
from training.labelling_stance import apply_stance, read_stance_pass, write_stance_batches  # noqa: F401
from training.orangesum import TURKEY_PATTERN, iter_rows, read_row

# Hard negatives: real articles that carry a topic's cue word in another sense (ANNOTATION.md, hard case 10).
HARD_NEGATIVE_PATTERNS = {
    "sport_sanctions": (r"\bsanction\w*", r"\b(?:match|joueur|club|arbitre|fifa|uefa|ligue 1|carton|fédération)\b"),
    "network_deployment": (r"\bdéplo[iy]\w*", r"\b(?:fibre|5g|réseau|compteur|application|antenne|borne|vaccin\w*)\b"),
    "battle_reports": (r"\b(?:frappes?|bombardements?|offensive|combats)\b",
                       r"\b(?:syrie|irak|yémen|afghanistan|libye|mali|ukraine|nigeria)\b"),
    "defence_fairs": (r"\b(?:salon|eurosatory|bourget|industrie de (?:la )?défense)\b",
                      r"\b(?:armement|défense|militaire|aéronautique)\b"),
    "routine_diplomacy": (r"entretien téléphonique|s'est entretenu|se sont entretenus|visite officielle",
                          r"\b(?:président|ministre)\b"),
}


def _haystack(row: dict) -> str:
    return f"{row.get('title') or ''}\n{row.get('text') or ''}".lower()


def sample(n_random: int, n_hard_per_kind: int, seed: int, exclude: set[str] = frozenset(),
           configured: str | None = None) -> list[dict]:
    """Round one: `n_random` articles at random from all sections, every article naming Turkey, and
    `n_hard_per_kind` hard-negative candidates per kind. Each row: article_id, sample (why it was drawn)."""
    rows = [r for r in iter_rows(configured) if r["id"] not in exclude and (r.get("text") or "").strip()]
    rng = random.Random(seed)
    chosen: dict[str, str] = {}
    for r in rng.sample(rows, n_random):
        chosen[r["id"]] = "random"
    turkey = re.compile(TURKEY_PATTERN)
    for r in rows:
        if r["id"] not in chosen and turkey.search(_haystack(r)):
            chosen[r["id"]] = "turkey"
    for kind, (first, second) in HARD_NEGATIVE_PATTERNS.items():
        a, b = re.compile(first), re.compile(second)
        pool = [r["id"] for r in rows if r["id"] not in chosen and a.search(_haystack(r)) and b.search(_haystack(r))]
        for aid in rng.sample(pool, min(n_hard_per_kind, len(pool))):
            chosen[aid] = f"hard_negative:{kind}"
    return [{"article_id": aid, "sample": why} for aid, why in chosen.items()]


def _write_text_batches(ids: list[str], rows: dict, out_dir: Path, n_batches: int, prefix: str, header, line):
    """Batch files `PREFIX_01.txt`...: each article as a `=== ID | ...` header line, one line per passage, a blank
    line; ids[b::n_batches] go to batch b."""
    out_dir.mkdir(parents=True, exist_ok=True)
    paths = []
    for b in range(n_batches):
        path = out_dir / f"{prefix}_{b + 1:02d}.txt"
        with path.open("w", encoding="utf-8") as fh:
            for aid in ids[b::n_batches]:
                art = read_row(rows[aid])
                fh.write(header(aid, rows[aid], art) + "\n")
                fh.writelines(line(aid, p) + "\n" for p in art.passages)
                fh.write("\n")
        paths.append(path)
    return paths


def write_batches(queue: list[dict], out_dir: Path, n_batches: int, seed: int, configured: str | None = None,
                  prefix: str = "batch") -> list[Path]:
    """Split the queue into shuffled batches of article text (numbered passages) for annotators."""
    rows = {r["id"]: r for r in iter_rows(configured)}
    ids = [q["article_id"] for q in queue]
    random.Random(seed).shuffle(ids)
    return _write_text_batches(
        ids, rows, out_dir, n_batches, prefix,
        lambda aid, row, art: f"=== {aid} | {row.get('date')} | {row.get('section')} | {len(art.passages)} passages",
        lambda aid, p: f"[{p.index}]{' (title)' if p.is_title else ''} {p.text}")


def batch_ids(batch: Path) -> list[str]:
    return re.findall(r"^=== (\S+) \|", batch.read_text(encoding="utf-8"), flags=re.M)


def read_pass(paths: list[Path], n_passages: dict[str, int]) -> dict[str, dict[int, dict[str, str]]]:
    """{article_id: {passage index: {topic: stance}}} from pass files, validated against the articles' passages."""
    out: dict[str, dict[int, dict[str, str]]] = {}
    for path in paths:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            where = f"{path}:{n}"
            try:
                row = json.loads(line)
            except json.JSONDecodeError as exc:
                raise PassError(f"{where}: invalid JSON: {exc.msg}") from None
            aid = row.get("article_id")
            if aid not in n_passages:
                raise PassError(f"{where}: unknown article {aid!r}")
            labels: dict[int, dict[str, str]] = {}
            for idx, pairs in (row.get("labels") or {}).items():
                if not str(idx).isdigit() or int(idx) >= n_passages[aid]:
                    raise PassError(f"{where}: {aid} has no passage {idx!r} (it has {n_passages[aid]})")
                bad = {t: s for t, s in pairs.items() if t not in TOPICS or s not in STANCES}
                if bad:
                    raise PassError(f"{where}: labels {bad} not in topics {TOPICS} x stances {STANCES}")
                if pairs:
                    labels[int(idx)] = dict(pairs)
            out[aid] = labels
    missing = sorted(set(n_passages) - set(out))
    if missing:
        raise PassError(f"{', '.join(map(str, paths[:3]))}...: {len(missing)} articles without a line: {missing[:5]}")
    return out


def agreement(pa: dict, pb: dict, n_passages: dict[str, int]) -> dict:
    """Kappa per topic over every passage (topic present or not) and for stance over pairs both marked."""
    out: dict = {"passages": sum(n_passages.values()), "topic_kappa": {}, "stance_kappa": {}, "disagreements": {}}
    keys = [(aid, i) for aid in sorted(n_passages) for i in range(n_passages[aid])]
    for t in TOPICS:
        xa = [int(t in pa[aid].get(i, {})) for aid, i in keys]
        xb = [int(t in pb[aid].get(i, {})) for aid, i in keys]
        out["topic_kappa"][t] = round(cohen_kappa(xa, xb), 3)
        both = [(pa[aid][i][t], pb[aid][i][t]) for aid, i in keys if t in pa[aid].get(i, {}) and t in pb[aid].get(i, {})]
        out["stance_kappa"][t] = round(cohen_kappa([x for x, _ in both], [y for _, y in both]), 3) if both else None
        out["disagreements"][t] = sum(x != y for x, y in zip(xa, xb))
    out["passages_disagreeing"] = sum(pa[aid].get(i, {}) != pb[aid].get(i, {}) for aid, i in keys)
    return out


def disagreements(pa: dict, pb: dict, n_passages: dict[str, int]) -> list[tuple[str, int]]:
    return [(aid, i) for aid in sorted(n_passages) for i in range(n_passages[aid]) if pa[aid].get(i, {}) != pb[aid].get(i, {})]


def write_adjudication_batches(items: list[tuple[str, int]], pa: dict, pb: dict, out_dir: Path, n_batches: int,
                               configured: str | None = None) -> list[Path]:
    """For the third reader: each disputed passage with its article's other passages as context and both labels."""
    rows = {r["id"]: r for r in iter_rows(configured) if r["id"] in {aid for aid, _ in items}}
    by_article: dict[str, list[int]] = {}
    for aid, i in items:
        by_article.setdefault(aid, []).append(i)

    def line(aid, p) -> str:
        if p.index not in by_article[aid]:
            return f"[{p.index}] {p.text}"
        a, b = json.dumps(pa[aid].get(p.index, {})), json.dumps(pb[aid].get(p.index, {}))
        return f"[{p.index}] {p.text}  <<DISPUTED: A={a} B={b}>>"

    return _write_text_batches(sorted(by_article), rows, out_dir, n_batches, "adjudicate",
                               lambda aid, row, art: f"=== {aid} | {row.get('date')} | {row.get('section')}", line)


def read_adjudication(paths: list[Path], items: list[tuple[str, int]]) -> dict[tuple[str, int], dict[str, str]]:
    """Adjudication lines: {"article_id", "passage": i, "labels": {topic: stance}} for every disputed passage."""
    wanted = set(items)
    out: dict[tuple[str, int], dict[str, str]] = {}
    for path in paths:
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1):
            if not line.strip():
                continue
            row = json.loads(line)
            key = (row["article_id"], int(row["passage"]))
            if key not in wanted:
                raise PassError(f"{path}:{n}: {key} is not a disputed passage")
            bad = {t: s for t, s in row["labels"].items() if t not in TOPICS or s not in STANCES}
            if bad:
                raise PassError(f"{path}:{n}: labels {bad} not in topics x stances")
            out[key] = dict(row["labels"])
    missing = wanted - set(out)
    if missing:
        raise PassError(f"adjudication misses {len(missing)} disputed passages, e.g. {sorted(missing)[:3]}")
    return out


def merge(pa: dict, pb: dict, adjudicated: dict) -> dict[str, dict[int, dict[str, str]]]:
    """Agreed labels, with the third reading where the passes differ."""
    final: dict[str, dict[int, dict[str, str]]] = {}
    for aid in pa:
        idxs = set(pa[aid]) | set(pb[aid]) | {i for a, i in adjudicated if a == aid}
        labels = {}
        for i in sorted(idxs):
            lab = adjudicated.get((aid, i), pa[aid].get(i, {})) if pa[aid].get(i, {}) != pb[aid].get(i, {}) else pa[aid].get(i, {})
            if lab:
                labels[i] = lab
        final[aid] = labels
    return final


def passage_counts(ids: set[str], configured: str | None = None) -> dict[str, int]:
    return {r["id"]: len(read_row(r).passages) for r in iter_rows(configured) if r["id"] in ids}


def label_rows(final: dict[str, dict[int, dict[str, str]]], samples: dict[str, str], seed: int = 13,
               configured: str | None = None) -> list[dict]:
    """The rows of data/real/labels.jsonl: every passage of every article with its digest and labels, and the
    article's event and split (real_splits)."""
    from training import real_splits

    rows = {r["id"]: r for r in iter_rows(configured) if r["id"] in final}
    ids = sorted(final, key=lambda a: int(a.rsplit("-", 1)[-1]))
    arts = {aid: read_row(rows[aid]) for aid in ids}
    texts = [" ".join(arts[a].texts) for a in ids]
    turkey = re.compile(TURKEY_PATTERN, re.IGNORECASE)
    counts = []
    for a, text in zip(ids, texts):
        pairs = [s for lab in final[a].values() for s in lab.values()] if turkey.search(text) else []
        counts.append([int(any(t in lab for lab in final[a].values())) for t in TOPICS]
                      + [sum(s == "favor" for s in pairs), sum(s == "against" for s in pairs)])
    event_of, split_of = real_splits.assign(ids, texts, [rows[a].get("date") for a in ids], np.array(counts), seed)
    out = []
    for aid in ids:
        out.append({"article_id": aid, "date": rows[aid].get("date"), "section": rows[aid].get("section"),
                    "sample": samples.get(aid, ""), "event": event_of[aid], "split": split_of[aid],
                    "passages": [{"i": p.index, "digest": p.digest, "labels": final[aid].get(p.index, {})}
                                 for p in arts[aid].passages]})
    return out


def _parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="python -m training.labelling", description=__doc__.splitlines()[0])
    sub = p.add_subparsers(dest="cmd", required=True)
    s = sub.add_parser("sample", help="draw round one (random, Turkey, hard negatives) into a queue file")
    s.add_argument("--random", type=int, default=500)
    s.add_argument("--hard-per-kind", type=int, default=40)
    s.add_argument("--seed", type=int, default=17)
    s.add_argument("-o", "--out", type=Path, required=True)
    b = sub.add_parser("batches", help="write annotator batches (article text, numbered passages) for a queue")
    b.add_argument("queue", type=Path)
    b.add_argument("--out-dir", type=Path, required=True, help="a directory outside the repository")
    b.add_argument("-n", type=int, default=4)
    b.add_argument("--seed", type=int, default=17)
    b.add_argument("--prefix", default="batch")
    for name, help_ in (("kappa", "agreement of two passes, and the adjudication batches of their disagreements"),
                        ("finalize", "merge two passes and the adjudication into data/real/labels.jsonl")):
        k = sub.add_parser(name, help=help_)
        k.add_argument("--a", type=Path, nargs="+", required=True)
        k.add_argument("--b", type=Path, nargs="+", required=True)
        k.add_argument("--queue", type=Path, nargs="+", required=True)
    k = sub.choices["kappa"]
    k.add_argument("--adjudicate-dir", type=Path)
    k.add_argument("-n", type=int, default=2)
    f = sub.choices["finalize"]
    f.add_argument("--adjudication", type=Path, nargs="*", default=[])
    f.add_argument("--provisional", action="store_true",
                   help="no adjudication yet: take pass A where the passes differ (for a first-round model only)")
    f.add_argument("--seed", type=int, default=13)
    f.add_argument("-o", "--out", type=Path, required=True)
    sb = sub.add_parser("stance-batch", help="a stance pass over the labelled pairs of the articles naming Turkey")
    sb.add_argument("labels", type=Path)
    sb.add_argument("--out-dir", type=Path, required=True)
    sr = sub.add_parser("stance-apply", help="merge two blind stance passes (+ adjudication) into the labels")
    sr.add_argument("labels", type=Path)
    sr.add_argument("--a", type=Path, nargs="+", required=True)
    sr.add_argument("--b", type=Path, nargs="+", required=True)
    sr.add_argument("--adjudication", type=Path, nargs="*", default=[])
    sr.add_argument("--adjudicate-out", type=Path, help="write the disputed pairs here (no adjudication yet)")
    sr.add_argument("-o", "--out", type=Path)
    return p


def _two_passes(args):
    samples = {r["article_id"]: r["sample"] for q in args.queue for r in read_jsonl(q)}
    n = passage_counts(set(samples))
    pa, pb = read_pass(args.a, n), read_pass(args.b, n)
    return samples, n, pa, pb


def _cmd_kappa(args) -> None:
    _, n, pa, pb = _two_passes(args)
    print(json.dumps(agreement(pa, pb, n), indent=1))
    if args.adjudicate_dir:
        for path in write_adjudication_batches(disagreements(pa, pb, n), pa, pb, args.adjudicate_dir, args.n):
            print(path)


def _cmd_finalize(args) -> None:
    samples, n, pa, pb = _two_passes(args)
    items = disagreements(pa, pb, n)
    adjudicated = ({k: pa[k[0]].get(k[1], {}) for k in items} if args.provisional
                   else read_adjudication(args.adjudication, items))
    rows = label_rows(merge(pa, pb, adjudicated), samples, args.seed)
    write_jsonl(args.out, rows)
    print(json.dumps({"articles": len(rows), "splits": Counter(r["split"] for r in rows),
                      "disputed_passages": len(items)}))


def _cmd_sample(args) -> None:
    rows = sample(args.random, args.hard_per_kind, args.seed)
    write_jsonl(args.out, rows)
    print(json.dumps(Counter(r["sample"].split(":")[0] for r in rows)))


def _cmd_batches(args) -> None:
    for path in write_batches(read_jsonl(args.queue), args.out_dir, args.n, args.seed, prefix=args.prefix):
        print(path, len(batch_ids(path)))


def _cmd_stance_batch(args) -> None:
    path, n = write_stance_batches(args.labels, args.out_dir)
    print(path, n, "pairs")


def _cmd_stance_apply(args) -> None:
    print(json.dumps(apply_stance(args.labels, args.a, args.b, args.adjudication, args.adjudicate_out, args.out)))


COMMANDS = {"sample": _cmd_sample, "batches": _cmd_batches, "kappa": _cmd_kappa, "finalize": _cmd_finalize,
            "stance-batch": _cmd_stance_batch, "stance-apply": _cmd_stance_apply}


def main(argv=None) -> int:
    args = _parser().parse_args(argv)
    COMMANDS[args.cmd](args)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
