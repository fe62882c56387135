"""Metrics, thresholds, the evaluation report and its plots."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from sklearn.metrics import confusion_matrix, precision_recall_fscore_support

from training import STANCES
from training.aggregate import best_f1_threshold


def choose_thresholds(Y: np.ndarray, P: np.ndarray, floor: float = 0.05) -> np.ndarray:
    """Per-label decision thresholds that maximize F1 on out-of-fold probabilities."""
    return np.array([best_f1_threshold(Y[:, j], P[:, j], floor) for j in range(Y.shape[1])])


def topic_metrics(Y: np.ndarray, D: np.ndarray, labels, prefix: str) -> dict[str, float]:
    """Per-label precision/recall/F1 and micro/macro F1 of binary decisions D against gold Y."""
    out: dict[str, float] = {}
    p, r, f, support = precision_recall_fscore_support(Y, D, average=None, zero_division=0,
                                                       labels=list(range(Y.shape[1])))
    for j, t in enumerate(labels):
        out[f"{prefix}_{t}_precision"], out[f"{prefix}_{t}_recall"], out[f"{prefix}_{t}_f1"] = p[j], r[j], f[j]
        out[f"{prefix}_{t}_support"] = float(support[j])
    present = support > 0
    out[f"{prefix}_macro_f1"] = float(f[present].mean()) if present.any() else 0.0
    out[f"{prefix}_micro_f1"] = float(precision_recall_fscore_support(Y, D, average="micro", zero_division=0)[2])
    return {k: float(v) for k, v in out.items()}


def stance_metrics(y_true, y_pred, prefix: str) -> dict[str, float]:
    """Per-class F1, macro F1, and the mean F1 of favor and against (the stance score that matters most)."""
    y_true, y_pred = list(y_true), list(y_pred)
    if not y_true:
        return {}
    p, r, f, s = precision_recall_fscore_support(y_true, y_pred, labels=list(STANCES), zero_division=0)
    out = {f"{prefix}_{c}_f1": float(f[k]) for k, c in enumerate(STANCES)}
    out.update({f"{prefix}_{c}_support": float(s[k]) for k, c in enumerate(STANCES)})
    present = s > 0
    out[f"{prefix}_macro_f1"] = float(f[present].mean())
    out[f"{prefix}_favor_against_f1"] = float((f[0] + f[1]) / 2)
    out[f"{prefix}_accuracy"] = float(np.mean(np.asarray(y_true) == np.asarray(y_pred)))
    return out


def worst_topic_errors(texts, Y, P, thresholds, labels, k: int = 25, D=None) -> list[dict]:
    """The most confident wrong topic decisions: (passage, gold, predicted, score), farthest from the threshold
    first. D: the decisions when they are not P >= thresholds (a model's own)."""
    D = (np.asarray(P) >= np.asarray(thresholds)) if D is None else np.asarray(D).astype(bool)
    errors = []
    for i, text in enumerate(texts):
        for j, t in enumerate(labels):
            if bool(D[i, j]) != bool(Y[i, j]):
                margin = abs(P[i, j] - thresholds[j]) if np.isfinite(thresholds[j]) else abs(P[i, j] - 0.5)
                errors.append({"text": text, "topic": t, "gold": bool(Y[i, j]), "predicted": bool(D[i, j]),
                               "score": float(P[i, j]), "margin": float(margin)})
    return sorted(errors, key=lambda e: -e["margin"])[:k]


def worst_stance_errors(texts, topics, gold, proba, k: int = 25, pred=None) -> list[dict]:
    """The most confident wrong stances on gold topics: (passage, topic, gold, predicted, confidence)."""
    pred = np.asarray(STANCES)[proba.argmax(1)] if pred is None else np.asarray(pred)
    errors = [{"text": x, "topic": t, "gold": g, "predicted": str(p), "confidence": float(pr.max())}
              for x, t, g, p, pr in zip(texts, topics, gold, pred, proba) if g != p]
    return sorted(errors, key=lambda e: -e["confidence"])[:k]


def confusion_labels(gold, pred) -> list[str]:
    """STANCES, then any other predicted value (e.g. `mixed`, or a topic the model missed), in a stable order."""
    return list(STANCES) + sorted({str(p) for p in pred} - set(STANCES))


def report_tables(labels, Y, D, stance_gold, stance_pred) -> dict:
    """Per-label precision/recall/F1/support, micro/macro F1, and stance per class: the report's numbers.
    A predicted stance outside STANCES (a missed topic, `mixed`) counts as `none`, as in `scored_metrics`; the
    confusion matrix keeps it in a column of its own."""
    stance_pred = [p if p in STANCES else "none" for p in stance_pred]
    m = topic_metrics(Y, D, labels, "topic")
    table = {"topic": {t: {k: m[f"topic_{t}_{k}"] for k in ("precision", "recall", "f1", "support")} for t in labels},
             "topic_micro_f1": m["topic_micro_f1"], "topic_macro_f1": m["topic_macro_f1"]}
    if len(stance_gold):
        s = stance_metrics(stance_gold, stance_pred, "stance")
        p, r, f, n = precision_recall_fscore_support(list(stance_gold), list(stance_pred), labels=list(STANCES),
                                                     zero_division=0)
        table["stance"] = {c: {"precision": float(p[k]), "recall": float(r[k]), "f1": float(f[k]),
                               "support": float(n[k])} for k, c in enumerate(STANCES)}
        table.update({k: s[k] for k in ("stance_macro_f1", "stance_favor_against_f1", "stance_accuracy")})
    return table


def _markdown(name: str, labels, tables: dict, thresholds, paths: list[Path], extra: dict | None) -> str:
    lines = [f"# Evaluation report: {name}", ""] + [f"- {k}: {v}" for k, v in (extra or {}).items()]
    lines += ([""] if extra else []) + ["| topic | precision | recall | F1 | support | threshold |", "|---|---|---|---|---|---|"]
    for j, t in enumerate(labels):
        r = tables["topic"][t]
        lines.append(f"| {t} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {int(r['support'])} | "
                     f"{thresholds[j]:.3f} |")
    lines += ["", f"micro F1 {tables['topic_micro_f1']:.3f}, macro F1 {tables['topic_macro_f1']:.3f}", ""]
    if "stance" in tables:
        lines += ["| stance | precision | recall | F1 | support |", "|---|---|---|---|---|"]
        for c, r in tables["stance"].items():
            lines.append(f"| {c} | {r['precision']:.3f} | {r['recall']:.3f} | {r['f1']:.3f} | {int(r['support'])} |")
        lines += ["", f"stance macro F1 {tables['stance_macro_f1']:.3f}, favor/against F1 "
                      f"{tables['stance_favor_against_f1']:.3f}, accuracy {tables['stance_accuracy']:.3f}", ""]
    lines += [f"![{p.stem}]({p.name})" for p in paths if p.suffix == ".png"]
    lines += [""] + [f"- [{p.name}]({p.name})" for p in paths if p.suffix == ".json"]
    return "\n".join(lines) + "\n"


def _plot_pr_curves(path: Path, labels, Y, P, D, thresholds) -> Path:
    import matplotlib.pyplot as plt
    from sklearn.metrics import PrecisionRecallDisplay

    fig, axes = plt.subplots(1, len(labels), figsize=(4 * len(labels), 3.6))
    for j, t in enumerate(np.atleast_1d(axes)):
        lab = labels[j]
        if Y[:, j].any():
            PrecisionRecallDisplay.from_predictions(Y[:, j], P[:, j], ax=t, name=lab)
            tp = int((D[:, j] & Y[:, j]).sum())
            t.plot(tp / Y[:, j].sum(), tp / max(1, D[:, j].sum()), "o", color="tab:red", label="decision")
            t.legend(loc="lower left")
        t.set_title(f"{lab} (threshold {thresholds[j]:.2f})")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _plot_calibration(path: Path, labels, Y, P) -> Path:
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve

    fig, axes = plt.subplots(1, len(labels), figsize=(4 * len(labels), 3.6))
    for j, ax in enumerate(np.atleast_1d(axes)):
        if Y[:, j].any() and not Y[:, j].all():
            frac, mean = calibration_curve(Y[:, j], P[:, j], n_bins=8, strategy="quantile")
            ax.plot(mean, frac, "o-")
        ax.plot([0, 1], [0, 1], "--", color="grey")
        ax.set_title(f"{labels[j]} calibration")
        ax.set_xlabel("predicted")
        ax.set_ylabel("observed")
    fig.tight_layout()
    fig.savefig(path, dpi=90)
    plt.close(fig)
    return path


def _stance_confusion(out: Path, name: str, stance_gold, stance_pred) -> list[Path]:
    """The stance confusion matrix as a PNG and as JSON (gold rows: STANCES only)."""
    import matplotlib.pyplot as plt

    classes = confusion_labels(stance_gold, stance_pred)
    cm = confusion_matrix(list(stance_gold), stance_pred, labels=classes)[: len(STANCES)]
    fig, ax = plt.subplots(figsize=(1.3 * len(classes) + 1.6, 3.6))
    ax.imshow(cm, cmap="Blues")
    for (r, c), v in np.ndenumerate(cm):
        ax.text(c, r, str(v), ha="center", va="center", color="white" if v > cm.max() / 2 else "black")
    ax.set_xticks(range(len(classes)), classes)
    ax.set_yticks(range(len(STANCES)), list(STANCES))
    ax.set_xlabel("predicted")
    ax.set_ylabel("gold")
    ax.set_title("stance (gold topics)")
    fig.tight_layout()
    png, js = out / f"{name}_stance_confusion.png", out / f"{name}_stance_confusion.json"
    fig.savefig(png, dpi=90)
    plt.close(fig)
    js.write_text(json.dumps({"labels": classes, "rows": "gold (the first three labels)", "columns": "predicted",
                              "matrix": cm.tolist()}, indent=1))
    return [png, js]


def _write_json(path: Path, obj, **kwargs) -> Path:
    path.write_text(json.dumps(obj, indent=1, **kwargs))
    return path


def write_report(out_dir: str | Path, *, labels, Y, P, thresholds, stance_gold, stance_proba, name: str,
                 texts=None, stance_texts=None, stance_topics=None, D=None, stance_pred=None,
                 extra: dict | None = None) -> list[Path]:
    """The evaluation report, into out_dir: PR curve and calibration per topic and the stance confusion matrix
    (PNG), the per-label and stance tables (`{name}_metrics.json`), the thresholds, the worst errors, and a
    `{name}_report.md` that shows them together.

    D: the binary topic decisions (default P >= thresholds); stance_pred: the predicted stance per gold
    (passage, topic) pair (default the argmax of stance_proba); extra: lines for the summary (model, data...)."""
    import matplotlib

    matplotlib.use("Agg")
    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    Y, P, thresholds = np.asarray(Y), np.asarray(P, dtype=float), np.asarray(thresholds, dtype=float)
    D = (P >= thresholds).astype(int) if D is None else np.asarray(D).astype(int)
    if stance_pred is None:
        stance_pred = np.asarray(STANCES)[np.asarray(stance_proba).argmax(1)] if len(stance_gold) else []
    stance_pred = [str(p) for p in stance_pred]
    paths = [_plot_pr_curves(out / f"{name}_pr_curves.png", labels, Y, P, D, thresholds),
             _plot_calibration(out / f"{name}_calibration.png", labels, Y, P)]
    if len(stance_gold):
        paths += _stance_confusion(out, name, stance_gold, stance_pred)
    paths.append(_write_json(out / f"{name}_thresholds.json", dict(zip(labels, map(float, thresholds)))))
    tables = report_tables(labels, Y, D, list(stance_gold), stance_pred)
    paths.append(_write_json(out / f"{name}_metrics.json", tables))
    if texts is not None:
        errs = {"topic": worst_topic_errors(texts, Y, P, thresholds, labels, D=D)}
        if stance_texts is not None and len(stance_gold):
            errs["stance"] = worst_stance_errors(stance_texts, stance_topics, stance_gold, np.asarray(stance_proba),
                                                 pred=stance_pred)
        paths.append(_write_json(out / f"{name}_worst_errors.json", errs, ensure_ascii=False))
    (out / f"{name}_report.md").write_text(_markdown(name, labels, tables, thresholds, paths, extra), encoding="utf-8")
    paths.append(out / f"{name}_report.md")
    return paths


@dataclass
class Scored:
    """A labelled corpus scored through a model: what both the metrics and the report are computed from."""
    Y: np.ndarray  # gold topics (n, labels)
    P: np.ndarray  # the model's topic probability per passage (n, labels)
    D: np.ndarray  # its topic decisions
    thresholds: np.ndarray
    threshold_source: str
    stance_texts: list
    stance_topics: list
    stance_gold: list
    stance_pred: list  # the model's stance for each gold (passage, topic); MISSED when it did not find the topic
    stance_proba: np.ndarray  # (pairs, 3) mean stance probabilities in STANCES order; zeros when missed
    errors: list  # (id, error) of rows the model could not score


MISSED = "topic missed"


def _model_thresholds(model, out, labels) -> tuple[np.ndarray, str]:
    """The decision thresholds: the project's bundle when the model is one, else read off its decisions."""
    try:
        bundle = model.unwrap_python_model().bundle
        if bundle.aggregator is not None:
            return np.asarray(bundle.aggregator.thresholds_, dtype=float), "article aggregator (model bundle)"
        return np.asarray(bundle.thresholds, dtype=float), "passage thresholds (model bundle)"
    except Exception:  # any other pyfunc with the same output schema
        vals = []
        for t in labels:
            pos = out.loc[out[t].fillna(False).astype(bool), f"{t}_prob"].astype(float)
            vals.append(float(pos.min()) if len(pos) else float("nan"))
        return np.asarray(vals), "lowest probability decided positive (inferred from the output)"


def score_corpus(model, corpus, labels) -> Scored:
    """Every labelled passage through a loaded pyfunc model, each passage as a one-passage article."""
    import pandas as pd

    out = model.predict(pd.DataFrame({"id": [e.id for e in corpus.examples], "text": corpus.texts}))
    if len(out) != len(corpus):
        raise ValueError(f"the model returned {len(out)} rows for {len(corpus)} passages")
    Y = corpus.topic_matrix(labels)
    P = np.column_stack([pd.to_numeric(out[f"{t}_prob"], errors="coerce").fillna(0.0).to_numpy() for t in labels])
    D = np.column_stack([[int(bool(r)) if pd.notna(r) else 0 for r in out[t]] for t in labels])
    thresholds, source = _model_thresholds(model, out, labels)
    texts, topics, gold, pred, proba = [], [], [], [], []
    for i, e in enumerate(corpus.examples):
        for t in e.topics:
            s = out[f"{t}_stance"].iloc[i]
            texts.append(e.text)
            topics.append(t)
            gold.append(e.stance[t])
            found = bool(D[i, labels.index(t)])
            pred.append(str(s) if found and isinstance(s, str) else MISSED)
            proba.append([float(v) if found and pd.notna(v := out[f"{t}_{c}"].iloc[i]) else 0.0 for c in STANCES])
    errors = [(str(r["id"]), r["error"]) for _, r in out.iterrows() if isinstance(r["error"], str)]
    return Scored(Y, P, D, thresholds, source, texts, topics, gold, pred, np.asarray(proba).reshape(-1, len(STANCES)),
                  errors)


def scored_metrics(sc: Scored, labels, prefix: str) -> dict[str, float]:
    """Topic decisions against gold; stance on every gold topic, a topic the model missed (or called `mixed` in a
    one-passage article) counting as `none`: the answer a user of the article output gets."""
    metrics = topic_metrics(sc.Y, sc.D, labels, f"{prefix}_topic")
    metrics.update(stance_metrics(sc.stance_gold, [p if p in STANCES else "none" for p in sc.stance_pred],
                                  f"{prefix}_stance"))
    metrics[f"{prefix}_n"] = float(len(sc.Y))
    metrics[f"{prefix}_rows_with_errors"] = float(len(sc.errors))
    return metrics


def evaluate_model(model, corpus, labels, prefix: str = "eval") -> dict[str, float]:
    """Score every labelled passage through a loaded pyfunc model (each passage as a one-passage article) and
    measure topic decisions and Turkey's stance on every gold topic (see `scored_metrics`)."""
    return scored_metrics(score_corpus(model, corpus, tuple(labels)), tuple(labels), prefix)


def evaluate_report(model, corpus, labels, out_dir: str | Path, name: str = "eval",
                    extra: dict | None = None) -> tuple[dict[str, float], list[Path]]:
    """The metrics of `evaluate_model` and the same report a training run logs, for any model and labelled data."""
    labels = tuple(labels)
    sc = score_corpus(model, corpus, labels)
    metrics = scored_metrics(sc, labels, name)
    extra = {**(extra or {}), "passages": len(corpus), "decision thresholds": sc.threshold_source,
             "rows the model could not score": len(sc.errors)}
    paths = write_report(out_dir, labels=labels, Y=sc.Y, P=sc.P, thresholds=sc.thresholds,
                         stance_gold=sc.stance_gold, stance_proba=sc.stance_proba, name=name, texts=corpus.texts,
                         stance_texts=sc.stance_texts, stance_topics=sc.stance_topics, D=sc.D,
                         stance_pred=sc.stance_pred, extra=extra)
    out = Path(out_dir)
    (out / f"{name}_scalar_metrics.json").write_text(json.dumps(metrics, indent=1))
    if sc.errors:
        (out / f"{name}_row_errors.json").write_text(json.dumps(sc.errors, ensure_ascii=False, indent=1))
    return metrics, paths + [out / f"{name}_scalar_metrics.json"] + ([out / f"{name}_row_errors.json"] if sc.errors else [])
