"""The stages of a training run, each a function of the config and the earlier stages' results.

`training.train.run` calls them in order (data -> cross-validation -> roll-up -> held-out fit -> final fit); a sweep
trial calls the first two. No stage touches MLflow: `training.runlog` logs what they return.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np

from training import STANCES
from training import models as families
from training.aggregate import ArticleAggregator, article_features, composite_articles, is_theatre
from training.baselines import seeds_only_loao
from training.bundle import Bundle
from training.config import TrainConfig, stance_model_config
from training.data import Corpus, load_files, load_seed_gold
from training.evaluate import choose_thresholds, stance_metrics, topic_metrics
from training.fits import SERIAL, FitJob, FitPool, parallel_family
from training.lexicon import load_lexicon
from training.progress import stage
from training.splits import make_folds

log = logging.getLogger("training")


@dataclass
class Inputs:
    """What a run learns from and is measured on."""
    train: Corpus  # written passages + the real train split's passages
    seeds: Corpus | None  # the seed passages' gold (evaluation only)
    real: dict  # split -> list of RealArticle
    lexicon: dict | None
    labels: tuple[str, ...]
    folds: list = field(default_factory=list)


@dataclass
class StanceOOF:
    texts: list
    topics: list
    gold: list
    proba: np.ndarray


@dataclass
class CrossValidation:
    """Out-of-fold scores on the training passages and the thresholds chosen on them."""
    Y: np.ndarray
    P: np.ndarray
    thresholds: np.ndarray
    metrics: dict
    stance: StanceOOF


@dataclass
class Rollup:
    aggregator: ArticleAggregator | None
    metrics: dict


@dataclass
class HeldOut:
    """The model fit on the training passages, and what it scored on text it never saw."""
    bundle: Bundle
    metrics: dict


def load_inputs(cfg: TrainConfig, with_folds: bool = True) -> Inputs:
    """Written + real train passages, seed gold (or None), real articles by split, the lexicon and the folds."""
    from training.real import SPLITS, load_real, passage_corpus

    labels = tuple(cfg.topic.labels)
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
    inputs = Inputs(train, seeds, real, load_lexicon(cfg.lexicon.path), labels)
    return split(cfg, inputs) if with_folds else inputs


def split(cfg: TrainConfig, inputs: Inputs) -> Inputs:
    stage(f"splitting {len(inputs.train)} training passages into {cfg.splits.n_folds} folds")
    inputs.folds = make_folds(inputs.train, cfg.splits, cfg.seed, inputs.labels)
    return inputs


def fit_pool(cfg: TrainConfig) -> FitPool:
    """Where this run's fits run: `cfg.fit_jobs` processes when its families allow it, else this process."""
    return FitPool(cfg.fit_jobs if parallel_family(cfg.model, stance_model_config(cfg)) else 1)


def _collect(name: str, pending, tests, out: np.ndarray) -> np.ndarray:
    for k, (job, test) in enumerate(zip(pending, tests), 1):
        stage(f"cross-validation: {name} fold {k}/{len(tests)}")
        out[test] = job.result()
    return out


def oof_topic(cfg: TrainConfig, corpus: Corpus, folds, lexicon, labels, pool: FitPool = SERIAL):
    """Submits each fold's topic fit; returns the function that waits for them and gives the out-of-fold scores."""
    Y = corpus.topic_matrix(labels)
    texts = corpus.texts  # a property that builds the list: once, not once per passage
    pending = [pool.submit(FitJob("topic", cfg.model, lexicon, cfg.seed, labels, [texts[i] for i in tr], Y[tr],
                                  [texts[i] for i in te])) for tr, te in folds]
    return lambda: _collect("topic", pending, [te for _, te in folds], np.zeros(Y.shape))


def oof_stance(cfg: TrainConfig, corpus: Corpus, folds, lexicon, labels, pool: FitPool = SERIAL):
    """Submits each fold's stance fit (a passage's pairs follow it); returns the function that gives a StanceOOF."""
    texts, topics, stances, owner = corpus.stance_pairs()
    X, y, owner = np.array([texts, topics], dtype=object).T.reshape(-1, 2), np.asarray(stances), np.asarray(owner)
    masks = [(np.isin(owner, tr), np.isin(owner, te)) for tr, te in folds]
    pending = [pool.submit(FitJob("stance", stance_model_config(cfg), lexicon, cfg.seed, labels, X[tr], y[tr], X[te]))
               for tr, te in masks]
    return lambda: StanceOOF(texts, topics, stances,
                             _collect("stance", pending, [te for _, te in masks], np.zeros((len(y), len(STANCES)))))


