"""The floor of scoring: what every scorer of this model must do and no model is needed for.

Read the JSONL input, split each article into passages with `training.articles.read_article` (the reader the
model uses), tokenize every passage into hashed n-gram ids exactly as the scorer does (the topic model's fitted
word and char_wb vectorizers, through `training.models.fast_hashing.hashed_counts`, in chunks of 500 articles
like `tpc score`) and write one JSON row per article back (its passage and token counts).

    python -m benchmarks.floor IN.jsonl OUT.jsonl --bundle MODEL_DIR/artifacts/bundle
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

import numpy as np

from training.models.fast_hashing import hashed_counts


def model_vectorizers(bundle_dir: str | Path) -> dict:
    """name -> the fitted n-gram vectorizer of each part of the topic model's feature union."""
    from training.bundle import Bundle

    bundle = Bundle.load(bundle_dir)
    features = getattr(bundle.topic_model, "features_", None)
    if features is None:
        raise ValueError(f"{bundle_dir}: the topic model has no `features_` (not the tfidf_linear family)")
    vectorizers = {}
    for name, part in features.transformer_list:
        steps = [part] + [s for _, s in getattr(part, "steps", [])]
        vectorizer = next((s for s in steps if hasattr(s, "build_analyzer")), None)
        if vectorizer is not None:
            vectorizers[name] = vectorizer
    if not vectorizers:
        raise ValueError(f"{bundle_dir}: no vectorizer with build_analyzer() in the topic model")
    return vectorizers


def _flush(rows: list, vectorizers: dict, dst) -> tuple[int, int]:
    texts = [p.text for a in rows for p in a.passages]
    owner = np.repeat(np.arange(len(rows)), [len(a.passages) for a in rows])
    tokens = {}
    for name, vectorizer in vectorizers.items():
        # The scorer's own tokenization into hashed n-gram ids (training.models.fast_hashing for char n-grams).
        per_passage = np.asarray(hashed_counts(vectorizer, texts).sum(1)).ravel() if texts else np.zeros(0)
        tokens[name] = np.bincount(owner, weights=per_passage, minlength=len(rows))
    for i, a in enumerate(rows):
        counts = {name: int(t[i]) if a.passages else 0 for name, t in tokens.items()}
        dst.write(json.dumps({"id": a.id, "title": a.title, "n_passages": len(a.passages), "tokens": counts},
                             ensure_ascii=False) + "\n")
    return len(texts), int(sum(t.sum() for t in tokens.values()))


def run(input_path: str, output_path: str, bundle_dir: str, chunk_size: int = 500) -> dict:
    from training.articles import read_article

    vectorizers = model_vectorizers(bundle_dir)
    n = n_passages = n_tokens = 0
    chunk: list = []
    with open(input_path, encoding="utf-8") as src, open(output_path, "w", encoding="utf-8") as dst:
        for line in src:
            if not line.strip():
                continue
            row = json.loads(line)
            chunk.append(read_article(row["text"], id=str(row.get("id", ""))))
            n += 1
            if len(chunk) == chunk_size:
                p, t = _flush(chunk, vectorizers, dst)
                n_passages, n_tokens, chunk = n_passages + p, n_tokens + t, []
        if chunk:
            p, t = _flush(chunk, vectorizers, dst)
            n_passages, n_tokens = n_passages + p, n_tokens + t
    return {"rows": n, "passages": n_passages, "tokens": n_tokens, "vectorizers": sorted(vectorizers)}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--bundle", required=True, help="the bundle directory of the model (artifacts/bundle)")
    args = p.parse_args(argv)
    print(json.dumps(run(args.input, args.output, args.bundle)), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
