"""Held-out checks that passage F1 does not show: spurious theatre context, counterfactual name swaps, and stance on
a written challenge set of negations, denials, conditions and reported speech.

All three read written files that are never trained on (data/challenge/) and a model fit on the written passages
only (train.py's held-out bundle), and return flat metrics for MLflow.
"""

from __future__ import annotations

import json
import re
from pathlib import Path

import numpy as np

from training.evaluate import stance_metrics, topic_metrics

CHALLENGE = "data/challenge/stance_challenge.jsonl"
THEATRE_NEGATIVES = "data/challenge/theatre_negatives.jsonl"

# Theatre names in pairs, each form mapped to its counterpart (both directions are listed so one table reads
# either way). Forms with an article or an elided preposition come first so "la Russie" becomes "l'Azerbaïdjan"
# and "de Kiev" becomes "d'Erevan", not "la Azerbaïdjan" or "de Erevan".
_PAIRS = [
    ("la Russie", "l'Azerbaïdjan"), ("de Russie", "d'Azerbaïdjan"), ("Russie", "Azerbaïdjan"),
    ("Ukraine", "Arménie"), ("Syrie", "Libye"), ("Moscou", "Bakou"), ("Damas", "Tripoli"),
    ("de Kiev", "d'Erevan"), ("de Kyiv", "d'Erevan"), ("Kiev", "Erevan"), ("Kyiv", "Erevan"),
    ("Poutine", "Aliev"), ("Zelensky", "Pachinian"), ("Zelenski", "Pachinian"),
    ("russes", "azerbaïdjanais"), ("russe", "azerbaïdjanaise"),
    ("ukrainiennes", "arméniennes"), ("ukrainienne", "arménienne"), ("ukrainiens", "arméniens"),
    ("ukrainien", "arménien"),
    ("syriennes", "libyennes"), ("syrienne", "libyenne"), ("syriens", "libyens"), ("syrien", "libyen"),
]
_SWAP: dict[str, str] = {}
for _a, _b in _PAIRS:
    _SWAP.setdefault(_a.lower(), _b)
    _SWAP.setdefault(_b.lower(), _a)
# "azerbaïdjanais" is singular and plural; "russe" is the safer reading for the masculine singular.
_SWAP["azerbaïdjanais"] = "russe"
_SWAP["azerbaïdjanaises"] = "russes"
_SWAP_RE = re.compile(
    r"(?<!\w)(" + "|".join(re.escape(k).replace("'", "['’]") for k in sorted(_SWAP, key=len, reverse=True))
    + r")(?!\w)", re.IGNORECASE)


def _recase(source: str, target: str) -> str:
    if len(source) > 1 and source.isupper():
        return target.upper()
    if source[0].isupper():
        return target[0].upper() + target[1:]
    return target


def swap_theatres(text: str) -> str:
    """The text with each theatre's names swapped for its counterpart's (Russie <-> Azerbaïdjan, Ukraine <->
    Arménie, Syrie <-> Libye, their capitals, leaders and adjectives), in one pass so no name is swapped twice."""
    def repl(m: re.Match) -> str:
        src = m.group(0)
        out = _recase(src, _SWAP[src.lower().replace("’", "'")])
        return out.replace("'", "’") if "’" in src else out

    return _SWAP_RE.sub(repl, text)