def cross_validate(cfg: TrainConfig, inputs: Inputs, pool: FitPool = SERIAL) -> CrossValidation:
    """Out-of-fold topic probabilities, the thresholds chosen on them, the cv_* metrics and the out-of-fold stance
    pairs. Sweep trials score on this alone."""
    train, labels = inputs.train, inputs.labels
    Y = train.topic_matrix(labels)
    topic = oof_topic(cfg, train, inputs.folds, inputs.lexicon, labels, pool)
    stance_oof = oof_stance(cfg, train, inputs.folds, inputs.lexicon, labels, pool)  # both submitted, then awaited
    P = topic()
    thresholds = choose_thresholds(Y, P, cfg.topic.min_threshold)
    metrics = topic_metrics(Y, (P >= thresholds).astype(int), labels, "cv_topic")
    metrics.update({f"threshold_{t}": float(v) for t, v in zip(labels, thresholds)})
    stance = stance_oof()
    metrics.update(stance_metrics(stance.gold, np.asarray(STANCES)[stance.proba.argmax(1)], "cv_stance"))
    return CrossValidation(Y, P, thresholds, metrics, stance)


def use_real_thresholds(cfg: TrainConfig, inputs: Inputs, cv: CrossValidation) -> CrossValidation:
    """Passage thresholds chosen on the out-of-fold scores of the real passages, when there are any: the real
    prevalence, not the written passages', decides where a topic starts."""
    real = np.array([e.source == "real" for e in inputs.train.examples])
    if not real.any():
        return cv
    Y, P, labels = cv.Y[real], cv.P[real], inputs.labels
    chosen = choose_thresholds(Y, P, cfg.topic.min_threshold)
    metrics = {**cv.metrics, **topic_metrics(Y, (P >= chosen).astype(int), labels, "cv_real_passage_topic")}
    metrics.update({f"threshold_{t}": float(v) for t, v in zip(labels, chosen)})
    return CrossValidation(cv.Y, cv.P, chosen, metrics, cv.stance)


def _article_dataset(arts, P, Y, cues, thresholds):
    feats = np.stack([article_features(P[a], thresholds, None if cues is None else cues[a]) for a in arts])
    gold = np.stack([Y[a].max(0) for a in arts])
    return feats, gold


def fit_rollup(cfg: TrainConfig, inputs: Inputs, cv: CrossValidation, rng) -> Rollup:
    """The article decision, learned on real training articles at real prevalence (their passages' out-of-fold
    scores), plus composite articles of written passages as an extra."""
    stage("roll-up: learning the article decision")
    corpus, labels, Y, P, thresholds = inputs.train, inputs.labels, cv.Y, cv.P, cv.thresholds
    metrics: dict = {}
    cues = Bundle(None, None, labels, thresholds, None, inputs.lexicon).cue_matrix(corpus.texts)
    written = np.array([e.source != "real" for e in corpus.examples])
    held = np.intersect1d(inputs.folds[0][1], np.flatnonzero(written))
    theatre, a = is_theatre(corpus.texts), cfg.article
    eval_arts = composite_articles(held, Y, theatre, a.composite_articles, a.min_passages, a.max_passages, rng)
    fit_arts = composite_articles(np.setdiff1d(np.flatnonzero(written), held), Y, theatre, a.composite_articles,
                                  a.min_passages, a.max_passages, rng)
    row = {e.id: i for i, e in enumerate(corpus.examples)}
    real_arts = [np.array([row[f"{r.id}#{p.index}"] for p in r.article.passages]) for r in inputs.real["train"]]
    if eval_arts:
        Fe, Ge = _article_dataset(eval_arts, P, Y, cues, thresholds)
        metrics.update(topic_metrics(Ge, (Fe[:, :, 0] >= thresholds).astype(int), labels, "composite_article_topic_max"))
    if cfg.article.aggregator != "learned" or not (eval_arts or real_arts):
        return Rollup(None, metrics)
    Fa, Ga = _article_dataset(eval_arts + fit_arts + real_arts, P, Y, cues, thresholds)
    return Rollup(ArticleAggregator(labels=labels).fit(Fa, Ga), metrics)


