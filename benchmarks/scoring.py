"""Scoring throughput of `tpc score` against the floor and against its peers, on the same file, in one run.

    python -m benchmarks.scoring                       # 6,000 OrangeSum articles (Monde, Politique, France, News)
    python -m benchmarks.scoring --input synthetic --n 10000 --repeats 3 --full-model '' --peers pyfunc,spark

Inputs: `--input orangesum` (default) is the first N articles of the real corpus in sections Monde, Politique,
France and News (`--sections`), read from the shared data directory (TPC_DATA_DIR), each as the text a scorer is
given (title line, then body); `--input synthetic` is N generated ~2 KB articles of the written passages.

Methods (each a fresh process, timed end to end from the JSONL input to the written output, start-up and model
loading included):
  floor     read, split into passages (read_article), tokenize into the model's hashed n-gram ids, write: no model
  sklearn   issue 15's plain peer: hashed TF-IDF (word 1-2 + char_wb 2-5) + one-vs-rest logistic regression over
            whole articles, 2 worker processes (benchmarks/peers.py; trained once on the real train split)
  tpc-wK    `tpc score IN -o OUT --model models:/turkey-policy/V --workers K`: the champion (configs/default.yaml,
            tfidf_linear, the family the real dev split chose)
  full-wK   the same command with the `--full-model` config's model (default configs/embedding.yaml:
            embedding_linear, USE + word TF-IDF), trained into its own scratch project; its embedding cache is
            emptied before every run, so every passage is encoded
  pyfunc    mlflow.pyfunc.load_model + predict on the whole DataFrame in one process (the champion)
  spark     mlflow.pyfunc.spark_udf in local[2] mode (the champion)
Methods are interleaved inside each repeat so that load from other users of the machine hits them alike. The
champion's rate is also given as a multiple of the sklearn peer's (issue 15's target: >= 0.5), and the champion's
article decisions (topic set, and stance of each topic found) are compared with the full model's.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
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
                    peers: list[str], has_workers_flag: bool, full: common.Champion | None = None,
                    sklearn_model: Path | None = None) -> dict[str, tuple]:
    """{method: (command, output path[, cwd, env, clean])}: without cwd/env a method runs in the champion's
    project; `clean` is a path removed before each run (the full model's embedding cache)."""
    py = sys.executable
    cmds: dict[str, tuple] = {}
    out = outdir / "floor.jsonl"
    cmds["floor"] = ([py, "-m", "benchmarks.floor", str(input_path), str(out), "--bundle", str(champion.bundle_dir)],
                     out)
    if "sklearn" in peers and sklearn_model is not None:
        out = outdir / "sklearn.jsonl"
        cmds["sklearn"] = ([py, "-m", "benchmarks.peers", "sklearn", str(input_path), str(out), "--model",
                            str(sklearn_model), "--processes", "2"], out)
    for k in workers:
        if k != 1 and not has_workers_flag:
            continue
        for name, model in (("tpc", champion), ("full", full)):
            if model is None:
                continue
            out = outdir / f"{name}-w{k}.jsonl"
            cmd = [*common.tpc_command(), "score", str(input_path), "-o", str(out), "--model", model.uri]
            cmd += ["--workers", str(k)] if has_workers_flag else []
            cmds[f"{name}-w{k}"] = (cmd, out) if model is champion else \
                (cmd, out, model.project, model.env, model.project / common.EMBEDDING_CACHE)
    for peer in (p for p in peers if p in ("pyfunc", "spark")):
        out = outdir / (f"{peer}.jsonl" if peer == "pyfunc" else "spark-out")
        cmds[peer] = ([py, "-m", "benchmarks.peers", peer, str(input_path), str(out), "--model", champion.uri], out)
    return cmds


def run_methods(cmds, champion: common.Champion, n: int, repeats: int, timeout: float | None, log,
                budget: float | None = None, on_repeat=None, keep_dir: Path | None = None) -> dict:
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
        for method, (cmd, out, *where) in cmds.items():
            res = results[method]
            if res["failed"]:
                continue
            common.clear_output(out)
            cwd, run_env, clean = (where + [None, None, None])[:3]
            if run_env is not None:
                run_env = dict(run_env)
                run_env["PYTHONPATH"] = env["PYTHONPATH"]
            if clean is not None:
                shutil.rmtree(clean, ignore_errors=True)
            m = common.run_measured(cmd, cwd=cwd or champion.project, env=run_env or env, timeout=timeout)
            rows = _output_rows(out)
            summary = _last_json(m.stderr)
            if keep_dir is not None and out.is_file() and rows == n:
                keep_dir.mkdir(parents=True, exist_ok=True)
                shutil.copyfile(out, keep_dir / out.name)  # the last repeat's output, for the agreement
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
            res.setdefault("load", []).append(round(os.getloadavg()[0], 2) if hasattr(os, "getloadavg") else None)
            log(f"  repeat {r + 1}/{repeats} {method:8} {m.seconds:8.1f} s  {n / m.seconds:8.1f} articles/s  "
                f"peak RSS {m.peak_rss_mb or 0:7.0f} MB  load {res['load'][-1]}")
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
                           "row_errors": max(res["errors"]) if res["errors"] else 0, "detail": res["detail"],
                           "load_1min_after": res.get("load", [])}
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
    for m in (m for m in rate if m.startswith(("tpc-", "full-"))):
        out[m] = {"vs_floor": rate[m] / rate["floor"] if "floor" in rate else None,
                  **{f"vs_{p}": rate[m] / rate[p] for p in peers}}
        if "sklearn" in rate:  # issue 15: at least half the plain scikit-learn peer's rate
            out[m]["x_sklearn_peer"] = rate[m] / rate["sklearn"]
            out[m]["meets_half_sklearn_peer"] = out[m]["x_sklearn_peer"] >= 0.5
        for other in [o for o in ("floor", "sklearn", *peers) if o in secs]:
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
                     "vs_floor": r["median"] / floor if floor else None,
                     "load": max(v["load_1min_after"]) if v.get("load_1min_after") else None})
    text = common.table(rows, [("method", "method", ""), ("rate", "articles/s (median)", ".1f"), ("min", "min", ".1f"),
                               ("max", "max", ".1f"), ("spread", "spread %", ".0f"), ("secs", "seconds", ".1f"),
                               ("rss", "peak RSS MB", ".0f"), ("vs_floor", "x floor", ".2f"),
                               ("load", "load 1-min after (max)", ".1f")])
    lines = [f"N={result['n']} {result.get('input_kind', 'synthetic')} articles "
             f"(~{result['input']['mean_text_bytes']} B per JSONL row), "
             f"{result['repeats']} repeats, load avg before/after {result['machine_before'].get('loadavg_1_5_15')} / "
             f"{result['machine_after'].get('loadavg_1_5_15')}", text, ""]
    for m, v in result["methods"].items():
        if v.get("failed"):
            lines.append(f"{m} FAILED: {v['failed'][:300]}")
    for m, r in result["ratios"].items():
        if "x_sklearn_peer" in r:
            lines.append(f"{m}: x{r['x_sklearn_peer']:.2f} the plain scikit-learn peer "
                         f"({'meets' if r['meets_half_sklearn_peer'] else 'MISSES'} issue 15's >= 0.5)")
    agreement = result.get("agreement")
    if agreement:
        lines.append(agreement["text"])
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


