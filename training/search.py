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

A trial scores a config by cross-validation only (`training.train.cross_validate`: no seed evaluation, nothing
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
import math
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from pydantic import ValidationError

from training.config import FAMILY_TAGS, ConfigError, TrainConfig, _section_class, flatten, to_yaml

log = logging.getLogger("training.search")

KINDS = ("float", "log", "int", "int_log")
SYNTAX = ('[low, high], [low, high, "float"|"log"|"int"|"int_log"] or [[choice, ...], "categorical"]')
# Keys a trial may not change: the sweep's own settings, and where its runs go (trials share the parent's experiment).
FIXED = ("search", "tracking_uri", "experiment")
# Keys that do not change a trial's score: left out of the study's identity so that changing them resumes it.
NOT_SCORED = ("tracking_uri", "register", "promotion", "name")


@dataclass(frozen=True)
class Dimension:
    key: str
    kind: str  # one of KINDS or "categorical"
    low: float | None = None
    high: float | None = None
    choices: tuple = ()

    def samples(self) -> list:
        """Values that bound the dimension: each must make a valid config."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    def suggest(self, trial) -> Any:
        if self.kind == "categorical":
            # Optuna stores only scalars as choices: a list value such as [2, 5] travels as its JSON text.
            return json.loads(trial.suggest_categorical(self.key, [json.dumps(c) for c in self.choices]))
        if self.kind in ("int", "int_log"):
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.kind == "int_log")
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.kind == "log")


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def parse_space(space: dict[str, list]) -> list[Dimension]:
    """The `search.space` entries as dimensions; a malformed entry is a ConfigError naming `search.space.KEY`."""
    if not space:
        raise ConfigError(f"search.space: empty; give at least one `KEY: {SYNTAX}`, e.g. model.C: [0.5, 8, \"log\"]")
    dims = []
    for key, spec in space.items():
        where = f"search.space.{key}"
        if key.split(".")[0] in FIXED:
            raise ConfigError(f"{where}: `{key}` cannot be searched (trials keep {', '.join(FIXED)} fixed)")
        if not isinstance(spec, list):
            raise ConfigError(f"{where}: expected {SYNTAX}; got {spec!r}")
        if len(spec) == 2 and spec[1] == "categorical":
            if not isinstance(spec[0], list) or not spec[0]:
                raise ConfigError(f"{where}: categorical needs a non-empty list of choices first; got {spec[0]!r}")
            texts = [json.dumps(c) for c in spec[0]]
            if len(set(texts)) != len(texts):
                raise ConfigError(f"{where}: repeated choices in {spec[0]!r}")
            dims.append(Dimension(key, "categorical", choices=tuple(spec[0])))
            continue
        if len(spec) not in (2, 3) or not (_number(spec[0]) and _number(spec[1])):
            raise ConfigError(f"{where}: expected {SYNTAX}; got {spec!r}")
        low, high, kind = spec[0], spec[1], spec[2] if len(spec) == 3 else "float"
        if kind not in KINDS:
            raise ConfigError(f"{where}: unknown kind {kind!r}; use one of {', '.join(map(repr, KINDS))} "
                              f"or [[choice, ...], \"categorical\"]")
        if not low < high:
            raise ConfigError(f"{where}: low ({low}) must be below high ({high})")
        if kind.endswith("log") and low <= 0:
            raise ConfigError(f"{where}: a log scale needs low > 0; got {low}")
        if kind.startswith("int") and not (float(low).is_integer() and float(high).is_integer()):
            raise ConfigError(f"{where}: an int range needs whole bounds; got [{low}, {high}]")
        dims.append(Dimension(key, kind, low, high))
    return dims


def set_key(raw: dict, key: str, value: Any) -> dict:
    """A copy of the raw config with dotted `key` set (as `--set key=value` would)."""
    out = copy.deepcopy(raw)
    node = out
    parts = key.split(".")
    for part in parts[:-1]:
        if node.get(part) is None:
            node[part] = {}
        if not isinstance(node[part], dict):
            raise ConfigError(f"search.space.{key}: {part!r} is a value, not a section")
        node = node[part]
    node[parts[-1]] = copy.deepcopy(value)
    return out


def trial_raw(raw: dict, values: dict[str, Any]) -> dict:
    for key, value in values.items():
        raw = set_key(raw, key, value)
    return raw


def _validate(raw: dict, where: str, value: Any) -> TrainConfig:
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            keys = [str(p) for p in err["loc"] if p not in FAMILY_TAGS]
            if err["type"] == "extra_forbidden":
                cls = _section_class(tuple(err["loc"]))
                accepted = list(cls.model_fields) if cls else []
                close = difflib.get_close_matches(keys[-1], accepted, n=1, cutoff=0.6)
                hint = f"; did you mean `{'.'.join(keys[:-1] + close)}`?" if close else ""
                problems.append(f"`{'.'.join(keys)}` is not a config key{hint} (accepted here: {', '.join(accepted)})")
            else:
                problems.append(f"`{'.'.join(keys)}`: {err['msg']}")
        raise ConfigError(f"{where}: with value {value!r}: " + "; ".join(problems)) from None


def check_space(raw: dict, dims: list[Dimension]) -> None:
    """Fail before any trial when a space key is not a config key or a bound is not a valid value for it."""
    for dim in dims:
        for value in dim.samples():
            _validate(set_key(raw, dim.key, value), f"search.space.{dim.key}", value)


def starting_params(cfg: TrainConfig, dims: list[Dimension]) -> tuple[dict, list[str]]:
    """The base config's own values of the searched keys, as Optuna params (trial 0 of a sweep), and the keys whose
    base value cannot be one (a categorical value that is not among the choices: Optuna samples those)."""
    dumped = cfg.model_dump(mode="json")
    params, outside = {}, []
    for dim in dims:
        node: Any = dumped
        for part in dim.key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if dim.kind == "categorical":
            if json.dumps(node) in [json.dumps(c) for c in dim.choices]:
                params[dim.key] = json.dumps(node)
            else:
                outside.append(f"{dim.key}={node!r}")
        elif _number(node):
            params[dim.key] = int(node) if dim.kind.startswith("int") else float(node)
        else:
            outside.append(f"{dim.key}={node!r}")
    return params, outside


def metric_names(labels) -> list[str]:
    """The metrics a trial reports (the cv_* and threshold_* metrics of a run)."""
    import numpy as np

    from training import STANCES
    from training.evaluate import stance_metrics, topic_metrics

    Y = np.zeros((1, len(labels)), dtype=int)
    names = list(topic_metrics(Y, Y, labels, "cv_topic")) + [f"threshold_{t}" for t in labels]
    return names + list(stance_metrics([STANCES[0]], [STANCES[0]], "cv_stance"))


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


class _Data:
    """Corpus, lexicon and folds, loaded once per distinct setting across the trials of one sweep."""

    def __init__(self):
        self.cache: dict = {}

    def get(self, cfg: TrainConfig):
        from training.lexicon import load_lexicon
        from training.splits import make_folds
        from training.train import load_inputs

        labels = tuple(cfg.topic.labels)
        key = (cfg.data.model_dump_json(), cfg.lexicon.path, cfg.splits.model_dump_json(), cfg.seed, labels)
        if key not in self.cache:
            corpus = load_inputs(cfg)[0]  # written + real training passages, as `tpc train` fits
            self.cache[key] = (corpus, load_lexicon(cfg.lexicon.path), make_folds(corpus, cfg.splits, cfg.seed, labels))
        return self.cache[key]


def open_storage(url: str):
    """The Optuna storage; a SQLite file is created once under a file lock beside it (several sweeps may start
    together) and waits up to 60 s on a writer instead of SQLite's default 5 s (trials of --jobs K write at once)."""
    import optuna

    from training import concurrency

    db = concurrency.sqlite_path(url)
    if db is None:
        return optuna.storages.RDBStorage(url) if "://" in url else url
    with concurrency.file_lock(concurrency.lock_path(db), 300, f"creating the Optuna storage {db}"):
        return optuna.storages.RDBStorage(url, engine_kwargs={"connect_args": {"timeout": 60}})


def _worker_id(pid: int | None = None) -> str:
    import os
    import socket

    return f"{socket.gethostname()}:{pid or os.getpid()}"


def _pid_alive(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def fail_dead_trials(study, dead: dict[str, str] | None = None) -> list[int]:
    """Mark FAIL the trials left RUNNING by a process that died (a killed worker of this sweep, or of an earlier
    sweep on this machine), and their MLflow runs FAILED; the study goes on without them. `dead` maps worker ids
    known dead to why; other RUNNING trials of this machine count as dead when their process no longer exists."""
    import socket

    import mlflow
    import optuna
    from mlflow.exceptions import MlflowException

    dead = dict(dead or {})
    host = socket.gethostname()
    failed = []
    for t in study.get_trials(deepcopy=False, states=(optuna.trial.TrialState.RUNNING,)):
        worker = t.user_attrs.get("worker")
        if not worker:
            continue
        why = dead.get(worker)
        if why is None:
            w_host, _, pid = worker.rpartition(":")
            if w_host != host or not pid.isdigit() or _pid_alive(int(pid)):
                continue
            why = f"its process {pid} no longer exists"
        error = f"the worker process running this trial died: {why}"
        study._storage.set_trial_user_attr(t._trial_id, "error", error)
        study._storage.set_trial_state_values(t._trial_id, optuna.trial.TrialState.FAIL)
        run_id = t.user_attrs.get("mlflow_run_id")
        if run_id:
            try:
                client = mlflow.MlflowClient()
                client.set_tag(run_id, "search.error", error[:5000])
                client.set_terminated(run_id, "FAILED")
            except MlflowException as exc:
                log.warning("trial %d: could not mark its MLflow run %s FAILED: %s", t.number, run_id, exc)
        log.warning("trial %d marked FAIL: %s", t.number, error)
        failed.append(t.number)
    return failed


def _objective(raw: dict, dims: list[Dimension], study: str, metric: str, data: "_Data",
               parent_run_id: str | None = None):
    """One trial: a nested MLflow run (under the active parent, or under `parent_run_id` in a worker process) that
    cross-validates the sampled config. A trial that raises is recorded FAIL with its error; the study goes on."""
    import mlflow

    from training.train import cross_validate, seed_everything

    from training.progress import stage

    def objective(trial) -> float:
        trial.set_user_attr("worker", _worker_id())
        stage(f"sweep: trial {trial.number}" + (" (the starting config)" if trial.user_attrs.get("starting_config")
                                                  else ""))
        try:
            values = {d.key: d.suggest(trial) for d in dims}
            trial.set_user_attr("values", values)
            tcfg = _validate(set_key(trial_raw(raw, values), "register.enabled", False),
                             f"search trial {trial.number}", values)
            where = {"parent_run_id": parent_run_id} if parent_run_id else {"nested": True}
            with mlflow.start_run(run_name=f"trial-{trial.number}", **where) as child:
                trial.set_user_attr("mlflow_run_id", child.info.run_id)
                mlflow.set_tags({"search.role": "trial", "search.trial": str(trial.number), "search.study": study,
                                 "search.worker": _worker_id(), "seed": str(tcfg.seed)})
                mlflow.log_params(flatten(tcfg))
                mlflow.log_text(to_yaml(tcfg), "config/resolved.yaml")
                t = time.perf_counter()
                seed_everything(tcfg.seed)
                corpus, lexicon, folds = data.get(tcfg)
                metrics = cross_validate(tcfg, corpus, folds, lexicon, tuple(tcfg.topic.labels))[3]
                metrics["trial_seconds"] = time.perf_counter() - t
                mlflow.log_metrics(metrics)
        except Exception as exc:
            trial.set_user_attr("error", f"{type(exc).__name__}: {exc}"[:2000])
            raise
        trial.set_user_attr("metrics", metrics)
        return metrics[metric]

    return objective


def _worker(spec: dict, slots, index: int) -> None:
    """A worker process of `--jobs K`: claims trials from the shared count until none is left."""
    import optuna
    from threadpoolctl import threadpool_limits

    from training import tracking

    logging.basicConfig(level=logging.WARNING, format=f"%(levelname)s worker {index} %(name)s: %(message)s")
    threadpool_limits(1)  # K processes on the machine's cores: one BLAS thread each
    tracking.setup(spec["uri"], spec["experiment"])
    study = optuna.load_study(study_name=spec["study"], storage=open_storage(spec["storage"]),
                              sampler=optuna.samplers.TPESampler(seed=spec["seed"] + 7919 * (index + 1)))
    objective = _objective(spec["raw"], parse_space(spec["space"]), spec["study"], spec["metric"], _Data(),
                           spec["parent_run_id"])
    while True:
        with slots.get_lock():
            if slots.value <= 0:
                return
            slots.value -= 1
        study.optimize(objective, n_trials=1, catch=(Exception,))


def _optimize_in_processes(spec: dict, trials: int, jobs: int, study) -> list[int]:
    """`trials` trials of the study in `jobs` worker processes sharing its storage; a worker that dies loses only
    the trial it was running (marked FAIL): the others take the remaining trials. Returns the failed trials."""
    import multiprocessing
    import signal

    ctx = multiprocessing.get_context("spawn")
    slots = ctx.Value("i", trials)
    procs = [ctx.Process(target=_worker, args=(spec, slots, i), name=f"tpc-trial-worker-{i}")
             for i in range(min(jobs, trials))]
    for p in procs:
        p.start()
    for p in procs:
        p.join()
    dead = {}
    for p in procs:
        if p.exitcode:
            why = (f"killed by {signal.Signals(-p.exitcode).name}" if p.exitcode < 0
                   else f"exit code {p.exitcode}")
            log.warning("trial worker %s (pid %d) ended: %s", p.name, p.pid, why)
            dead[_worker_id(p.pid)] = why
    return fail_dead_trials(study, dead)


def _open_parent(study, cfg: TrainConfig):
    """The study's parent run again when it is in this store and experiment, else a new one."""
    import mlflow
    from mlflow.exceptions import MlflowException

    run_id = study.user_attrs.get("mlflow_parent_run_id")
    experiment = mlflow.get_experiment_by_name(cfg.experiment)
    if run_id and experiment is not None:
        try:
            old = mlflow.MlflowClient().get_run(run_id)
            if old.info.experiment_id == experiment.experiment_id and old.info.lifecycle_stage == "active":
                return mlflow.start_run(run_id=run_id), True
        except MlflowException:
            pass
    return mlflow.start_run(run_name=f"{cfg.name}-search"), False


def run_search(cfg: TrainConfig, trials: int | None = None, raw_config: dict | None = None,
               config_path: str | None = None, *, train_final: bool = True, jobs: int = 1) -> dict:
    """Run `trials` more trials (default `search.trials`) of the study, `jobs` at once (worker processes sharing
    the study's storage), log the best config on the parent run, then (train_final) train and register the best
    config through the normal run, nested under the parent. A trial that fails or whose process dies is recorded
    FAIL and the sweep goes on with the others."""
    import mlflow
    import optuna

    from training import tracking
    from training.train import run

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
    labels = tuple(cfg.topic.labels)
    known = metric_names(labels)
    if search.metric not in known:
        close = difflib.get_close_matches(search.metric, known, n=1)
        raise ConfigError(f"search.metric: {search.metric!r} is not a metric trials report"
                          f"{f'; did you mean {close[0]!r}?' if close else ''} (one of: {', '.join(known)})")

    uri = tracking.setup(cfg.tracking_uri, cfg.experiment)
    storage = search.storage or default_storage(uri)
    name = study_name(cfg)
    study = optuna.create_study(study_name=name, storage=open_storage(storage), direction=search.direction,
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
    data = _Data()
    t0 = time.perf_counter()

    parent_ctx, resumed = _open_parent(study, cfg)
    with parent_ctx as parent:
        study.set_user_attr("mlflow_parent_run_id", parent.info.run_id)
        if not resumed:
            mlflow.log_params({k: v for k, v in flatten(cfg).items() if k != "search.trials"})
            mlflow.log_text(to_yaml(cfg), "config/base.yaml")
            mlflow.log_dict({d.key: search.space[d.key] for d in dims}, "search/space.json")
            mlflow.log_dict(tracking.package_versions(), "lineage/packages.json")
        mlflow.set_tags({**tracking.git_info(tracking.PACKAGE_DIR), "search.role": "parent", "search.study": name,
                         "search.storage": storage, "search.metric": search.metric,
                         "search.direction": search.direction, "seed": str(cfg.seed),
                         "config_path": str(config_path or "")})

        if jobs == 1:
            study.optimize(_objective(raw, dims, name, search.metric, data), n_trials=trials, catch=(Exception,))
        else:
            spec = {"uri": uri, "experiment": cfg.experiment, "storage": storage, "study": name, "raw": raw,
                    "space": {d.key: search.space[d.key] for d in dims}, "metric": search.metric,
                    "seed": cfg.seed + before, "parent_run_id": parent.info.run_id}
            _optimize_in_processes(spec, trials, jobs, study)

        failed = [t for t in study.trials[before:] if t.state == optuna.trial.TrialState.FAIL]
        for t in failed:
            log.warning("trial %d failed: %s", t.number, t.user_attrs.get("error", "see the log above"))
        done = [t for t in study.trials if t.state == optuna.trial.TrialState.COMPLETE]
        if not done:
            first = failed[0].user_attrs.get("error", "unknown error") if failed else "no trial ran"
            raise ConfigError(f"search {name}: no trial completed ({len(failed)} failed; the first: {first}); "
                              "fix the cause and run the same command again (the study resumes)")
        best = study.best_trial
        best_values = best.user_attrs["values"]
        best_raw = trial_raw(raw, best_values)
        best_cfg = _validate(best_raw, f"search best trial {best.number}", best_values)
        mlflow.log_text(to_yaml(best_cfg), "best/resolved.yaml")
        summary = {"trial": best.number, "value": best.value, "metric": search.metric, "values": best_values,
                   "mlflow_run_id": best.user_attrs.get("mlflow_run_id"), "study": name, "storage": storage}
        mlflow.log_dict(summary, "best/trial.json")
        mlflow.log_dict([{"trial": t.number, "state": t.state.name, "value": t.value,
                          "values": t.user_attrs.get("values"), "mlflow_run_id": t.user_attrs.get("mlflow_run_id")}
                         for t in study.trials], "search/trials.json")
        mlflow.log_metrics({f"best_{search.metric}": best.value, "trials_complete": len(done),
                            "trials_failed": sum(t.state == optuna.trial.TrialState.FAIL for t in study.trials)},
                           step=len(study.trials))
        mlflow.set_tag("search.best_trial", str(best.number))
        result = {"metrics": best.user_attrs.get("metrics", {})}
        if train_final:
            result = run(best_cfg, best_raw, config_path)
            mlflow.MlflowClient().set_tag(result["run_id"], "search.role", "final")
            mlflow.set_tag("search.final_run_id", result["run_id"])
        mlflow.log_metric("search_seconds", time.perf_counter() - t0)

    result.update({"parent_run_id": parent.info.run_id, "study": name, "storage": storage,
                   "best_trial": best.number, "best_value": best.value, "best_values": best_values,
                   "trials_run": len(study.trials) - before, "trials_complete": len(done),
                   "trials_failed": [t.number for t in failed], "jobs": jobs, "resumed": resumed})
    return result
