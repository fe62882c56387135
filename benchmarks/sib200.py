"""Train and evaluate any model family on SIB-200 French topic classification (7 topics, one per sentence).

    python benchmarks/sib200.py configs/sib200*.yaml [--set model.C=8] [--data /work/shared/data/sib200_fra]
    python benchmarks/sib200.py configs/sib200_use.yaml configs/sib200_spacy.yaml --select cv --fuse

Each config is a normal project config (`extends: default.yaml`); only its `model` section and `seed` are used,
through the project's own topic estimator (one head per topic; the prediction is the most probable topic).

--select dev (default): each config is fitted on train as written (its hyperparameters were chosen on dev); dev
and test are reported. --select cv: each config's hyperparameters are chosen from --grid (default model.C over
0.25..1024) by repeated stratified k-fold cross-validation over train+dev (--folds x --repeats, mean accuracy of
the out-of-fold predictions), then the chosen setting is refitted on train+dev and test is reported; the "cv acc"
column replaces dev. --fuse (with --select cv) adds a late fusion of the configs given: each member's topic
probabilities (normalised to sum to 1) are averaged with weights chosen on the same out-of-fold predictions (the
first config weighs 1, each other one a weight of --fuse-weights), and the refitted members are fused on test.
Test is never used for a choice. The data is read in place, never copied. Encodings are cached in memory for
one config only (and on disk only with --cache-dir), so a config's fit time includes encoding its sentences once.
"""

from __future__ import annotations

import argparse
import itertools
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
DEFAULT_GRID = ["model.C=0.25,0.5,1,2,4,8,16,32,64,128,256,512,1024"]


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


def _config(config: str, overrides: list[str], cache_dir: str | None):
    from training.config import load_config

    cfg = load_config(config, overrides)
    model_cfg = cfg.model
    if "cache_dir" in type(model_cfg).model_fields:
        model_cfg = model_cfg.model_copy(update={"cache_dir": cache_dir})
    return cfg, model_cfg


def _fit_proba(model_cfg, seed: int, labels, train_x, train_y, test_x) -> np.ndarray:
    """The family's topic estimator fitted on (train_x, train_y); its topic probabilities on test_x, each row
    normalised to sum to 1 (one-vs-rest heads do not)."""
    from training import models as families

    Y = np.array([[int(y == label) for label in labels] for y in train_y])
    est = families.build("topic", model_cfg, None, seed, labels).fit(list(train_x), Y)
    P = np.asarray(est.predict_proba(list(test_x)), dtype=float)
    return P / np.clip(P.sum(1, keepdims=True), 1e-12, None)


def grid_settings(grid: list[str]) -> list[list[str]]:
    """["model.C=1,4", "model.embedding_weight=1,2"] -> every combination as a list of KEY=VALUE overrides."""
    axes = []
    for item in grid:
        key, sep, values = item.partition("=")
        if not sep or not values:
            raise SystemExit(f"--grid {item!r}: expected KEY=V1,V2,...")
        axes.append([f"{key}={v}" for v in values.split(",")])
    return [list(combo) for combo in itertools.product(*axes)]


def cv_splits(labels_idx: np.ndarray, folds: int, repeats: int, seed: int) -> list:
    from sklearn.model_selection import RepeatedStratifiedKFold

    rskf = RepeatedStratifiedKFold(n_splits=folds, n_repeats=repeats, random_state=seed)
    return list(rskf.split(np.zeros(len(labels_idx)), labels_idx))