def _decisions(path: Path) -> dict[str, tuple]:
    """id -> (sorted topics, stance of each of them): an article's decisions in `tpc score` output."""
    out = {}
    with open(path, encoding="utf-8") as fh:
        for line in fh:
            if line.strip():
                row = json.loads(line)
                topics = tuple(sorted(row.get("topics") or []))
                out[str(row.get("id"))] = (topics, tuple(row.get(f"{t}_stance") for t in topics))
    return out


def agreement(keep_dir: Path, workers: list[int]) -> dict | None:
    """The fast path is the champion itself (tfidf_linear, which the real dev split chose over embedding_linear:
    README "How good is it"), so its agreement with the best model is 100% by construction: same model, same
    predict path. For reference, the champion's decisions are compared with the full (encoder) model's."""
    for k in workers:
        a, b = keep_dir / f"tpc-w{k}.jsonl", keep_dir / f"full-w{k}.jsonl"
        if a.is_file() and b.is_file():
            da, db = _decisions(a), _decisions(b)
            ids = sorted(set(da) & set(db))
            same = sum(da[i] == db[i] for i in ids)
            same_topics = sum(da[i][0] == db[i][0] for i in ids)
            flagged = sum(bool(da[i][0]) for i in ids), sum(bool(db[i][0]) for i in ids)
            text = (f"agreement: the fast path IS the champion (tfidf_linear, chosen by the real dev split), so its "
                    f"decisions equal the best model's on 100% of articles (same model, same predict path). "
                    f"For reference, champion vs the full encoder model on these {len(ids)} articles: same topics "
                    f"and stances {same / len(ids):.1%}, same topic set {same_topics / len(ids):.1%}; articles "
                    f"with any topic: champion {flagged[0]}, full model {flagged[1]}.")
            return {"fast_path_vs_best_model": 1.0, "champion_vs_full_model": same / len(ids),
                    "champion_vs_full_model_topics": same_topics / len(ids), "articles": len(ids),
                    "flagged_champion": flagged[0], "flagged_full_model": flagged[1], "text": text}
    return None


