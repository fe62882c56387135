"""Scoring throughput of `tpc score` against the floor and against its peers, on the same file, in one run.

    python -m benchmarks.scoring --n 10000 --repeats 3

Methods (each a fresh process, timed end to end from the JSONL input to the written output, start-up included):
  floor     read, split into passages (read_article), tokenize into the model's hashed n-gram ids, write: no model
  tpc-wK    `tpc score IN -o OUT --model models:/turkey-policy/V --workers K` (K from --workers)
  pyfunc    mlflow.pyfunc.load_model + predict on the whole DataFrame in one process
  spark     mlflow.pyfunc.spark_udf in local[2] mode
Methods are interleaved inside each repeat so that load from other users of the machine hits them alike.
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

from benchmarks import common


def _last_json(text: str) -> dict:
    for line in reversed(text.strip().splitlines()):
        try:
            obj = json.loads(line)
        except ValueError:
            continue
        if isinstance(obj, dict):
            return obj
    return {}


def _output_rows(path: Path) -> int:
    if path.is_dir():  # Spark part files
        return sum(common.count_lines(p) for p in path.glob("part-*"))
    return common.count_lines(path) if path.exists() else 0


def method_commands(champion: common.Champion, input_path: Path, outdir: Path, workers: list[int],
                    peers: list[str], has_workers_flag: bool) -> dict[str, tuple[list[str], Path]]:
    py = sys.executable
    cmds: dict[str, tuple[list[str], Path]] = {}
    out = outdir / "floor.jsonl"
    cmds["floor"] = ([py, "-m", "benchmarks.floor", str(input_path), str(out), "--bundle", str(champion.bundle_dir)],
                     out)
    for k in workers:
        if k != 1 and not has_workers_flag:
            continue
        out = outdir / f"tpc-w{k}.jsonl"
        cmd = [*common.tpc_command(), "score", str(input_path), "-o", str(out), "--model", champion.uri]
        cmds[f"tpc-w{k}"] = (cmd + (["--workers", str(k)] if has_workers_flag else []), out)
    for peer in peers:
        out = outdir / (f"{peer}.jsonl" if peer == "pyfunc" else "spark-out")
        cmds[peer] = ([py, "-m", "benchmarks.peers", peer, str(input_path), str(out), "--model", champion.uri], out)
    return cmds


def run_methods(cmds, champion: common.Champion, n: int, repeats: int, timeout: float | None, log,
                budget: float | None = None, on_repeat=None) -> dict:
    """{method: {"seconds": [...], "rss_mb": [...], ...}} over the repeats. A method that fails (exit status other
    than 0/1, or not one output row per input row) is reported with its error and not repeated. With `budget`
    (seconds), no repeat is started that would, at the pace so far, end after it; `on_repeat(results)` is
    called after each repeat (to save what is measured so far)."""
    results = {m: {"seconds": [], "rss_mb": [], "rows": [], "errors": [], "detail": [], "failed": None} for m in cmds}
    env = dict(champion.env)
    env["PYTHONPATH"] = str(common.REPO) + (":" + env["PYTHONPATH"] if env.get("PYTHONPATH") else "")
    start = time.perf_counter()
    for r in range(repeats):
        elapsed = time.perf_counter() - start
        if r and budget is not None and elapsed * (r + 1) / r > budget:
            log(f"  stopping after {r} repeat(s): another would pass --budget {budget:.0f} s")
            break
        if r and on_repeat is not None:
            on_repeat(results)
        for method, (cmd, out) in cmds.items():
            res = results[method]
            if res["failed"]:
                continue
            common.clear_output(out)
            m = common.run_measured(cmd, cwd=champion.project, env=env, timeout=timeout)
            rows = _output_rows(out)
            summary = _last_json(m.stderr)
            common.clear_output(out)
            if m.returncode not in (0, 1) or rows != n:
                tail = [line for line in m.stderr.strip().splitlines() if line.strip()][-3:]
                res["failed"] = f"repeat {r + 1}: exit {m.returncode}, {rows}/{n} rows: " + " | ".join(tail)
                log(f"  repeat {r + 1}/{repeats} {method:8} FAILED: {res['failed']}")
                continue
            res["seconds"].append(m.seconds)
            res["rss_mb"].append(m.peak_rss_mb)
            res["rows"].append(rows)
            res["errors"].append(summary.get("errors", 0))
            res["detail"].append(summary)
            log(f"  repeat {r + 1}/{repeats} {method:8} {m.seconds:8.1f} s  {n / m.seconds:8.1f} articles/s  "
                f"peak RSS {m.peak_rss_mb or 0:7.0f} MB")
    return results


def summarize(results: dict, n: int) -> dict:
    methods = {}
    for method, res in results.items():
        if not res["seconds"]:
            methods[method] = {"failed": res["failed"]}
            continue
        rates = [n / s for s in res["seconds"]]
        rss = [x for x in res["rss_mb"] if x is not None]
        methods[method] = {"articles_per_s": common.stats(rates), "seconds": common.stats(res["seconds"]),
                           "peak_rss_mb": common.stats(rss) if rss else None, "failed": res["failed"],
                           "row_errors": max(res["errors"]) if res["errors"] else 0, "detail": res["detail"]}
    return methods


def ratios(methods: dict) -> dict:
    """Per scorer configuration: its rate over the floor's and over each peer's. `vs_X` divides the medians;
    `paired_vs_X` is the median (and range) of the ratios within each repeat, where the methods ran minutes
    apart, which a machine whose load changes between repeats distorts less."""
    rate = {m: v["articles_per_s"]["median"] for m, v in methods.items() if "articles_per_s" in v}
    secs = {m: v["seconds"]["values"] for m, v in methods.items() if "seconds" in v}
    peers = [m for m in rate if m in ("pyfunc", "spark")]
    failed_peers = [p for p in ("pyfunc", "spark") if p in methods and p not in rate]
    out = {}
    for m in (m for m in rate if m.startswith("tpc-")):
        out[m] = {"vs_floor": rate[m] / rate["floor"] if "floor" in rate else None,
                  **{f"vs_{p}": rate[m] / rate[p] for p in peers}}
        for other in [o for o in ("floor", *peers) if o in secs]:
            pairs = [b / a for a, b in zip(secs[m], secs[other])]
            out[m][f"paired_vs_{other}"] = common.stats(pairs) if pairs else None
        out[m]["meets_half_floor"] = out[m]["vs_floor"] >= 0.5 if out[m]["vs_floor"] is not None else None
        out[m]["beats_every_peer"] = (all(out[m][f"vs_{p}"] > 1 for p in peers) if peers and not failed_peers
                                      else None)
    return out


def render(result: dict) -> str:
    rows = []
    floor = result["methods"].get("floor", {}).get("articles_per_s", {}).get("median")
    for m, v in result["methods"].items():
        if "articles_per_s" not in v:
            rows.append({"method": m + " (failed)"})
            continue
        r = v["articles_per_s"]
        rows.append({"method": m, "rate": r["median"], "min": r["min"], "max": r["max"], "spread": 100 * r["spread"],
                     "secs": v["seconds"]["median"],
                     "rss": v["peak_rss_mb"]["median"] if v["peak_rss_mb"] else None,
                     "vs_floor": r["median"] / floor if floor else None})
    text = common.table(rows, [("method", "method", ""), ("rate", "articles/s (median)", ".1f"), ("min", "min", ".1f"),
                               ("max", "max", ".1f"), ("spread", "spread %", ".0f"), ("secs", "seconds", ".1f"),
                               ("rss", "peak RSS MB", ".0f"), ("vs_floor", "x floor", ".2f")])
    lines = [f"N={result['n']} articles (~{result['input']['mean_text_bytes']} B per JSONL row), "
             f"{result['repeats']} repeats, load avg before/after {result['machine_before'].get('loadavg_1_5_15')} / "
             f"{result['machine_after'].get('loadavg_1_5_15')}", text, ""]
    for m, v in result["methods"].items():
        if v.get("failed"):
            lines.append(f"{m} FAILED: {v['failed'][:300]}")
    verdict = {True: "beats every peer", False: "does NOT beat every peer", None: "not every peer measured"}
    for m, r in result["ratios"].items():
        peer_txt = ", ".join(f"{k[3:]} x{v:.2f}" for k, v in r.items() if k.startswith("vs_") and k != "vs_floor")
        paired = ", ".join(f"{k[len('paired_vs_'):]} x{v['median']:.2f} [{v['min']:.2f}-{v['max']:.2f}]"
                           for k, v in r.items() if k.startswith("paired_vs_") and v)
        floor_txt = "floor not measured" if r["vs_floor"] is None else \
            f"{r['vs_floor']:.2f} of the floor ({'meets' if r['meets_half_floor'] else 'MISSES'} >= 0.5)"
        lines.append(f"{m}: {floor_txt}; vs peers: {peer_txt or 'n/a'} ({verdict[r['beats_every_peer']]})")
        if paired:
            lines.append(f"    within each repeat (median [min-max]): {paired}")
    if not result["workers_flag"]:
        lines.append("`tpc score` has no --workers flag: only 1 worker measured.")
    return "\n".join(lines)


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Scoring throughput: tpc score vs the floor and the peers.")
    p.add_argument("--n", type=int, default=10_000, help="articles in the input file")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--workers", default="1,2", help="comma-separated worker counts for tpc score")
    p.add_argument("--peers", default="pyfunc,spark", help="comma-separated: pyfunc, spark (empty: none)")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=common.DEFAULT_WORKDIR, help="cache: store, champion, inputs")
    p.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for training the benchmark's champion (the model's shape decides speed)")
    p.add_argument("--reuse-latest", action="store_true",
                   help="use the newest cached champion even if the predict-time code or config changed since")
    p.add_argument("--retrain", action="store_true", help="train a new champion even if one is cached")
    p.add_argument("--timeout", type=float, default=None, help="seconds allowed for one method run")
    p.add_argument("--budget", type=float, default=None,
                   help="seconds: start no repeat that would end after this (at the pace so far)")
    p.add_argument("--json", help="also write the JSON result to this file (updated after every repeat)")
    p.add_argument("--render", metavar="JSON", help="print the table of a saved result again (ratios recomputed)")
    args = p.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731
    if args.render:
        result = json.loads(Path(args.render).read_text())
        result["ratios"] = ratios(result["methods"])
        print(render(result))
        return 0

    before = common.machine()
    champion = common.ensure_champion(args.workdir, args.retrain, log, args.train_set, args.reuse_latest)
    log(f"champion {champion.uri} in {champion.project}")
    input_path = common.cached_articles(args.workdir, args.n, args.seed)
    has_flag = common.cli_has_flag("score", "--workers")
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    peers = [x.strip() for x in args.peers.split(",") if x.strip()]
    outdir = args.workdir / "out"
    outdir.mkdir(parents=True, exist_ok=True)
    cmds = method_commands(champion, input_path, outdir, workers, peers, has_flag)
    size = input_path.stat().st_size

    def build(results: dict, complete: bool) -> dict:
        methods = summarize(results, args.n)
        return {
            "benchmark": "scoring", "command": common.command_line("benchmarks.scoring"), "n": args.n,
            "repeats": max(len(r["seconds"]) for r in results.values()), "complete": complete,
            "model": champion.uri, "train_overrides": args.train_set, "champion_dir": str(champion.project),
            "workers_flag": has_flag,
            "input": {"path": str(input_path), "file_bytes": size, "mean_text_bytes": round(size / args.n)},
            "methods": methods, "ratios": ratios(methods),
            "commands": {m: " ".join(c) for m, (c, _) in cmds.items()},
            "machine_before": before, "machine_after": common.machine(),
        }

    def checkpoint(results: dict) -> None:
        if args.json:  # an interrupted run still leaves the repeats it finished
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(build(results, False), indent=1, default=str) + "\n")

    results = run_methods(cmds, champion, args.n, args.repeats, args.timeout, log, args.budget, checkpoint)
    result = build(results, True)
    common.emit(result, render(result), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