def oof_proba(model_cfg, seed: int, labels, texts: list[str], gold: list[str], splits, folds: int) -> np.ndarray:
    """Out-of-fold probabilities, one (n, topics) array per repetition of the k folds."""
    texts, gold = np.array(texts, dtype=object), np.array(gold, dtype=object)
    P = np.zeros((len(splits) // folds, len(texts), len(labels)))
    for k, (fit_idx, held_idx) in enumerate(splits):
        P[k // folds, held_idx] = _fit_proba(model_cfg, seed, labels, texts[fit_idx], gold[fit_idx], texts[held_idx])
    return P


def cv_accuracy(P: np.ndarray, labels_idx: np.ndarray) -> tuple[float, float]:
    """Mean and standard deviation over repetitions of the out-of-fold accuracy (%)."""
    accs = [100 * float(np.mean(P[r].argmax(1) == labels_idx)) for r in range(P.shape[0])]
    return float(np.mean(accs)), float(np.std(accs))


def pick_fusion_weights(members: list[np.ndarray], labels_idx: np.ndarray, weights) -> tuple[list[float], float]:
    """Late-fusion weights (the first member weighs 1, each other one a value of `weights`) maximising the mean
    out-of-fold accuracy of the weighted average of the members' probabilities; ties go to the earliest
    combination (smaller weights first when `weights` is increasing)."""
    best, best_acc = None, -1.0
    for ws in itertools.product(list(weights), repeat=len(members) - 1):
        wts = [1.0, *map(float, ws)]
        acc = cv_accuracy(sum(w * P for w, P in zip(wts, members)), labels_idx)[0]
        if acc > best_acc + 1e-9:
            best, best_acc = wts, acc
    return best, best_acc


def _scores(P: np.ndarray, gold: list[str], labels) -> dict:
    pred = [labels[k] for k in P.argmax(1)]
    return {"test_accuracy": round(100 * float(np.mean([p == g for p, g in zip(pred, gold)])), 1),
            "test_macro_f1": round(100 * macro_f1(gold, pred, labels), 1)}


def evaluate_cv(config: str, overrides: list[str], data: Path, cache_dir: str | None, grid: list[str],
                folds: int, repeats: int) -> dict:
    """Hyperparameters chosen by repeated stratified k-fold CV over train+dev, refitted on train+dev, test once.
    The row also carries the chosen setting's out-of-fold and test probabilities (for --fuse)."""
    from training.encoders.cache import EmbeddingCache

    EmbeddingCache.clear_memory()
    (tr_x, tr_y), (dev_x, dev_y), (te_x, te_y) = (read_split(data, s) for s in ("train", "dev", "test"))
    texts, gold = tr_x + dev_x, tr_y + dev_y
    labels = tuple(sorted(set(gold)))
    idx = np.array([labels.index(y) for y in gold])
    cfg, _ = _config(config, overrides, cache_dir)
    splits = cv_splits(idx, folds, repeats, cfg.seed)
    t = time.perf_counter()
    tried = []
    for setting in grid_settings(grid) or [[]]:
        cfg, model_cfg = _config(config, overrides + setting, cache_dir)
        P = oof_proba(model_cfg, cfg.seed, labels, texts, gold, splits, folds)
        tried.append((cv_accuracy(P, idx), setting, model_cfg, P))
    (acc, sd), setting, model_cfg, P_oof = max(tried, key=lambda row: row[0][0])  # first best on ties
    cv_s = time.perf_counter() - t
    t = time.perf_counter()
    P_test = _fit_proba(model_cfg, cfg.seed, labels, texts, gold, te_x)
    fit_s = time.perf_counter() - t
    return {"config": config, "overrides": overrides, "selected": setting, "model": describe(model_cfg),
            "cv": {" ".join(s) or "as written": round(a[0], 2) for a, s, _, _ in tried},
            "cv_accuracy": round(acc, 1), "cv_std": round(sd, 1), "cv_seconds": round(cv_s, 1),
            "fit_seconds": round(fit_s, 1), **_scores(P_test, te_y, labels),
            "_oof": P_oof, "_test": P_test, "_idx": idx, "_test_gold": te_y, "_labels": labels}


def fuse(rows: list[dict], weights) -> dict:
    wts, acc = pick_fusion_weights([r["_oof"] for r in rows], rows[0]["_idx"], weights)
    P_oof = sum(w * r["_oof"] for w, r in zip(wts, rows))
    P_test = sum(w * r["_test"] for w, r in zip(wts, rows))
    names = " + ".join(f"{w:g}*{Path(r['config']).stem.removeprefix('sib200_')}" for w, r in zip(wts, rows))
    return {"config": "fusion", "model": f"late fusion {names}", "weights": wts,
            "members": [r["config"] for r in rows], "cv_accuracy": round(cv_accuracy(P_oof, rows[0]["_idx"])[0], 1),
            "cv_std": round(cv_accuracy(P_oof, rows[0]["_idx"])[1], 1),
            "fit_seconds": round(sum(r["fit_seconds"] for r in rows), 1),
            **_scores(P_test, rows[0]["_test_gold"], rows[0]["_labels"])}


def evaluate(config: str, overrides: list[str], data: Path, cache_dir: str | None) -> dict:
    from training import models as families
    from training.encoders.cache import EmbeddingCache

    cfg, model_cfg = _config(config, overrides, cache_dir)
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
    ap.add_argument("--select", choices=("dev", "cv"), default="dev",
                    help="dev: fit on train as configured; cv: choose --grid by CV over train+dev, refit on it")
    ap.add_argument("--grid", action="append", default=None, metavar="KEY=V1,V2,...",
                    help=f"settings tried by --select cv (repeatable; default {' '.join(DEFAULT_GRID)})")
    ap.add_argument("--folds", type=int, default=5)
    ap.add_argument("--repeats", type=int, default=5)
    ap.add_argument("--fuse", action="store_true", help="with --select cv: add a late fusion of the configs")
    ap.add_argument("--fuse-weights", default="0,0.1,0.2,0.3,0.5,1",
                    help="weights tried for each member after the first (comma-separated)")
    args = ap.parse_args(argv)
    if args.fuse and (args.select != "cv" or len(args.configs) < 2):
        ap.error("--fuse needs --select cv and at least two configs")
    grid = DEFAULT_GRID if args.grid is None else args.grid
    print(f"SIB-200 French from {args.data}; machine: {platform.platform()}, {os.cpu_count()} CPUs, "
          f"load average {os.getloadavg()[0]:.1f}", flush=True)
    if args.select == "cv":
        print(f"selection: {args.repeats} x stratified {args.folds}-fold CV over train+dev over {' '.join(grid)}; "
              "chosen setting refitted on train+dev", flush=True)
    first = "dev acc" if args.select == "dev" else "cv acc"
    header = f"{'config':34} {'model':52} {first:>7} {'test acc':>8} {'test F1':>7} {'fit s':>6}"
    print(header + "\n" + "-" * len(header), flush=True)
    rows = []

    def show(row):
        print(f"{Path(row['config']).name:34} {row['model']:52} {row.get('dev_accuracy', row.get('cv_accuracy')):7.1f} "
              f"{row['test_accuracy']:8.1f} {row['test_macro_f1']:7.1f} {row['fit_seconds']:6.1f}", flush=True)
        if args.json:
            with open(args.json, "a", encoding="utf-8") as fh:
                fh.write(json.dumps({k: v for k, v in row.items() if not k.startswith("_")}) + "\n")

    for config in args.configs:
        if args.select == "cv":
            row = evaluate_cv(config, args.overrides, args.data, args.cache_dir, grid, args.folds, args.repeats)
        else:
            row = evaluate(config, args.overrides, args.data, args.cache_dir)
        rows.append(row)
        show(row)
    if args.fuse:
        show(fuse(rows, [float(w) for w in args.fuse_weights.split(",")]))
    for name, acc in PAPER.items():
        print(f"{'':34} {name:52} {'':7} {acc:8.1f}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