def sklearn_peer_model(workdir: Path, log) -> Path:
    """The plain peer, trained once on the real train split (cached by the peer's code and the labels)."""
    from benchmarks import peers

    labels = common.REPO / "data" / "real" / "labels.jsonl"
    key = common.inputs_digest(["benchmarks/peers.py", "data/real/labels.jsonl"])
    path = Path(workdir) / "peer" / f"sklearn-{key}.joblib"
    if not path.exists():
        path.parent.mkdir(parents=True, exist_ok=True)
        log("training the plain scikit-learn peer on the real train split ...")
        data_dir = os.environ.get("TPC_DATA_DIR") or str(common.SHARED_DATA)
        info = peers.train_sklearn_peer(path, labels, data_dir)
        log(f"  {info['articles']} articles, topics {info['topics']}, {info['fit_s']:.1f} s")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description="Scoring throughput: tpc score vs the floor and the peers.")
    p.add_argument("--input", choices=["orangesum", "synthetic"], default="orangesum")
    p.add_argument("--n", type=int, default=6_000, help="articles in the input file")
    p.add_argument("--sections", default=",".join(common.ORANGESUM_SECTIONS), help="OrangeSum sections (--input "
                   "orangesum)")
    p.add_argument("--repeats", type=int, default=1, help="1 by default: the full model alone takes minutes")
    p.add_argument("--workers", default="2", help="comma-separated worker counts for tpc score")
    p.add_argument("--peers", default="sklearn,pyfunc,spark",
                   help="comma-separated: sklearn, pyfunc, spark (empty: none)")
    p.add_argument("--full-model", default="configs/embedding.yaml",
                   help="config of the full (encoder) model scored next to the champion ('' : none)")
    p.add_argument("--warm-cache", type=Path,
                   default=Path(os.environ.get("TPC_EMBEDDING_CACHE", common.REPO / common.EMBEDDING_CACHE)),
                   help="embedding cache copied in to train the full model (read only; scoring starts empty)")
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
    full = None
    if args.full_model:
        full = common.ensure_champion(args.workdir, args.retrain, log, args.train_set, args.reuse_latest,
                                      config=args.full_model, warm_cache=args.warm_cache)
        log(f"full model ({args.full_model}) {full.uri} in {full.project}")
    peers = [x.strip() for x in args.peers.split(",") if x.strip()]
    sklearn_model = sklearn_peer_model(args.workdir, log) if "sklearn" in peers else None
    if args.input == "orangesum":
        sections = [x.strip() for x in args.sections.split(",") if x.strip()]
        input_path = common.orangesum_articles(args.workdir, args.n, sections)
    else:
        input_path = common.cached_articles(args.workdir, args.n, args.seed)
    has_flag = common.cli_has_flag("score", "--workers")
    workers = [int(w) for w in args.workers.split(",") if w.strip()]
    outdir = args.workdir / "out"
    outdir.mkdir(parents=True, exist_ok=True)
    keep_dir = outdir / "last"
    shutil.rmtree(keep_dir, ignore_errors=True)
    cmds = method_commands(champion, input_path, outdir, workers, peers, has_flag, full, sklearn_model)
    size = input_path.stat().st_size

    def build(results: dict, complete: bool) -> dict:
        methods = summarize(results, args.n)
        return {
            "benchmark": "scoring", "command": common.command_line("benchmarks.scoring"), "n": args.n,
            "repeats": max(len(r["seconds"]) for r in results.values()), "complete": complete,
            "input_kind": args.input, "model": champion.uri, "train_overrides": args.train_set,
            "champion_dir": str(champion.project), "full_model": args.full_model or None,
            "full_model_dir": str(full.project) if full else None,
            "train_seconds": {"champion": champion.train_seconds, "full": full.train_seconds if full else None},
            "agreement": agreement(keep_dir, workers) if complete else None,
            "workers_flag": has_flag,
            "input": {"path": str(input_path), "file_bytes": size, "mean_text_bytes": round(size / args.n)},
            "methods": methods, "ratios": ratios(methods),
            "commands": {m: " ".join(c[0]) for m, c in cmds.items()},
            "machine_before": before, "machine_after": common.machine(),
        }

    def checkpoint(results: dict) -> None:
        if args.json:  # an interrupted run still leaves the repeats it finished
            Path(args.json).parent.mkdir(parents=True, exist_ok=True)
            Path(args.json).write_text(json.dumps(build(results, False), indent=1, default=str) + "\n")

    results = run_methods(cmds, champion, args.n, args.repeats, args.timeout, log, args.budget, checkpoint, keep_dir)
    result = build(results, True)
    common.emit(result, render(result), args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
