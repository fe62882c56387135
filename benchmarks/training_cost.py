"""Training cost: wall time of the default pipeline, and how it grows with 1x, 4x, 16x the written corpus.

    python -m benchmarks.training_cost --repeats 3 --scales 1,4,16 --scale-repeats 1

Every run is `tpc train configs/default.yaml` (both classifiers, grouped cross-validation, seed and real
evaluation, final fit, report, MLflow logging, registration, promotion gate, export) in a fresh scratch project
with a fresh SQLite store. `--set KEY=VALUE` passes overrides to every run (e.g. a cheaper config).

The k-times corpus keeps the originals and adds k-1 perturbed copies of every written passage: sentence order
shuffled, one word dropped, new id and new event. The copies stay near-duplicates of their original, so the
splitter's near-duplicate grouping puts each copy in its original's fold (no leak) while the fit sees k times
as many rows. Seeds and the challenge set are not replicated.
"""

from __future__ import annotations

import argparse
import json
import random
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks import common

RUN_METRICS = ("fit_seconds", "mlflow_log_seconds", "total_seconds")


def perturb(text: str, rng: random.Random) -> str:
    from training.articles import split_sentences

    sentences = split_sentences(text)
    if len(sentences) > 1:
        rng.shuffle(sentences)
    words = " ".join(sentences).split(" ")
    if len(words) > 3:
        del words[rng.randrange(len(words))]
    return " ".join(words)


def replicate_corpus(written_dir: Path, factor: int, seed: int = 0) -> int:
    """Rewrite every data/written/*.jsonl in place with factor-1 perturbed copies added; returns the row count."""
    rng = random.Random(seed)
    total = 0
    for f in sorted(written_dir.glob("*.jsonl")):
        rows = [json.loads(line) for line in f.read_text(encoding="utf-8").splitlines() if line.strip()]
        out = list(rows)
        for c in range(1, factor):
            for row in rows:
                copy = dict(row, id=f"{row['id']}~x{c}", event=f"{row['event']}~x{c}", text=perturb(row["text"], rng))
                out.append(copy)
        f.write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in out), encoding="utf-8")
        total += len(out)
    return total


def run_metrics(project: Path) -> dict:
    """The timing metrics the pipeline logged in its (only) run."""
    from mlflow import MlflowClient

    client = MlflowClient(tracking_uri=f"sqlite:///{project / 'mlflow.db'}")
    runs = [r for e in client.search_experiments() for r in client.search_runs([e.experiment_id])]
    if not runs:
        return {}
    latest = max(runs, key=lambda r: r.info.start_time)
    return {k: latest.data.metrics[k] for k in RUN_METRICS if k in latest.data.metrics}


def train_once(factor: int, overrides: list[str], workdir: Path, seed: int, log) -> dict:
    project = Path(tempfile.mkdtemp(prefix=f"train-x{factor}-", dir=workdir))
    try:
        common.copy_project(project)
        rows = replicate_corpus(project / "data" / "written", factor, seed) if factor > 1 else \
            sum(common.count_lines(f) for f in (project / "data" / "written").glob("*.jsonl"))
        cmd = [*common.tpc_command(), "train", "configs/default.yaml"] + [a for o in overrides for a in ("--set", o)]
        m = common.run_measured(cmd, cwd=project, env=common.store_env(project))
        if m.returncode != 0:
            raise RuntimeError(f"x{factor}: `{' '.join(cmd)}` exited {m.returncode}:\n{m.stderr[-3000:]}")
        metrics = run_metrics(project)
        log(f"  x{factor:<3} {rows:6} written passages: {m.seconds:7.1f} s wall, peak RSS {m.peak_rss_mb or 0:5.0f} MB, "
            + ", ".join(f"{k} {v:.1f}" for k, v in metrics.items()))
        return {"wall_seconds": m.seconds, "peak_rss_mb": m.peak_rss_mb, "rows": rows, **metrics}
    finally:
        shutil.rmtree(project, ignore_errors=True)


def summarize(runs: list[dict], factor: int) -> dict:
    out = {"factor": factor, "rows": runs[0]["rows"], "repeats": len(runs)}
    for key in ("wall_seconds", "peak_rss_mb", *RUN_METRICS):
        vals = [r[key] for r in runs if r.get(key) is not None]
        out[key] = common.stats(vals) if vals else None
    return out


def render(result: dict) -> str:
    def med(s, k):
        return s[k]["median"] if s.get(k) else None

    rows = [{"what": f"x{s['factor']}" + (" (default pipeline)" if s["factor"] == 1 else ""), "rows": s["rows"],
             "wall": med(s, "wall_seconds"), "spread": 100 * s["wall_seconds"]["spread"], "fit": med(s, "fit_seconds"),
             "log": med(s, "mlflow_log_seconds"), "rss": med(s, "peak_rss_mb"), "reps": s["repeats"],
             "vs1": med(s, "wall_seconds") / med(result["scales"][0], "wall_seconds")} for s in result["scales"]]
    text = common.table(rows, [("what", "corpus", ""), ("rows", "written passages", "d"),
                               ("wall", "wall s (median)", ".1f"),
                               ("spread", "spread %", ".0f"), ("fit", "fit_seconds", ".1f"),
                               ("log", "mlflow_log_seconds", ".1f"), ("rss", "peak RSS MB", ".0f"),
                               ("reps", "repeats", "d"), ("vs1", "x time", ".2f")])
    return (f"tpc train configs/default.yaml {' '.join('--set ' + o for o in result['overrides'])}".rstrip()
            + f"; load avg before/after {result['machine_before'].get('loadavg_1_5_15')} / "
              f"{result['machine_after'].get('loadavg_1_5_15')}\n" + text)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Wall time of the default training pipeline and its growth with data.")
    p.add_argument("--repeats", type=int, default=3, help="repeats of the default pipeline (1x corpus)")
    p.add_argument("--scales", default="1,4,16", help="corpus multipliers")
    p.add_argument("--scale-repeats", type=int, default=1, help="repeats for each multiplier above 1")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="config override for every run")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=common.DEFAULT_WORKDIR)
    p.add_argument("--json", help="also write the JSON result here (updated after every corpus scale)")
    args = p.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    args.workdir.mkdir(parents=True, exist_ok=True)
    before = common.machine()
    factors = sorted({int(x) for x in args.scales.split(",") if x.strip()} | {1})
    scales: list[dict] = []

    def build(complete: bool) -> dict:
        return {"benchmark": "training_cost", "command": common.command_line("benchmarks.training_cost"),
                "overrides": args.set, "complete": complete, "scales": scales, "machine_before": before,
                "machine_after": common.machine()}

    for factor in factors:
        reps = args.repeats if factor == 1 else args.scale_repeats
        scales.append(summarize([train_once(factor, args.set, args.workdir, args.seed, log) for _ in range(reps)],
                                factor))
        if args.json:  # an interrupted run still leaves the scales it finished
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(build(False), indent=1, default=str) + "\n")
    result = build(True)
    common.emit(result, render(result), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