@dataclass
class Submitted:
    """The fits that need no folds, submitted as a run starts: the held-out topic and stance models and the
    seeds-only baseline (handles: `.result()`)."""
    topic: object
    stance: object
    seeds_only: object | None = None


def submit_models(cfg: TrainConfig, corpus: Corpus, lexicon, labels, pool: FitPool = SERIAL) -> tuple:
    """The topic and stance fits on the whole corpus."""
    texts, topics, stances, _ = corpus.stance_pairs()
    return (pool.submit(FitJob("topic", cfg.model, lexicon, cfg.seed, labels, corpus.texts, corpus.topic_matrix(labels))),
            pool.submit(FitJob("stance", stance_model_config(cfg), lexicon, cfg.seed, labels,
                               np.array([texts, topics], dtype=object).T.reshape(-1, 2), np.asarray(stances))))


def submit_held_out(cfg: TrainConfig, inputs: Inputs, pool: FitPool = SERIAL) -> Submitted:
    topic, stance = submit_models(cfg, inputs.train, inputs.lexicon, inputs.labels, pool)
    seeds_only = None if inputs.seeds is None else \
        pool.submit(seeds_only_loao, cfg, inputs.seeds, inputs.lexicon, inputs.labels)
    return Submitted(topic, stance, seeds_only)


def fit_bundle(cfg, corpus: Corpus, lexicon, labels, thresholds, aggregator, meta, models: tuple | None = None) -> Bundle:
    """The bundle of the topic and stance models fit on `corpus` (or of `models`, their submitted fits)."""
    topic, stance = models or submit_models(cfg, corpus, lexicon, labels)
    return Bundle(topic.result(), stance.result(), labels, thresholds, aggregator, lexicon, meta)


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


def _evaluate_real(bundle: Bundle, real: dict, lexicon, labels) -> dict:
    """Real dev and test articles, through the model and through the keyword baseline."""
    from training.real_eval import KeywordBaseline, real_metrics, stance_given_topics

    metrics: dict = {}
    keywords = KeywordBaseline(lexicon, labels) if lexicon else None
    for split in ("dev", "test"):
        if real[split]:
            log.info("evaluating on the real %s split (%d articles)", split, len(real[split]))
            metrics.update(real_metrics(bundle.predict_frame, real[split], f"real_{split}", labels))
            metrics.update(stance_given_topics(bundle, real[split], f"real_{split}"))
            if keywords is not None:
                metrics.update(real_metrics(keywords.predict_frame, real[split], f"keyword_real_{split}", labels))
    return metrics


def held_out(cfg: TrainConfig, inputs: Inputs, cv: CrossValidation, rollup: Rollup, meta: dict,
             submitted: Submitted | None = None) -> HeldOut:
    """The model fit on the training passages, measured on what it never saw: seeds, challenge sets, real dev and
    test articles, and the same real splits through the keyword baseline; with the seeds-only baseline.
    `submitted`: those fits, already started (`submit_held_out`)."""
    from training import robustness

    stage("held-out fit on the training passages, evaluation on seeds, challenge sets and real dev/test")
    labels, seeds = inputs.labels, inputs.seeds
    submitted = submitted or submit_held_out(cfg, inputs)
    bundle = fit_bundle(cfg, inputs.train, inputs.lexicon, labels, cv.thresholds, rollup.aggregator, meta,
                        (submitted.topic, submitted.stance))
    metrics: dict = {}
    if seeds is not None:
        metrics.update(evaluate_on_seeds(bundle, seeds, cfg.data.seeds_dir, labels))
        metrics.update(robustness.evaluate(bundle, seeds, cfg.data.seeds_dir, seed=cfg.seed))
        metrics.update(submitted.seeds_only.result())
    metrics.update(_evaluate_real(bundle, inputs.real, inputs.lexicon, labels))
    return HeldOut(bundle, metrics)


def final_fit(cfg: TrainConfig, inputs: Inputs, cv: CrossValidation, rollup: Rollup, held: HeldOut) -> Bundle:
    """The registered model: the held-out model itself, or (data.fit_final_on: train+seeds) refit with the seeds."""
    if inputs.seeds is None or cfg.data.fit_final_on != "train+seeds":
        stage("final fit: the registered model is the held-out fit (data.fit_final_on: train)")
        return held.bundle
    stage("final fit: the registered model, on the training passages and the seeds")
    return fit_bundle(cfg, inputs.train + inputs.seeds, inputs.lexicon, inputs.labels, cv.thresholds,
                      rollup.aggregator, held.bundle.meta)
