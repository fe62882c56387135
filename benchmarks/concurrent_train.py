"""How many `tpc train` runs one SQLite MLflow store holds at once: N runs started together on one fresh store,
then every failure counted.

    python -m benchmarks.concurrent_train --n 2,4,8,16 [--preset tiny|default] [--pre-create] [--json FILE]
    python -m benchmarks.concurrent_train --n 3 --pythonpath /tmp/old-checkout      # another checkout's code

For each N, in a fresh scratch project (`--workdir`/concurrent-N): N `tpc train configs/default.yaml` processes
start at once on `sqlite:///.../mlflow.db` (which does not exist yet unless --pre-create), each with its own
`model.C` (geometric from 0.05 to 20, so the versions differ at the gate). Then, from the processes and the store:

- exit codes, and the first `tpc: error` / exception line of each failed process;
- runs in the store and their status; metrics lost (a FINISHED run whose metric names differ from the others');
- versions registered, versions without the gate's decision, and whether the gate was serialized: exactly one
  version saw "no current @champion", no two promotions were compared with the same champion, and @champion ends
  on the version with the best gate metric;
- retries the store wrapper made ('locked', 'conflict'; from the processes' warnings);
- wall time and the peak summed RSS of all N process trees.

Presets: `tiny` (40 passages of each written file, 2 folds, the challenge sets as the frozen set: mostly MLflow
and the gate, a few seconds of fitting per run: it loads the store hardest) and `default` (the default config with
2 folds and 50 composite articles: a realistic run)."""

from __future__ import annotations

import argparse
import os
import re
import shutil
import subprocess
import sys
import threading
import time
from pathlib import Path

from benchmarks import common

NAME = "turkey-policy"
PRESETS = {
    "tiny": ["splits.n_folds=2", "article.composite_articles=20", "data.real=null", "data.seeds_gold=null",
             "model.char_ngrams=null", "data.train=[tiny/*.jsonl]", "promotion.eval_data=data/challenge/*.jsonl",
             "promotion.metric=frozen_topic_macro_f1", "register.export_dir=null"],
    "default": ["splits.n_folds=2", "article.composite_articles=50", "register.export_dir=null"],
}


