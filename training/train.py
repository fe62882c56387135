"""`tpc train`: load the config's data, run the stages (training.stages), log everything (training.runlog), register.

The run reads top to bottom as the list of what happens; each stage returns a small result object that the next
stages and the run log take.
"""

from __future__ import annotations

import random
import sys
import time

import numpy as np

from training import stages
from training.config import TrainConfig
from training.progress import stage
from training.runlog import RunLog


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed)
    torch = sys.modules.get("torch")  # importing it here cost 2.5 s of every run; a family that uses it seeds it
    if torch is not None:
        torch.manual_seed(seed)


def run(cfg: TrainConfig, raw_config: dict | None = None, config_path: str | None = None) -> dict:
    """Train, evaluate, log and register one config; returns the run id, model URI, metrics and registration.
    A failure after the final fit keeps the fitted model on disk (failed_runs/) with the command that logs it."""
    t0 = time.perf_counter()
    seed_everything(cfg.seed)
    uri = RunLog.setup(cfg)  # an unusable store fails here, before any fitting
    stage(f"loading data (tracking: {uri})")
    inputs = stages.load_inputs(cfg, with_folds=False)
    rng = np.random.default_rng(cfg.seed)

    with RunLog.start(cfg.name) as rl:
        fit_t = time.perf_counter()
        with stages.fit_pool(cfg) as pool:  # the fits' processes, until the held-out model is back
            submitted = stages.submit_held_out(cfg, inputs, pool)  # fits that need no folds start first
            rl.log_lineage(cfg, config_path, uri, stages.split(cfg, inputs))
            cv = stages.use_real_thresholds(cfg, inputs, stages.cross_validate(cfg, inputs, pool))
            rollup = stages.fit_rollup(cfg, inputs, cv, rng)
            meta = {"config": cfg.model_dump(mode="json"), "run_id": rl.run_id}
            held = stages.held_out(cfg, inputs, cv, rollup, meta, submitted)
        metrics = {**cv.metrics, **rollup.metrics, **held.metrics, "fit_seconds": time.perf_counter() - fit_t}
        bundle = stages.final_fit(cfg, inputs, cv, rollup, held)

        with rl.keeping(bundle, cfg):
            stage("logging: metrics, report and model to MLflow")
            rl.log_metrics(metrics)
            log_t = time.perf_counter()
            model_uri, report = rl.log_training(cfg, inputs, cv, bundle)
            result = {"run_id": rl.run_id, "model_uri": model_uri, "metrics": metrics, "report": report}
            if cfg.register.enabled:
                result.update(rl.register(model_uri, cfg, config_path))
        rl.log_timing({"mlflow_log_seconds": time.perf_counter() - log_t, "total_seconds": time.perf_counter() - t0})
    result["seconds"] = time.perf_counter() - t0
    stage(f"done in {result['seconds']:.0f} s")
    return result
