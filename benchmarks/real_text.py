"""Families compared on real text: every config trained the way `tpc train` trains it (written passages + the real
train split; thresholds and roll-up chosen on real out-of-fold scores), measured on the real dev split (where
the choice is made) and the real test split (reported, never used for a choice), with two references: the
keyword baseline (the lexicon's cues as a regex) and the written-only model (the default config trained on the
written passages alone).

    python -m benchmarks.real_text [--configs configs/default.yaml configs/embedding.yaml] [--json FILE]

Each config runs through `training.train.run` into a scratch MLflow store (no registration), so the numbers are
the run's own logged metrics. The choice, on dev only: a family replaces the first config (the default) when its
dev article topic macro-F1 is higher by more than one standard error of the paired difference (bootstrap over
dev articles, 1,000 resamples); otherwise the two tie, and the tie goes to the better dev Turkey stance (mean F1
favor/against), then to the first config (the faster one to train and score).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

from training import TOPICS

DEFAULT_CONFIGS = ["configs/default.yaml", "configs/embedding.yaml"]
SCRATCH = ["register.enabled=false", "register.export_dir=null"]


def run_config(path: str, overrides: list[str], store: Path, dev=None) -> dict:
    """Train as `tpc train` does; with `dev` (real articles), also the logged model's article decisions on them."""
    import mlflow
    import pandas as pd

    from training.config import load_config, resolve
    from training.train import run

    cfg = load_config(path, SCRATCH + overrides + [f"tracking_uri=sqlite:///{store}"])
    t0 = time.perf_counter()
    result = run(cfg, resolve(path, SCRATCH + overrides), path)
    out = {"config": path, "overrides": overrides, "family": cfg.model.family, "seconds": time.perf_counter() - t0,
           "metrics": result["metrics"]}
    if dev:
        model = mlflow.pyfunc.load_model(result["model_uri"])
        pred = model.predict(pd.DataFrame({"id": [a.id for a in dev], "text": [a.text for a in dev]}))
        out["dev_decisions"] = pred[list(TOPICS)].fillna(False).astype(int).to_numpy()
    return out


def paired_bootstrap_se(gold, a, b, n: int = 1000, seed: int = 0) -> tuple[float, float]:
    """(macro-F1 of a minus that of b, standard error of that difference) over resampled articles."""
    import numpy as np
    from sklearn.metrics import f1_score

    def macro(y, d):
        return f1_score(y, d, average="macro", zero_division=0)

    rng = np.random.default_rng(seed)
    diffs = []
    for _ in range(n):
        i = rng.integers(0, len(gold), len(gold))
        diffs.append(macro(gold[i], a[i]) - macro(gold[i], b[i]))
    return float(macro(gold, a) - macro(gold, b)), float(np.std(diffs))


def row(name: str, m: dict, prefix: str = "real") -> dict:
    out = {"model": name}
    for split in ("dev", "test"):
        p = f"{prefix}_{split}"
        out[f"{split}_topic_macro_f1"] = m.get(f"{p}_article_topic_macro_f1")
        out[f"{split}_stance_favor_against_f1"] = m.get(f"{p}_turkey_stance_favor_against_f1")
        out[f"{split}_stance_given_topic_f1"] = m.get(f"{p}_turkey_stance_given_topic_favor_against_f1")
        for t in TOPICS:
            out[f"{split}_{t}_precision"] = m.get(f"{p}_article_topic_{t}_precision")
            out[f"{split}_{t}_recall"] = m.get(f"{p}_article_topic_{t}_recall")
    return out


def table(rows: list[dict]) -> str:
    def f(v):
        return "" if v is None else f"{v:.3f}"

    lines = ["| model | dev topic macro-F1 | dev stance F1 (favor/against) | test topic macro-F1 | "
             + " | ".join(f"test {t} P / R" for t in TOPICS)
             + " | test stance F1 (favor/against) | test stance F1, gold topics given |",
             "|---|---:|---:|---:|" + "---:|" * len(TOPICS) + "---:|---:|"]
    for r in rows:
        per_topic = " | ".join(f"{f(r[f'test_{t}_precision'])} / {f(r[f'test_{t}_recall'])}" for t in TOPICS)
        lines.append(f"| {r['model']} | {f(r['dev_topic_macro_f1'])} | {f(r['dev_stance_favor_against_f1'])} | "
                     f"{f(r['test_topic_macro_f1'])} | {per_topic} | {f(r['test_stance_favor_against_f1'])} | "
                     f"{f(r['test_stance_given_topic_f1'])} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--configs", nargs="+", default=DEFAULT_CONFIGS)
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="override for every config")
    p.add_argument("--json", help="also write the full result here")
    args = p.parse_args(argv)
    os.environ.setdefault("PYTHONWARNINGS", "ignore")
    from training.config import load_config
    from training.real import article_gold, load_real

    base = load_config(args.configs[0], args.set)
    dev = load_real(base.data.real, base.data.data_dir, splits=("dev",))
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "mlflow.db"
        runs = [run_config(c, args.set, store, dev) for c in args.configs]
        written = run_config("configs/default.yaml", args.set + ["data.train_on_real=false"], store)
    rows = [row(f"{r['family']} ({r['config']})", r["metrics"]) for r in runs]
    rows.append(row("keyword baseline (lexicon cues as a regex)", runs[0]["metrics"], prefix="keyword_real"))
    rows.append(row("written-only (configs/default.yaml, data.train_on_real=false)", written["metrics"]))
    gold = article_gold(dev)
    chosen, versus = 0, {}
    for i in range(1, len(runs)):
        diff, se = paired_bootstrap_se(gold, runs[i]["dev_decisions"], runs[chosen]["dev_decisions"])
        versus[f"{runs[i]['config']} - {runs[chosen]['config']}"] = {"dev_macro_f1_diff": round(diff, 4),
                                                                      "bootstrap_se": round(se, 4)}
        tie_break = (rows[i]["dev_stance_favor_against_f1"] or 0) > (rows[chosen]["dev_stance_favor_against_f1"] or 0)
        if diff > se or (abs(diff) <= se and tie_break):
            chosen = i
    result = {"rows": rows, "dev_comparisons": versus, "chosen_by_dev": rows[chosen]["model"],
              "seconds": {r["config"]: round(r["seconds"], 1) for r in runs + [written]}}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    print(table(rows))
    print(f"chosen on dev: {result['chosen_by_dev']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