def scratch(directory: Path) -> Path:
    shutil.rmtree(directory, ignore_errors=True)
    common.copy_project(directory)
    (directory / "tiny").mkdir()
    lines = []
    for f in sorted((directory / "data" / "written").glob("*.jsonl")):
        lines += f.read_text(encoding="utf-8").splitlines()[:40]
    (directory / "tiny" / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def first_error(stderr: str) -> str:
    lines = stderr.splitlines()
    for line in lines:
        if line.startswith("tpc: error:"):
            return line[:300]
    for line in reversed(lines):
        if re.match(r"^[\w.]+(Error|Exception)\b", line):
            return line[:300]
    return (lines[-1] if lines else "")[:300]


def gate_check(client, metric: str) -> dict:
    versions = {str(v.version): client.get_model_version(NAME, str(v.version))
                for v in client.search_model_versions(f"name='{NAME}'")}
    tags = {v: mv.tags for v, mv in versions.items()}
    undecided = [v for v, t in tags.items() if "promotion.decision" not in t]
    decided = {v: t for v, t in tags.items() if v not in undecided}
    firsts = [v for v, t in decided.items() if t["promotion.reason"].startswith("no current @champion")]
    promoted = [v for v, t in decided.items() if t["promotion.decision"] == "promoted" and v not in firsts]
    against = [decided[v].get("promotion.champion_version") for v in promoted]
    try:
        champion = str(client.get_model_version_by_alias(NAME, "champion").version)
    except Exception:
        champion = None
    scores = {v: float(t[f"promotion.{metric}"]) for v, t in decided.items() if f"promotion.{metric}" in t}
    serialized = (len(firsts) == 1 and len(set(against)) == len(against) and champion is not None
                  and bool(scores) and scores.get(champion) == max(scores.values()))
    return {"versions": len(versions), "undecided": len(undecided), "saw_no_champion": len(firsts),
            "champion": champion, "gate_serialized": serialized}


def one(n: int, args, preset: list[str]) -> dict:
    import mlflow

    project = scratch(Path(args.workdir) / f"concurrent-{n}")
    uri = f"sqlite:///{project / 'mlflow.db'}"
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri, "OPENBLAS_NUM_THREADS": "1", "OMP_NUM_THREADS": "1",
           "MKL_NUM_THREADS": "1", "PYTHONWARNINGS": "ignore"}
    cmd = [sys.executable, "-m", "training.cli"]
    if args.pythonpath:
        env["PYTHONPATH"] = str(Path(args.pythonpath).resolve())  # before the editable install on sys.path
    if args.pre_create:
        mlflow.MlflowClient(uri, uri).search_experiments()
    cs = [0.05 * (400 ** (i / max(n - 1, 1))) for i in range(n)]
    procs, logs = [], []
    t0 = time.perf_counter()
    for i, c in enumerate(cs):
        out, err = open(project / f"out{i}.log", "w"), open(project / f"err{i}.log", "w")
        logs.append((out, err))
        sets = [a for item in preset + [f"model.C={c:.4g}"] for a in ("--set", item)]
        procs.append(subprocess.Popen([*cmd, "train", "configs/default.yaml", *sets], cwd=project, env=env,
                                      stdout=out, stderr=err))
    peak, done = [0], threading.Event()

    def sample():
        import psutil

        ps = [psutil.Process(p.pid) for p in procs]
        while not done.is_set():
            peak[0] = max(peak[0], sum(common._tree_rss(p) for p in ps))
            done.wait(0.2)

    sampler = threading.Thread(target=sample, daemon=True)
    sampler.start()
    codes = [p.wait(timeout=args.timeout) for p in procs]
    seconds = time.perf_counter() - t0
    done.set()
    sampler.join()
    for out, err in logs:
        out.close()
        err.close()
    stderrs = [(project / f"err{i}.log").read_text(errors="replace") for i in range(n)]
    errors = [first_error(s) for s, c in zip(stderrs, codes) if c != 0]

    try:
        client = mlflow.MlflowClient(uri, uri)
        experiment = client.get_experiment_by_name(NAME)
        runs = client.search_runs([experiment.experiment_id], max_results=1000) if experiment else []
        store_error = None
    except Exception as exc:  # the processes left a store MLflow cannot open (a half-built schema)
        store_error, runs = f"{type(exc).__name__}: {str(exc).strip().splitlines()[0]}"[:300], []
    statuses = [r.info.status for r in runs]
    finished = [r for r in runs if r.info.status == "FINISHED"]
    reference = max((set(r.data.metrics) for r in finished), key=len, default=set())
    lost = sum(set(r.data.metrics) != reference for r in finished)
    metric = next(s.split("=", 1)[1] for s in preset + ["promotion.metric=real_dev_article_topic_macro_f1"]
                  if s.startswith("promotion.metric="))
    gate = gate_check(client, metric) if runs else {}
    return {"n": n, "seconds": round(seconds, 1), "peak_rss_mb": round(peak[0] / 2 ** 20),
            "exit_0": codes.count(0), "exit_codes": codes, "errors": errors,
            "runs": len(runs), "finished": statuses.count("FINISHED"), "failed_runs": statuses.count("FAILED"),
            "running_runs": statuses.count("RUNNING"), "runs_with_lost_metrics": lost,
            "retries_locked": sum(s.count("failed (locked") for s in stderrs),
            "retries_conflict": sum(s.count("failed (conflict") for s in stderrs), **gate,
            "store_error": store_error,
            "all_ok": (store_error is None and codes.count(0) == n and statuses.count("FINISHED") == n and lost == 0
                       and gate.get("versions") == n and gate.get("undecided") == 0
                       and bool(gate.get("gate_serialized")))}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--n", default="2,4,8", help="numbers of concurrent runs, comma-separated")
    p.add_argument("--preset", choices=sorted(PRESETS), default="tiny")
    p.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help="more overrides for every run")
    p.add_argument("--pre-create", action="store_true", help="create the store before starting the runs")
    p.add_argument("--pythonpath", help="run the `training` package of this directory instead of the working tree")
    p.add_argument("--stop-on-failure", action="store_true", help="stop at the first N where anything failed")
    p.add_argument("--timeout", type=float, default=3600)
    p.add_argument("--workdir", default=str(common.DEFAULT_WORKDIR))
    p.add_argument("--json")
    args = p.parse_args(argv)
    rows = []
    for n in [int(x) for x in args.n.split(",")]:
        rows.append(one(n, args, PRESETS[args.preset] + args.set))
        print(f"N={n}: {rows[-1]}", file=sys.stderr, flush=True)
        if args.stop_on_failure and not rows[-1]["all_ok"]:
            break
    held = [r["n"] for r in rows if r["all_ok"]]
    result = {"machine": common.machine(), "command": common.command_line("benchmarks.concurrent_train"),
              "preset": args.preset, "overrides": PRESETS[args.preset] + args.set, "pythonpath": args.pythonpath,
              "pre_create": args.pre_create, "rows": rows,
              "largest_n_all_ok": max(held) if held else None,
              "smallest_n_failing": min((r["n"] for r in rows if not r["all_ok"]), default=None)}
    text = common.table(rows, [("n", "N", "d"), ("seconds", "wall s", ".1f"), ("peak_rss_mb", "peak RSS MB", "d"),
                               ("exit_0", "exit 0", "d"), ("finished", "FINISHED", "d"),
                               ("failed_runs", "FAILED", "d"), ("runs_with_lost_metrics", "lost metrics", "d"),
                               ("versions", "versions", "d"), ("undecided", "no gate", "d"),
                               ("saw_no_champion", "saw no champ", "d"), ("retries_locked", "retry locked", "d"),
                               ("retries_conflict", "retry conflict", "d"), ("all_ok", "all ok", "")])
    text += "".join(f"\nN={r['n']}: {e}" for r in rows for e in r["errors"])
    text += "".join(f"\nN={r['n']}: store unusable afterwards: {r['store_error']}" for r in rows if r["store_error"])
    common.emit(result, text, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
