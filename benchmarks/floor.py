"""The floor of scoring: what every scorer of this model must do and no model is needed for.

Read the JSONL input, split each article into passages with `training.articles.read_article` (the reader the
model uses), run the topic model's own analyzers over every passage (the fitted word and char_wb n-gram
analyzers, `build_analyzer()` of the model's vectorizers) and write one JSON row per article back.

    python -m benchmarks.floor IN.jsonl OUT.jsonl --bundle MODEL_DIR/artifacts/bundle
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path


def model_analyzers(bundle_dir: str | Path) -> dict:
    """name -> analyzer callable for each n-gram vectorizer inside the topic model's feature union."""
    from training.bundle import Bundle

    bundle = Bundle.load(bundle_dir)
    features = getattr(bundle.topic_model, "features_", None)
    if features is None:
        raise ValueError(f"{bundle_dir}: the topic model has no `features_` (not the tfidf_linear family)")
    analyzers = {}
    for name, part in features.transformer_list:
        steps = [part] + [s for _, s in getattr(part, "steps", [])]
        vectorizer = next((s for s in steps if hasattr(s, "build_analyzer")), None)
        if vectorizer is not None:
            analyzers[name] = vectorizer.build_analyzer()
    if not analyzers:
        raise ValueError(f"{bundle_dir}: no vectorizer with build_analyzer() in the topic model")
    return analyzers


def run(input_path: str, output_path: str, bundle_dir: str) -> dict:
    from training.articles import read_article

    analyzers = model_analyzers(bundle_dir)
    n = n_passages = n_tokens = 0
    with open(input_path, encoding="utf-8") as src, open(output_path, "w", encoding="utf-8") as dst:
        for line in src:
            if not line.strip():
                continue
            row = json.loads(line)
            article = read_article(row["text"], id=str(row.get("id", "")))
            counts = {name: 0 for name in analyzers}
            for passage in article.passages:
                for name, analyze in analyzers.items():
                    counts[name] += len(analyze(passage.text))
            dst.write(json.dumps({"id": article.id, "title": article.title, "n_passages": len(article.passages),
                                  "tokens": counts}, ensure_ascii=False) + "\n")
            n += 1
            n_passages += len(article.passages)
            n_tokens += sum(counts.values())
    return {"rows": n, "passages": n_passages, "tokens": n_tokens, "analyzers": sorted(analyzers)}


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