def read_jsonl(path: str | Path) -> list[dict]:
    """Rows of a held-out file, validated by the project's loader (file:line in errors), with `phenomenon` kept."""
    from training.data import load_jsonl

    corpus = load_jsonl(path)
    extra = {}
    with Path(path).open(encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                extra[row["id"]] = row.get("phenomenon")
    return [{"id": e.id, "text": e.text, "topics": e.topics, "stance": e.stance, "phenomenon": extra.get(e.id)}
            for e in corpus.examples]


def theatre_negative_metrics(bundle, rows: list[dict], rng: np.random.Generator, n_articles: int = 100,
                             prefix: str = "theatre_negatives") -> dict[str, float]:
    """False-positive rates on same-theatre passages with no topic: per passage (the passage thresholds), and per
    article on long "explainers" stitched from 5-40 of them, with the max rule and with the model's own roll-up."""
    labels = bundle.labels
    texts = [r["text"] for r in rows]
    P = bundle.topic_model.predict_proba(texts)
    D = P >= bundle.thresholds
    out = {f"{prefix}_fp_rate_{t}": float(D[:, j].mean()) for j, t in enumerate(labels)}
    out[f"{prefix}_fp_rate_any"] = float(D.any(1).mean())
    out[f"{prefix}_n"] = float(len(rows))
    cues = bundle.cue_matrix(texts)
    arts = [rng.choice(len(texts), int(rng.integers(5, min(40, len(texts)) + 1)), replace=False)
            for _ in range(n_articles if len(texts) >= 5 else 0)]
    if arts:
        D_max = np.array([P[a].max(0) >= bundle.thresholds for a in arts])
        D_rule = bundle.articles_decisions([P[a] for a in arts], [None if cues is None else cues[a] for a in arts])[1]
        for name, Dk in (("max", D_max), ("model", D_rule)):
            out.update({f"{prefix}_explainer_{name}_fp_rate_{t}": float(Dk[:, j].mean()) for j, t in enumerate(labels)})
            out[f"{prefix}_explainer_{name}_fp_rate_any"] = float(Dk.any(1).mean())
    return out


def counterfactual_metrics(bundle, rows: list[dict], articles=(), prefix: str = "counterfactual") -> dict[str, float]:
    """How often swapping theatre names changes a decision that should not depend on them: passage topics, the
    stance on each gold topic, and (on whole articles) the article's topics."""
    labels = bundle.labels
    rows = [r for r in rows if swap_theatres(r["text"]) != r["text"]]
    out: dict[str, float] = {f"{prefix}_n": float(len(rows))}
    if not rows:
        return out
    texts = [r["text"] for r in rows]
    swapped = [swap_theatres(t) for t in texts]
    P0, P1 = bundle.topic_model.predict_proba(texts), bundle.topic_model.predict_proba(swapped)
    D0, D1 = P0 >= bundle.thresholds, P1 >= bundle.thresholds
    out[f"{prefix}_topic_flip_rate"] = float((D0 != D1).any(1).mean())
    out.update({f"{prefix}_topic_flip_rate_{t}": float((D0[:, j] != D1[:, j]).mean()) for j, t in enumerate(labels)})
    out[f"{prefix}_topic_mean_abs_delta"] = float(np.abs(P0 - P1).mean())
    pairs = [(r["text"], s, t) for r, s in zip(rows, swapped) for t in r["topics"]]
    if pairs:
        s0 = bundle.stance_model.predict(np.array([[x, t] for x, _, t in pairs], dtype=object))
        s1 = bundle.stance_model.predict(np.array([[s, t] for _, s, t in pairs], dtype=object))
        out[f"{prefix}_stance_flip_rate"] = float(np.mean(np.asarray(s0) != np.asarray(s1)))
        out[f"{prefix}_stance_n"] = float(len(pairs))
    articles = [a for a in articles if any(swap_theatres(p.text) != p.text for p in a.passages)]
    if articles:
        from training.articles import Article, Passage

        twins = [Article(a.id, a.title, a.date, [Passage(p.index, swap_theatres(p.text), p.is_title)
                                                  for p in a.passages]) for a in articles]
        r0, r1 = bundle.predict_articles(articles), bundle.predict_articles(twins)
        flips = [[x[t] != y[t] for t in labels] for x, y in zip(r0, r1)]
        out[f"{prefix}_article_flip_rate"] = float(np.mean([any(f) for f in flips]))
        out[f"{prefix}_article_n"] = float(len(articles))
    return out


def challenge_stance_metrics(bundle, rows: list[dict], prefix: str = "challenge") -> dict[str, float]:
    """Stance on each gold topic of the challenge passages, overall and per phenomenon; topic detection too."""
    labels = bundle.labels
    pairs = [(r["text"], t, r["stance"][t], r["phenomenon"] or "other") for r in rows for t in r["topics"]]
    out: dict[str, float] = {}
    if not pairs:
        return out
    pred = np.asarray(bundle.stance_model.predict(np.array([[x, t] for x, t, _, _ in pairs], dtype=object)))
    gold = np.asarray([g for _, _, g, _ in pairs])
    phen = np.asarray([p for _, _, _, p in pairs])
    out.update(stance_metrics(gold, pred, f"{prefix}_stance"))
    for p in sorted(set(phen)):
        m = phen == p
        sub = stance_metrics(gold[m], pred[m], f"{prefix}_stance_{p}")
        out.update({k: v for k, v in sub.items() if k.endswith(("_macro_f1", "_favor_against_f1", "_accuracy"))})
    texts = [r["text"] for r in rows]
    Y = np.array([[int(t in r["topics"]) for t in labels] for r in rows])
    D = (bundle.topic_model.predict_proba(texts) >= bundle.thresholds).astype(int)
    out.update({k: v for k, v in topic_metrics(Y, D, labels, f"{prefix}_topic").items()
                if k.endswith(("_macro_f1", "_micro_f1", "_recall", "_precision"))})
    return out


def seeds_article_max_metrics(bundle, seeds, seeds_dir, prefix: str = "seeds_article_topic_max") -> dict:
    """The seeds' article-level topics with the plain max rule (any passage above its threshold), for comparison
    with the learned roll-up that `evaluate_on_seeds` measures."""
    from training.articles import read_article

    labels = bundle.labels
    ids = sorted({e.id.split("#")[0] for e in seeds.examples})
    gold, pred = [], []
    for a in ids:
        art = read_article((Path(seeds_dir) / f"{a}.txt").read_text(encoding="utf-8"), id=a)
        P = bundle.topic_model.predict_proba(art.texts)
        pred.append((P.max(0) >= bundle.thresholds).astype(int))
        gold.append([int(any(t in e.topics for e in seeds.examples if e.id.startswith(a + "#"))) for t in labels])
    return topic_metrics(np.asarray(gold), np.asarray(pred), labels, prefix)


def evaluate(bundle, seeds=None, seeds_dir: str | None = None, challenge: str | Path = CHALLENGE,
             negatives: str | Path = THEATRE_NEGATIVES, seed: int = 0) -> dict[str, float]:
    """Every held-out check whose files exist (paths relative to the working directory, like the training data)."""
    from training.articles import read_article

    rng = np.random.default_rng(seed)
    out: dict[str, float] = {}
    ch = read_jsonl(challenge) if Path(challenge).is_file() else []
    neg = read_jsonl(negatives) if Path(negatives).is_file() else []
    if ch:
        out.update(challenge_stance_metrics(bundle, ch))
    if neg:
        out.update(theatre_negative_metrics(bundle, neg, rng))
    seed_rows, seed_articles = [], []
    if seeds is not None and seeds_dir:
        seed_rows = [{"text": e.text, "topics": e.topics, "stance": e.stance} for e in seeds.examples]
        ids = sorted({e.id.split("#")[0] for e in seeds.examples})
        seed_articles = [read_article((Path(seeds_dir) / f"{a}.txt").read_text(encoding="utf-8"), id=a) for a in ids]
        out.update(seeds_article_max_metrics(bundle, seeds, seeds_dir))
    out.update(counterfactual_metrics(bundle, ch + neg + seed_rows, seed_articles))
    return out

