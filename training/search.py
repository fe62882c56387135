"""Hyper-parameter sweeps (Optuna) over any config key, as nested MLflow runs under one parent run.

The config's `search:` block names the metric, the direction and the space. Each space entry maps a dotted config
key (the same keys `--set` takes) to a distribution:

    search:
      metric: cv_topic_macro_f1        # any cv_* metric (or threshold_*) a run logs
      direction: maximize
      space:
        model.C: [0.5, 8, "log"]                                  # float, log-uniform in [0.5, 8]
        model.max_iter: [500, 3000, "int"]                        # integer in [500, 3000]
        article.composite_articles: [100, 800, "int_log"]         # integer, log-uniform
        topic.min_threshold: [0.02, 0.2]                          # float, uniform (or "float")
        model.char_ngrams: [[[2, 4], [2, 5], null], "categorical"]   # one of the listed values, any YAML value

A trial scores a config by cross-validation only (`training.stages.cross_validate`: no seed evaluation, nothing
logged as a model, nothing registered). The study lives in an Optuna storage (by default `optuna.db` beside the
MLflow SQLite store) under a name derived from everything that changes a trial's score, so running the same command
again continues the same study and the parent run; changing the base config or the space starts a new one. At the
end the best trial's resolved config is logged on the parent (`best/resolved.yaml`) and trained through the normal
run (`training.train.run`: seeds, report, model, registration), nested under the parent.
"""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import logging
import time
from pathlib import Path

from training.config import ConfigError, TrainConfig
from training.search_space import (NOT_SCORED, Dimension, _validate, check_space, metric_names,  # noqa: F401
                                   parse_space, starting_params, trial_raw)
from training.trials import _Data, _objective, _optimize_in_processes, fail_dead_trials, open_storage

log = logging.getLogger("training.search")


def default_storage(tracking_uri: str) -> str:
    """`optuna.db` beside the MLflow store: next to its SQLite file, else in the working directory."""
    if tracking_uri.startswith("sqlite:///"):
        return f"sqlite:///{Path(tracking_uri[len('sqlite:///'):]).parent / 'optuna.db'}"
    if tracking_uri.startswith("file:") or "://" not in tracking_uri:
        path = Path(tracking_uri.removeprefix("file://").removeprefix("file:"))
        return f"sqlite:///{path.resolve().parent / 'optuna.db'}"
    return f"sqlite:///{Path.cwd() / 'optuna.db'}"


def study_name(cfg: TrainConfig) -> str:
    """`search.study_name`, else the config name and a digest of everything that changes a trial's score."""
    if cfg.search.study_name:
        return cfg.search.study_name
    scored = cfg.model_dump(mode="json")
    for key in NOT_SCORED:
        scored.pop(key, None)
    scored["search"] = {k: v for k, v in scored["search"].items() if k not in ("trials", "storage", "study_name")}
    digest = hashlib.sha256(json.dumps(scored, sort_keys=True).encode()).hexdigest()[:10]
    return f"{cfg.name}-{digest}"


def _open_parent(study, cfg: TrainConfig):
    """The study's parent run again when it is in this store and experiment, else a new one: (context, resumed)."""
    import mlflow
    from mlflow.exceptions import MlflowException

    from training.runlog import RunLog

    run_id = study.user_attrs.get("mlflow_parent_run_id")
    experiment = mlflow.get_experiment_by_name(cfg.experiment)
    if run_id and experiment is not None:
        try:
            old = mlflow.MlflowClient().get_run(run_id)
            if old.info.experiment_id == experiment.experiment_id and old.info.lifecycle_stage == "active":
                return RunLog.start(run_id=run_id), True
        except MlflowException:
            pass
    return RunLog.start(f"{cfg.name}-search", nested=False), False


def _checked(cfg: TrainConfig, trials: int | None, jobs: int, raw_config: dict | None, config_path):
    """(trials, raw config, dimensions) once the sweep's settings are known to be usable."""
    if cfg.search is None:
        raise ConfigError(f"{config_path or 'the config'}: --trials needs a `search:` block with a `space` "
                          "(see configs/sweep.yaml and docs/experiments.md)")
    search = cfg.search
    trials = search.trials if trials is None else trials
    if trials < 1:
        raise ConfigError(f"--trials must be at least 1, got {trials}")
    if jobs < 1:
        raise ConfigError(f"--jobs must be at least 1, got {jobs}")
    raw = copy.deepcopy(raw_config) if raw_config is not None else cfg.model_dump(mode="json")
    dims = parse_space(search.space)
    check_space(raw, dims)
    known = metric_names(tuple(cfg.topic.labels))
    if search.metric not in known:
        close = difflib.get_close_matches(search.metric, known, n=1)
        raise ConfigError(f"search.metric: {search.metric!r} is not a metric trials report"
                          f"{f'; did you mean {close[0]!r}?' if close else ''} (one of: {', '.join(known)})")
    return trials, raw, dims


