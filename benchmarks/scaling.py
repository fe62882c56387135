"""Throughput and peak memory of `tpc score` as the input grows: N = 1k, 10k, 100k, 1M articles.

    python -m benchmarks.scaling --max-n 100000
    python -m benchmarks.scaling --max-n 1000000        # adds 1M (a ~2 GB input, generated and deleted after)

Peak RSS is the summed resident memory of the scorer's whole process tree (workers included), sampled every
0.1 s with psutil. Memory should stay flat in N: the scorer streams chunks, so only start-up grows nothing.
Inputs up to 100k are cached in --workdir; larger ones are written to a temporary file and removed after use.
"""

from __future__ import annotations

import argparse
import shutil
import sys
import tempfile
from pathlib import Path

from benchmarks import common

SIZES = [1_000, 10_000, 100_000, 1_000_000]
CACHE_LIMIT = 100_000  # inputs above this are not kept


def measure_size(champion: common.Champion, n: int, repeats: int, workers: int, has_flag: bool, workdir: Path,
                 seed: int, log) -> dict:
    tmpdir = None
    if n <= CACHE_LIMIT:
        input_path = common.cached_articles(workdir, n, seed)
        gen = None
    else:
        tmpdir = Path(tempfile.mkdtemp(prefix="tpc-scaling-", dir=workdir))
        input_path = tmpdir / f"articles-{n}.jsonl"
        gen = common.write_articles(input_path, n, seed)
        log(f"  generated {n} articles ({gen['file_bytes'] / 2**20:.0f} MB) in {gen['seconds']:.0f} s")
    out = Path(workdir) / "out" / f"scaling-{n}.jsonl"
    out.parent.mkdir(parents=True, exist_ok=True)
    cmd = [*common.tpc_command(), "score", str(input_path), "-o", str(out), "--model", champion.uri]
    if has_flag:
        cmd += ["--workers", str(workers)]
    seconds, rss = [], []
    try:
        for r in range(repeats):
            common.clear_output(out)
            m = common.run_measured(cmd, cwd=champion.project, env=champion.env)
            rows = common.count_lines(out) if out.exists() else 0
            common.clear_output(out)
            if m.returncode not in (0, 1) or rows != n:
                raise RuntimeError(f"N={n}: `{' '.join(cmd)}` exited {m.returncode} with {rows}/{n} rows:\n"
                                   f"{m.stderr[-3000:]}")
            seconds.append(m.seconds)
            rss.append(m.peak_rss_mb)
            log(f"  N={n:>9,} repeat {r + 1}/{repeats}: {m.seconds:8.1f} s  {n / m.seconds:7.1f} articles/s  "
                f"peak RSS {m.peak_rss_mb or 0:6.0f} MB")
    finally:
        if tmpdir is not None:
            shutil.rmtree(tmpdir, ignore_errors=True)
    rss_ok = [x for x in rss if x is not None]
    return {"n": n, "repeats": repeats, "articles_per_s": common.stats([n / s for s in seconds]),
            "seconds": common.stats(seconds), "peak_rss_mb": common.stats(rss_ok) if rss_ok else None,
            "input_generated": gen}


def render(result: dict) -> str:
    rows = [{"n": s["n"], "rate": s["articles_per_s"]["median"], "spread": 100 * s["articles_per_s"]["spread"],
             "secs": s["seconds"]["median"], "rss": s["peak_rss_mb"]["median"] if s["peak_rss_mb"] else None,
             "reps": s["repeats"]} for s in result["sizes"]]
    text = common.table(rows, [("n", "N", ","), ("rate", "articles/s (median)", ".1f"), ("spread", "spread %", ".0f"),
                               ("secs", "seconds", ".1f"), ("rss", "peak RSS MB", ".0f"), ("reps", "repeats", "d")])
    g = result["growth"]
    flag = "flag present" if result["workers_flag"] else "no --workers flag"
    return (f"tpc score --workers {result['workers']} ({flag}),"
            f" load avg before/after {result['machine_before'].get('loadavg_1_5_15')} / "
            f"{result['machine_after'].get('loadavg_1_5_15')}\n{text}\n"
            f"N x{g['n_ratio']:,.0f}: peak RSS x{g['rss_ratio']:.2f}, throughput x{g['rate_ratio']:.2f}"
            + ("" if result["sizes"][-1]["n"] >= SIZES[-1] else f"  (not run: N > {result['max_n']:,}; use --max-n)"))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Throughput and peak RSS of tpc score for growing N.")
    p.add_argument("--max-n", type=int, default=100_000, help="largest N to run (1000000 adds the 1M point)")
    p.add_argument("--sizes", default=",".join(map(str, SIZES)), help="comma-separated N values (capped by --max-n)")
    p.add_argument("--repeats", type=int, default=3, help="repeats for N below 100k")
    p.add_argument("--large-repeats", type=int, default=1, help="repeats for N of 100k and more")
    p.add_argument("--workers", type=int, default=1)
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--workdir", type=Path, default=common.DEFAULT_WORKDIR)
    p.add_argument("--train-set", action="append", default=[], metavar="KEY=VALUE",
                   help="config override for training the benchmark's champion (the model's shape decides speed)")
    p.add_argument("--reuse-latest", action="store_true",
                   help="use the newest cached champion even if the predict-time code or config changed since")
    p.add_argument("--retrain", action="store_true")
    p.add_argument("--json")
    args = p.parse_args(argv)
    log = lambda msg: print(msg, file=sys.stderr, flush=True)  # noqa: E731

    sizes = [n for n in (int(x) for x in args.sizes.split(",") if x.strip()) if n <= args.max_n]
    if not sizes:
        p.error(f"no size <= --max-n {args.max_n}")
    before = common.machine()
    champion = common.ensure_champion(args.workdir, args.retrain, log, args.train_set, args.reuse_latest)
    has_flag = common.cli_has_flag("score", "--workers")
    measured = [measure_size(champion, n, args.large_repeats if n >= 100_000 else args.repeats, args.workers,
                             has_flag, args.workdir, args.seed, log) for n in sizes]
    first, last = measured[0], measured[-1]
    growth = {"n_ratio": last["n"] / first["n"],
              "rss_ratio": (last["peak_rss_mb"]["median"] / first["peak_rss_mb"]["median"]
                            if first["peak_rss_mb"] and last["peak_rss_mb"] else None),
              "rate_ratio": last["articles_per_s"]["median"] / first["articles_per_s"]["median"]}
    result = {"benchmark": "scaling", "command": common.command_line("benchmarks.scaling"), "model": champion.uri,
              "train_overrides": args.train_set, "champion_dir": str(champion.project),
              "workers": args.workers, "workers_flag": has_flag, "max_n": args.max_n, "sizes": measured,
              "growth": growth, "machine_before": before, "machine_after": common.machine()}
    common.emit(result, render(result), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
