"""Train and evaluate any model family on SIB-200 French topic classification (7 topics, one per sentence).

    python benchmarks/sib200.py configs/sib200*.yaml [--set model.C=8] [--data /work/shared/data/sib200_fra]

Each config is a normal project config (`extends: default.yaml`); only its `model` section and `seed` are used,
through the project's own topic estimator (one head per topic; the prediction is the most probable topic).
Hyperparameters are chosen on dev; test is reported as is. The data is read in place, never copied. Encodings are
cached in memory for one config only (and on disk only with --cache-dir), so a config's fit time includes
encoding its sentences once.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))

DEFAULT_DATA = Path(os.environ.get("SIB200_FRA", REPO.parent / "shared" / "data" / "sib200_fra"))
PAPER = {"MLP (paper)": 57.6, "GPT-4 zero-shot (paper)": 77.5, "XLM-R-base (paper)": 89.2,
         "XLM-R-large (paper)": 89.7}


def read_split(data: Path, split: str) -> tuple[list[str], list[str]]:
    path = data / f"{split}.jsonl"
    if not path.is_file():
        raise SystemExit(f"{path}: not found (pass --data DIR with SIB-200 train/dev/test.jsonl)")
    texts, labels = [], []
    with open(path, encoding="utf-8") as fh:
        for n, line in enumerate(fh, 1):
            if not line.strip():
                continue
            try:
                row = json.loads(line)
                texts.append(row["text"])
                labels.append(row["label"])
            except (json.JSONDecodeError, KeyError) as exc:
                raise SystemExit(f"{path}:{n}: not a SIB-200 row with text and label ({exc})") from None
    return texts, labels


def macro_f1(gold: list[str], pred: list[str], labels) -> float:
    from sklearn.metrics import f1_score

    return float(f1_score(gold, pred, labels=list(labels), average="macro", zero_division=0))


def describe(model_cfg) -> str:
    m = model_cfg.model_dump()
    if m["family"] == "embedding_linear":
        enc = m["encoder"] if isinstance(m["encoder"], str) else "+".join(m["encoder"])
        return f"embedding_linear[{enc}{' +tfidf' if m['with_tfidf'] else ''}] C={m['C']}"
    if m["family"] == "tfidf_linear":
        return f"tfidf_linear[word{tuple(m['word_ngrams'])} char{m['char_ngrams'] and tuple(m['char_ngrams'])}] C={m['C']}"
    return m["family"]


def evaluate(config: str, overrides: list[str], data: Path, cache_dir: str | None) -> dict:
    from training import models as families
    from training.config import load_config
    from training.encoders.cache import EmbeddingCache

    cfg = load_config(config, overrides)
    model_cfg = cfg.model
    if "cache_dir" in type(model_cfg).model_fields:
        model_cfg = model_cfg.model_copy(update={"cache_dir": cache_dir})
    EmbeddingCache.clear_memory()
    (tr_x, tr_y), (dev_x, dev_y), (te_x, te_y) = (read_split(data, s) for s in ("train", "dev", "test"))
    labels = tuple(sorted(set(tr_y)))
    Y = np.array([[int(y == label) for label in labels] for y in tr_y])
    est = families.build("topic", model_cfg, None, cfg.seed, labels)
    t = time.perf_counter()
    est.fit(tr_x, Y)
    fit_s = time.perf_counter() - t
    out = {"config": config, "overrides": overrides, "model": describe(model_cfg), "fit_seconds": round(fit_s, 1)}
    for split, x, gold in (("dev", dev_x, dev_y), ("test", te_x, te_y)):
        t = time.perf_counter()
        pred = [labels[k] for k in est.predict_proba(x).argmax(1)]
        out[f"{split}_predict_seconds"] = round(time.perf_counter() - t, 2)
        out[f"{split}_accuracy"] = round(100 * float(np.mean([p == g for p, g in zip(pred, gold)])), 1)
        out[f"{split}_macro_f1"] = round(100 * macro_f1(gold, pred, labels), 1)
    return out


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("configs", nargs="+")
    ap.add_argument("--set", dest="overrides", action="append", default=[], metavar="KEY=VALUE")
    ap.add_argument("--data", type=Path, default=DEFAULT_DATA)
    ap.add_argument("--cache-dir", default=None, help="embedding cache directory (default: memory only)")
    ap.add_argument("--json", type=Path, help="also write the rows as JSON lines here")
    args = ap.parse_args(argv)
    print(f"SIB-200 French from {args.data}; machine: {platform.platform()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    header = f"{'config':34} {'model':52} {'dev acc':>7} {'test acc':>8} {'test F1':>7} {'fit s':>6}"
    print(header + "\n" + "-" * len(header), flush=True)
    rows = []
    for config in args.configs:
        row = evaluate(config, args.overrides, args.data, args.cache_dir)
        rows.append(row)
        print(f"{Path(config).name:34} {row['model']:52} {row['dev_accuracy']:7.1f} {row['test_accuracy']:8.1f} "
              f"{row['test_macro_f1']:7.1f} {row['fit_seconds']:6.1f}", flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as fh:
                fh.write(json.dumps(row) + "\n")
    for name, acc in PAPER.items():
        print(f"{'':34} {name:52} {'':7} {acc:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