def _open_study(cfg: TrainConfig, dims: list[Dimension], storage: str, name: str):
    """The study (created or resumed) with trial 0 = the starting config enqueued; (study, trials before)."""
    import optuna

    study = optuna.create_study(study_name=name, storage=open_storage(storage), direction=cfg.search.direction,
                                load_if_exists=True)
    fail_dead_trials(study)  # trials left RUNNING by a sweep on this machine that was killed
    before = len(study.trials)
    # A fixed sampler seed would propose the same first points again on every resume: offset it by the history.
    study.sampler = optuna.samplers.TPESampler(seed=cfg.seed + before)
    # Trial 0 is the starting config itself, so the sweep's best is never worse (in its metric) than not sweeping.
    params, outside = starting_params(cfg, dims)
    if outside:
        log.warning("search: the starting config's %s is not in search.space; trial 0 samples it",
                    ", ".join(outside))
    study.enqueue_trial(params, user_attrs={"starting_config": True}, skip_if_exists=True)
    return study, before


def _run_trials(study, cfg: TrainConfig, raw: dict, dims, trials: int, jobs: int, spec: dict,
                before: int) -> tuple[list, list]:
    """Run the trials here or in `jobs` processes; (failed trials of this call, completed trials of the study).
    `before`: the study's trials before this call, counted before trial 0 was enqueued (it is one of this call's)."""
    import optuna

    if jobs == 1:
        study.optimize(_objective(raw, dims, spec["study"], cfg.search.metric, _Data()), n_trials=trials,
                       catch=(Exception,))
    else:
        _optimize_in_processes(spec, trials, jobs, study)
    failed = [t for t in study.trials[before:] if t.state == optuna.trial.TrialState.FAIL]
    for t in failed:
        log.warning("trial %d failed: %s", t.number, t.user_attrs.get("error", "see the log above"))
    done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
    if not done:
        first = failed[0].user_attrs.get("error", "unknown error") if failed else "no trial ran"
        raise ConfigError(f"search {spec['study']}: no trial completed ({len(failed)} failed; the first: {first}); "
                          "fix the cause and run the same command again (the study resumes)")
    return failed, done


def run_search(cfg: TrainConfig, trials: int | None = None, raw_config: dict | None = None,
               config_path: str | None = None, *, train_final: bool = True, jobs: int = 1) -> dict:
    """Run `trials` more trials (default `search.trials`) of the study, `jobs` at once (worker processes sharing
    the study's storage), log the best config on the parent run, then (train_final) train and register the best
    config through the normal run, nested under the parent. A trial that fails or whose process dies is recorded
    FAIL and the sweep goes on with the others."""
    from training.runlog import RunLog
    from training.train import run

    trials, raw, dims = _checked(cfg, trials, jobs, raw_config, config_path)
    search, t0 = cfg.search, time.perf_counter()
    uri = RunLog.setup(cfg)
    storage, name = search.storage or default_storage(uri), study_name(cfg)
    study, before = _open_study(cfg, dims, storage, name)
    parent_ctx, resumed = _open_parent(study, cfg)
    with parent_ctx as parent:
        study.set_user_attr("mlflow_parent_run_id", parent.run_id)
        parent.log_sweep(cfg, {d.key: search.space[d.key] for d in dims}, resumed, config_path,
                         {"search.study": name, "search.storage": storage})
        spec = {"uri": uri, "experiment": cfg.experiment, "storage": storage, "study": name, "raw": raw,
                "space": {d.key: search.space[d.key] for d in dims}, "metric": search.metric,
                "seed": cfg.seed + before, "parent_run_id": parent.run_id}
        failed, done = _run_trials(study, cfg, raw, dims, trials, jobs, spec, before)
        best = study.best_trial
        best_values = best.user_attrs["values"]
        best_raw = trial_raw(raw, best_values)
        best_cfg = _validate(best_raw, f"search best trial {best.number}", best_values)
        parent.log_sweep_best(best_cfg, study, best, {"study": name, "storage": storage}, len(done))
        result = {"metrics": best.user_attrs.get("metrics", {})}
        if train_final:
            result = run(best_cfg, best_raw, config_path)
            parent.mark_final(result["run_id"])
        parent.log_metrics({"search_seconds": time.perf_counter() - t0})

    result.update({"parent_run_id": parent.run_id, "study": name, "storage": storage,
                   "best_trial": best.number, "best_value": best.value, "best_values": best_values,
                   "trials_run": len(study.trials) - before, "trials_complete": len(done),
                   "trials_failed": [t.number for t in failed], "jobs": jobs, "resumed": resumed})
    return result
