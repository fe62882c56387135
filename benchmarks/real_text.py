"""Families compared on real text: every config trained the way `tpc train` trains it (written passages + the real
train split; thresholds and roll-up chosen on real out-of-fold scores), measured on the real dev split (where
the choice is made) and the real test split (reported, never used for a choice), with two references: the
keyword baseline (the lexicon's cues as a regex) and the written-only model (the default config trained on the
written passages alone).

    python -m benchmarks.real_text [--configs configs/default.yaml configs/embedding.yaml] [--json FILE]

Each config runs through `training.train.run` into a scratch MLflow store (no registration), so the numbers are
the run's own logged metrics. The chosen family is the one with the best dev article topic macro-F1 (ties:
dev Turkey stance, mean F1 favor/against).
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


def run_config(path: str, overrides: list[str], store: Path) -> dict:
    from training.config import load_config, resolve
    from training.train import run

    cfg = load_config(path, SCRATCH + overrides + [f"tracking_uri=sqlite:///{store}"])
    t0 = time.perf_counter()
    result = run(cfg, resolve(path, SCRATCH + overrides), path)
    return {"config": path, "overrides": overrides, "family": cfg.model.family, "seconds": time.perf_counter() - t0,
            "metrics": result["metrics"]}


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
    with tempfile.TemporaryDirectory() as tmp:
        store = Path(tmp) / "mlflow.db"
        runs = [run_config(c, args.set, store) for c in args.configs]
        written = run_config("configs/default.yaml", args.set + ["data.train_on_real=false"], store)
    rows = [row(f"{r['family']} ({r['config']})", r["metrics"]) for r in runs]
    rows.append(row("keyword baseline (lexicon cues as a regex)", runs[0]["metrics"], prefix="keyword_real"))
    rows.append(row("written-only (configs/default.yaml, data.train_on_real=false)", written["metrics"]))
    chosen = max(range(len(runs)), key=lambda i: (rows[i]["dev_topic_macro_f1"] or 0,
                                                  rows[i]["dev_stance_favor_against_f1"] or 0))
    result = {"rows": rows, "chosen_by_dev": rows[chosen]["model"],
              "seconds": {r["config"]: round(r["seconds"], 1) for r in runs + [written]}}
    if args.json:
        Path(args.json).write_text(json.dumps(result, indent=1))
    print(json.dumps(result))
    print(table(rows))
    print(f"chosen on dev: {result['chosen_by_dev']}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
