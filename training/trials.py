"""Running a sweep's trials: the objective (one cross-validated config per trial, logged as a run), the worker
processes of `--jobs K`, the Optuna storage, and marking FAIL the trials whose process died."""

from __future__ import annotations

import logging

from training.config import TrainConfig
from training.search_space import Dimension, _validate, parse_space, set_key, trial_raw

log = logging.getLogger("training.search")


class _Data:
    """Training passages, lexicon and folds, loaded once per distinct setting across the trials of one sweep."""

    def __init__(self):
        self.cache: dict = {}

    def get(self, cfg: TrainConfig):
        from training.stages import load_inputs

        key = (cfg.data.model_dump_json(), cfg.lexicon.path, cfg.splits.model_dump_json(), cfg.seed,
               tuple(cfg.topic.labels))
        if key not in self.cache:
            self.cache[key] = load_inputs(cfg)  # written + real training passages, as `tpc train` fits
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
    """One trial: a run (under the active parent, or under `parent_run_id` in a worker process) that
    cross-validates the sampled config. A trial that raises is recorded FAIL with its error; the study goes on."""
    from training.progress import stage
    from training.runlog import log_trial
    from training.stages import cross_validate
    from training.train import seed_everything

    def objective(trial) -> float:
        trial.set_user_attr("worker", _worker_id())
        stage(f"sweep: trial {trial.number}" + (" (the starting config)" if trial.user_attrs.get("starting_config")
                                                  else ""))
        try:
            values = {d.key: d.suggest(trial) for d in dims}
            trial.set_user_attr("values", values)
            tcfg = _validate(set_key(trial_raw(raw, values), "register.enabled", False),
                             f"search trial {trial.number}", values)

            def score() -> dict:
                seed_everything(tcfg.seed)
                return cross_validate(tcfg, data.get(tcfg)).metrics

            tags = {"search.role": "trial", "search.trial": str(trial.number), "search.study": study,
                    "search.worker": _worker_id(), "seed": str(tcfg.seed)}
            metrics = log_trial(tcfg, tags, score, parent_run_id,
                                on_start=lambda run_id: trial.set_user_attr("mlflow_run_id", run_id))
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
