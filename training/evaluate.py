"""Metrics, thresholds, the evaluation report and its plots."""

from __future__ import annotations

import json
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


def worst_topic_errors(texts, Y, P, thresholds, labels, k: int = 25) -> list[dict]:
    """The most confident wrong topic decisions: (passage, gold, predicted, score)."""
    errors = []
    for i, text in enumerate(texts):
        for j, t in enumerate(labels):
            wrong = (P[i, j] >= thresholds[j]) != bool(Y[i, j])
            if wrong:
                errors.append({"text": text, "topic": t, "gold": bool(Y[i, j]), "predicted": bool(not Y[i, j]),
                               "score": float(P[i, j]), "margin": float(abs(P[i, j] - thresholds[j]))})
    return sorted(errors, key=lambda e: -e["margin"])[:k]


def worst_stance_errors(texts, topics, gold, proba, k: int = 25) -> list[dict]:
    pred = np.asarray(STANCES)[proba.argmax(1)]
    errors = [{"text": x, "topic": t, "gold": g, "predicted": str(p), "confidence": float(pr.max())}
              for x, t, g, p, pr in zip(texts, topics, gold, pred, proba) if g != p]
    return sorted(errors, key=lambda e: -e["confidence"])[:k]


def write_report(out_dir: str | Path, *, labels, Y, P, thresholds, stance_gold, stance_proba, name: str,
                 texts=None, stance_texts=None, stance_topics=None) -> list[Path]:
    """Plots (PR curve and calibration per topic, stance confusion matrix) and JSON tables, into out_dir."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    from sklearn.calibration import calibration_curve
    from sklearn.metrics import ConfusionMatrixDisplay, PrecisionRecallDisplay

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    paths: list[Path] = []
    fig, axes = plt.subplots(1, len(labels), figsize=(4 * len(labels), 3.6))
    for j, t in enumerate(np.atleast_1d(axes)):
        lab = labels[j]
        if Y[:, j].any():
            PrecisionRecallDisplay.from_predictions(Y[:, j], P[:, j], ax=t, name=lab)
        t.set_title(f"{lab} (threshold {thresholds[j]:.2f})")
    fig.tight_layout()
    paths.append(out / f"{name}_pr_curves.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)

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
    paths.append(out / f"{name}_calibration.png")
    fig.savefig(paths[-1], dpi=90)
    plt.close(fig)

    if len(stance_gold):
        pred = np.asarray(STANCES)[np.asarray(stance_proba).argmax(1)]
        cm = confusion_matrix(stance_gold, pred, labels=list(STANCES))
        fig, ax = plt.subplots(figsize=(4.2, 3.8))
        ConfusionMatrixDisplay(cm, display_labels=list(STANCES)).plot(ax=ax, colorbar=False)
        ax.set_title("stance (gold topics)")
        fig.tight_layout()
        paths.append(out / f"{name}_stance_confusion.png")
        fig.savefig(paths[-1], dpi=90)
        plt.close(fig)
        (out / f"{name}_stance_confusion.json").write_text(
            json.dumps({"labels": list(STANCES), "matrix": cm.tolist()}, indent=1))
        paths.append(out / f"{name}_stance_confusion.json")
    (out / f"{name}_thresholds.json").write_text(json.dumps(dict(zip(labels, map(float, thresholds))), indent=1))
    paths.append(out / f"{name}_thresholds.json")
    if texts is not None:
        errs = {"topic": worst_topic_errors(texts, Y, P, thresholds, labels)}
        if stance_texts is not None and len(stance_gold):
            errs["stance"] = worst_stance_errors(stance_texts, stance_topics, stance_gold, np.asarray(stance_proba))
        (out / f"{name}_worst_errors.json").write_text(json.dumps(errs, ensure_ascii=False, indent=1))
        paths.append(out / f"{name}_worst_errors.json")
    return paths


def evaluate_model(model, corpus, labels, prefix: str = "eval") -> dict[str, float]:
    """Score every labelled passage through a loaded pyfunc model (each passage as a one-passage article) and
    measure topic decisions and, on the gold topics it also predicts, Turkey's stance."""
    import pandas as pd

    out = model.predict(pd.DataFrame({"id": [e.id for e in corpus.examples], "text": corpus.texts}))
    Y = corpus.topic_matrix(labels)
    D = np.array([[int(bool(r)) for r in out[t]] for t in labels]).T
    metrics = topic_metrics(Y, D, labels, f"{prefix}_topic")
    gold, pred = [], []
    for i, e in enumerate(corpus.examples):
        for t in e.topics:
            s = out[f"{t}_stance"].iloc[i]
            gold.append(e.stance[t])
            pred.append(s if isinstance(s, str) and s in STANCES else "none")
    metrics.update(stance_metrics(gold, pred, f"{prefix}_stance"))
    metrics[f"{prefix}_n"] = float(len(corpus))
    return metrics
