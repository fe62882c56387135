"""MLflow overhead: time in logging and registering the model versus time in fitting it.

    python -m benchmarks.mlflow_overhead --repeats 5 [--infer-requirements]

Two views:
  run metrics   fit_seconds, mlflow_log_seconds and total_seconds logged by the cached champion's `tpc train`
                run (mlflow_log_seconds spans the report, the model log, registration, the promotion gate, which
                scores the challenge set, and the export);
  direct        in this process, against a fresh SQLite store: `training.tracking.log_pyfunc` of the champion's
                bundle (models-from-code, explicit pip requirements), `mlflow.register_model`, setting the
                alias and `mlflow.pyfunc.load_model`, each timed over --repeats. `--infer-requirements` adds one
                log with MLflow's inferred requirements for contrast.
"""

from __future__ import annotations

import argparse
import os
import sys
import tempfile
import time
from pathlib import Path

from benchmarks import common
from benchmarks.training_cost import run_metrics

STEPS = ("log_model", "register", "set_alias", "load_model")


def direct_timings(bundle_dir: Path, repeats: int, infer: bool, log) -> dict:
    import mlflow
    import pandas as pd
    from mlflow import MlflowClient

    from training import tracking
    from training.bundle import Bundle

    t0 = time.perf_counter()
    bundle = Bundle.load(bundle_dir)
    bundle_load = time.perf_counter() - t0
    example = pd.DataFrame({"id": ["example"], "text": ["La Turquie a proposé sa médiation entre Moscou et Kiev."]})
    output = bundle.predict_frame(example)
    times: dict[str, list[float]] = {s: [] for s in STEPS}
    extra = {}
    old_cwd = os.getcwd()
    with tempfile.TemporaryDirectory(prefix="tpc-mlflow-overhead-") as tmp:
        os.chdir(tmp)  # the store's artifacts (./mlruns) land in the temporary directory
        try:
            uri = f"sqlite:///{Path(tmp) / 'mlflow.db'}"
            mlflow.set_tracking_uri(uri)
            mlflow.set_registry_uri(uri)
            t = time.perf_counter()
            mlflow.set_experiment("overhead")
            extra["store_create_seconds"] = time.perf_counter() - t
            for r in range(repeats):
                with mlflow.start_run():
                    t = time.perf_counter()
                    info = tracking.log_pyfunc(bundle_dir, example, output)
                    times["log_model"].append(time.perf_counter() - t)
                t = time.perf_counter()
                version = mlflow.register_model(info.model_uri, "overhead-model")
                times["register"].append(time.perf_counter() - t)
                t = time.perf_counter()
                MlflowClient().set_registered_model_alias("overhead-model", "champion", version.version)
                times["set_alias"].append(time.perf_counter() - t)
                t = time.perf_counter()
                mlflow.pyfunc.load_model("models:/overhead-model@champion")
                times["load_model"].append(time.perf_counter() - t)
                log(f"  repeat {r + 1}/{repeats}: " + ", ".join(f"{s} {times[s][-1]:.2f} s" for s in STEPS))
            if infer:
                with mlflow.start_run():
                    t = time.perf_counter()
                    mlflow.pyfunc.log_model(name="model", python_model=str(tracking.PYFUNC_CODE),
                                            artifacts={"bundle": str(bundle_dir)},
                                            code_paths=[str(tracking.PACKAGE_DIR)], input_example=example)
                    extra["log_model_inferred_requirements_seconds"] = time.perf_counter() - t
                log(f"  log_model with inferred requirements: {extra['log_model_inferred_requirements_seconds']:.1f} s")
        finally:
            os.chdir(old_cwd)
    return {"steps": {s: common.stats(v) for s, v in times.items()}, "bundle_load_seconds": bundle_load,
            "pip_requirements": tracking.pip_requirements(), **extra}


def render(result: dict) -> str:
    rows = [{"step": s, "med": v["median"], "min": v["min"], "max": v["max"], "n": v["n"]}
            for s, v in result["direct"]["steps"].items()]
    inferred = result["direct"].get("log_model_inferred_requirements_seconds")
    if inferred is not None:
        rows.append({"step": "log_model (inferred reqs)", "med": inferred, "min": inferred, "max": inferred, "n": 1})
    text = common.table(rows, [("step", "direct step", ""), ("med", "seconds (median)", ".3f"), ("min", "min", ".3f"),
                               ("max", "max", ".3f"), ("n", "repeats", "d")])
    m = result["run_metrics"]
    lines = [text, ""]
    if m:
        nan = float("nan")
        lines.append(f"champion run: fit_seconds {m.get('fit_seconds', nan):.1f}, mlflow_log_seconds "
                     f"{m.get('mlflow_log_seconds', nan):.1f}, total_seconds {m.get('total_seconds', nan):.1f}"
                     f" -> logging+registering = {result['ratios'].get('log_over_fit', nan):.2f} x fit")
    r = result["ratios"]
    if "log_model_over_fit" in r:
        log_s = result["direct"]["steps"]["log_model"]["median"]
        lines.append(f"log_model alone (explicit requirements): {log_s:.2f} s = {100 * r['log_model_over_fit']:.1f}%"
                     " of fit_seconds")
    lines.append(f"load avg before/after {result['machine_before'].get('loadavg_1_5_15')} / "
                 f"{result['machine_after'].get('loadavg_1_5_15')}")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Time in MLflow logging/registration versus fitting.")
    p.add_argument("--repeats", type=int, default=5)
    p.add_argument("--infer-requirements", action="store_true", help="also time one log with inferred requirements")
    p.add_argument("--workdir", type=Path, default=common.DEFAULT_WORKDIR)
    p.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for training the benchmark's champion (the model's shape decides speed)")
    p.add_argument("--reuse-latest", action="store_true",
                   help="use the newest cached champion even if the predict-time code or config changed since")
    p.add_argument("--retrain", action="store_true")
    p.add_argument("--json")
    args = p.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    before = common.machine()
    champion = common.ensure_champion(args.workdir, args.retrain, log, args.train_set, args.reuse_latest)
    metrics = run_metrics(champion.project)
    direct = direct_timings(champion.bundle_dir, args.repeats, args.infer_requirements, log)
    ratios = {}
    if metrics.get("fit_seconds"):
        ratios["log_model_over_fit"] = direct["steps"]["log_model"]["median"] / metrics["fit_seconds"]
        if "mlflow_log_seconds" in metrics:
            ratios["log_over_fit"] = metrics["mlflow_log_seconds"] / metrics["fit_seconds"]
    result = {"benchmark": "mlflow_overhead", "command": common.command_line("benchmarks.mlflow_overhead"),
              "model": champion.uri, "train_overrides": args.train_set, "champion_dir": str(champion.project),
              "run_metrics": metrics, "direct": direct,
              "ratios": ratios,
              "machine_before": before, "machine_after": common.machine()}
    common.emit(result, render(result), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
