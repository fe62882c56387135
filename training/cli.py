"""`tpc`: a thin command line over the library. Exit codes: 0 ok, 1 rows with errors (scoring), 2 bad usage/input
(config, data, model, store), 3 candidate refused (promote), 4 a step left unfinished that the printed command
finishes (a lock, a conflict, the store; for train: the version is registered and its run FINISHED), 130 interrupted
(Ctrl-C)."""

from __future__ import annotations

import argparse
import json
import logging
import sys

from training import MODEL_NAME

DEFAULT_MODEL = f"models:/{MODEL_NAME}@champion"
SET_HELP = ("override a config key (dotted; the value is YAML), e.g. --set splits.n_folds=3; repeatable; after the "
            "items of the TPC_SET environment variable")


def _cmd_train(args) -> int:
    from training.config import load_config, resolve
    from training.train import run

    cfg = load_config(args.config, args.set)
    if args.jobs != 1 and not args.trials:
        print("tpc: error: --jobs K runs K sweep trials at once: it needs --trials N", file=sys.stderr)
        return 2
    if args.trials:
        from training.search import run_search

        result = run_search(cfg, args.trials, resolve(args.config, args.set), args.config, jobs=args.jobs)
    else:
        result = run(cfg, resolve(args.config, args.set), args.config)
    m = result.get("metrics", {})
    keys = ["cv_topic_macro_f1", "cv_stance_macro_f1", "seeds_passage_topic_macro_f1", "seeds_article_topic_macro_f1",
            "seeds_stance_macro_f1"]
    print(json.dumps({k: round(m[k], 4) for k in keys if k in m}))
    print(json.dumps({k: v for k, v in result.items() if k not in ("metrics", "report")}, default=str))
    for p in result.get("pending", []):  # registered, run FINISHED, but a later step is left to finish by hand
        print(f"tpc: error: version {result['registered_version']} of {cfg.register.name} is registered (run "
              f"{result['run_id']} FINISHED), but {p['step']} did not complete: {p['cause']}. Finish it with:\n"
              f"  {p['command']}", file=sys.stderr)
    return 4 if result.get("pending") else 0


def _print_table(path: str) -> None:
    import pandas as pd

    from training.scoring.schema import OutputSchema

    df = pd.read_parquet(path) if path.endswith(".parquet") else pd.read_json(path, lines=True, dtype={"id": str})
    labels = OutputSchema.of(df.columns).labels  # the scoring model's topics, whatever they are
    print(f"{'id':28} {'topics (stance)':60} error")
    for _, r in df.iterrows():
        topics = ", ".join(f"{t} ({r[f'{t}_stance']})" for t in labels if bool(r[t]))
        print(f"{str(r['id'])[:28]:28} {topics or '-':60} {r['error'] if isinstance(r['error'], str) else ''}")


def _cmd_score(args) -> int:
    from training.scoring.batch import score

    summary = score(args.input, args.output, args.model, chunk_size=args.chunk_size, workers=args.workers,
                    resume=args.resume, engine=args.engine, max_chars=args.max_chars, overwrite=args.overwrite,
                    allow_code_drift=args.allow_code_drift)
    print(json.dumps(summary), file=sys.stderr)
    if args.table:
        _print_table(args.output)
    return 1 if summary["errors"] else 0


def _cmd_evaluate(args) -> int:
    import datetime

    from training.data import load_files
    from training.evaluate import evaluate_report
    from training.modelref import check_path, labels_of, load, needs_store, use_store

    if not args.data and not args.real:
        print("tpc: error: give labelled DATA files, --real dev|test, or both", file=sys.stderr)
        return 2
    check_path(args.model_uri, "MODEL_URI")
    if needs_store(args.model_uri):
        use_store()  # an existing store only: evaluating never creates an empty one
    # bad data fails here, before the model is loaded
    corpus = load_files(args.data, key="tpc evaluate DATA") if args.data else None
    arts = None
    if args.real:
        from training.real import load_real

        arts = load_real(args.real_labels, args.data_dir, splits=tuple(args.real))
    model = load(args.model_uri, "MODEL_URI")
    labels = labels_of(model)
    metrics: dict = {}
    if arts is not None:
        from training.real_eval import real_metrics

        for split in args.real:
            metrics.update(real_metrics(model.predict, [a for a in arts if a.split == split], f"real_{split}", labels))
    if corpus is not None:
        out = args.out or f"reports/{datetime.datetime.now():%Y%m%d-%H%M%S}"
        more, paths = evaluate_report(model, corpus, labels, out, name=args.name,
                                      extra={"model": args.model_uri, "data": ", ".join(corpus.files)})
        metrics.update(more)
        print(f"report: {out} ({len(paths)} files: {', '.join(p.name for p in paths)})", file=sys.stderr)
    print(json.dumps(metrics, indent=1))
    return 0


def _cmd_promote(args) -> int:
    from mlflow.exceptions import MlflowException

    from training.config import load_config
    from training.modelref import use_store
    from training.registry import PromotionError, promote

    cfg = load_config(args.config, args.set)
    uri = use_store(cfg.tracking_uri)  # the store the candidate is registered in: never a new, empty one
    try:
        d = promote(args.candidate, cfg.register.name, cfg.promotion.metric, cfg.promotion.margin,
                    cfg.promotion.eval_data, real_labels=cfg.data.real, data_dir=cfg.data.data_dir,
                    export_dir=cfg.register.export_dir)
    except (ValueError, KeyError) as exc:
        print(f"tpc: error: {exc}", file=sys.stderr)
        return 2
    except (PromotionError, MlflowException) as exc:  # nothing decided: the same command finishes the job
        import shlex

        from training.concurrency import describe
        from training.registry import candidate_version

        try:
            name, version = candidate_version(args.candidate, cfg.register.name)
            candidate = f"models:/{name}/{version}"
        except (ValueError, MlflowException):
            candidate = args.candidate
        again = ["tpc", "promote", "--candidate", candidate, "--config", args.config]
        again += [a for item in args.set for a in ("--set", item)]
        print(f"tpc: error: the promotion gate did not complete: {describe(exc, uri)}; @champion was not moved by "
              f"this command. Run it again with:\n  {' '.join(shlex.quote(a) for a in again)}", file=sys.stderr)
        return 4
    print(("PROMOTED: " if d.promoted else "REFUSED: ") + d.reason)
    if d.exported_to:
        print(f"exported the champion to {d.exported_to}")
    return 0 if d.promoted else 3


def _cmd_data_suggest(args) -> int:
    from training.suggest import labelled_ids, read_scored, suggest

    exclude = labelled_ids(args.exclude)
    queue = suggest(read_scored(args.scored), args.n, exclude, args.random_share, args.seed,
                    positive_margin=args.likely_positive, topics=args.topics)
    lines = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in queue.to_dict("records"))
    if args.output:
        with open(args.output, "w", encoding="utf-8") as fh:
            fh.write(lines)
    else:
        sys.stdout.write(lines)
    counts = queue.groupby(["sample", "topic"]).size().to_dict()
    print(json.dumps({"queued": len(queue), "excluded": len(exclude),
                      "by_sample_topic": {f"{a}/{b}": int(n) for (a, b), n in counts.items()}}), file=sys.stderr)
    return 0


def _cmd_data_import(args) -> int:
    from training.orangesum import data_dir
    from training.orangesum_import import import_clone

    target = args.data_dir or str(data_dir())
    result = import_clone(args.clone_dir, target)
    print(json.dumps(result))
    if not result["matches_labels"]:
        print(f"tpc: warning: {result['path']} holds {result['rows']} articles, but its content is not the file "
              "the labels in data/real/ were made on (another snapshot of the repository?); training and "
              "evaluation will refuse it", file=sys.stderr)
        return 1
    return 0


def _cmd_config_show(args) -> int:
    from training.config import load_config, to_yaml

    print(to_yaml(load_config(args.config, args.set)), end="")
    return 0


def _add_train(sub) -> None:
    t = sub.add_parser("train", help="train both classifiers from a config, log to MLflow, register",
                       description="Train both classifiers from a config, log the run to MLflow, register a version "
                                   "and pass it through the promotion gate. Stages are reported on stderr.")
    t.add_argument("config", help="YAML config, e.g. configs/default.yaml (see `tpc config show`)")
    t.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    t.add_argument("--trials", type=int, default=0, metavar="N",
                   help="run N trials of the config's `search:` sweep (Optuna), then train the best config")
    t.add_argument("--jobs", type=int, default=1, metavar="K",
                   help="with --trials: run K trials at once, in K worker processes sharing the study")
    t.set_defaults(func=_cmd_train)


def _add_score(sub) -> None:
    s = sub.add_parser("score", help="score a JSONL/CSV/Parquet file or a folder of .txt articles",
                       description="Score whole articles: one output row per input row, in input order. Exit codes: "
                                   "0 all rows scored, 1 some rows are error records, 2 the input, the output or the "
                                   "model could not be used, 130 interrupted (rerun with --resume).")
    s.add_argument("input", help="a .jsonl/.csv/.parquet file with a `text` column (optional `id`), or a folder of "
                                 ".txt files (one article each)")
    s.add_argument("-o", "--output", required=True, help="output .jsonl or .parquet (refused if it exists, unless "
                                                         "--overwrite)")
    s.add_argument("--model", default=DEFAULT_MODEL, help=f"model URI (default {DEFAULT_MODEL}); an alias is "
                                                          "pinned to its version at the start")
    s.add_argument("--chunk-size", type=int, default=500, metavar="ROWS",
                   help="rows sent to a worker at a time (default 500, at most 2000)")
    s.add_argument("--workers", type=int, default=1, metavar="N",
                   help="scoring processes (default 1; use the number of cores for large files; local engine)")
    s.add_argument("--resume", action="store_true", help="continue an interrupted run of the same command")
    s.add_argument("--overwrite", action="store_true",
                   help="replace an existing OUTPUT (the old file stays until the new one is complete)")
    s.add_argument("--engine", choices=["local", "spark"], default="local",
                   help="local (default): worker processes; spark: mlflow.pyfunc.spark_udf in a local[2] session")
    s.add_argument("--max-chars", type=int, default=200_000, metavar="CHARS",
                   help="longer articles are truncated and flagged (default 200000)")
    s.add_argument("--allow-code-drift", action="store_true",
                   help="score a model whose logged predict code differs from the installed package with the "
                        "installed code (refused by default: its rows could differ from the validated ones)")
    s.add_argument("--table", action="store_true", help="print a short table of the results")
    s.set_defaults(func=_cmd_score)


def _add_evaluate(sub) -> None:
    e = sub.add_parser("evaluate", help="evaluation report of any model on labelled JSONL files")
    e.add_argument("model_uri", help="e.g. models:/turkey-policy@champion, runs:/ID/model or an exported directory")
    e.add_argument("data", nargs="*", help="labelled JSONL files or glob patterns")
    e.add_argument("--real", nargs="+", choices=["train", "dev", "test"], default=[],
                   help="also measure on these splits of the labelled real articles: article topics (precision, "
                        "recall, F1 per topic, macro-F1) and Turkey's stance (mean F1 favor/against)")
    e.add_argument("--real-labels", default="data/real/labels.jsonl", help="the real labels (default data/real/labels.jsonl)")
    e.add_argument("--data-dir", default=None, help="OrangeSum's data directory (default TPC_DATA_DIR, else ../shared/data)")
    e.add_argument("--out", help="report directory (default reports/<timestamp>)")
    e.add_argument("--name", default="eval", help="file name prefix of the report (default eval)")
    e.set_defaults(func=_cmd_evaluate)


def _add_promote(sub) -> None:
    pr = sub.add_parser("promote", help="move @champion to a candidate if it is not worse on the frozen set")
    pr.add_argument("--candidate", required=True,
                    help="the version to gate: models:/turkey-policy/N or models:/turkey-policy@candidate")
    pr.add_argument("--config", default="configs/default.yaml",
                    help="config whose `promotion:` and `register:` sections apply (default configs/default.yaml)")
    pr.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    pr.set_defaults(func=_cmd_promote)


def _group(sub, name: str, help_: str, dest: str):
    """A command that only holds subcommands (`tpc data ...`, `tpc config ...`)."""
    return sub.add_parser(name, help=help_).add_subparsers(dest=dest, required=True)


def _add_data(sub) -> None:
    dsub = _group(sub, "data", "data tools: the labelling queue, the OrangeSum import", "data_command")
    ds = dsub.add_parser("suggest", help="rank unlabelled articles of a `tpc score` output for labelling")
    ds.add_argument("scored", help="a `tpc score` output (.jsonl or .parquet) of unlabelled articles")
    ds.add_argument("-n", type=int, required=True, help="how many articles to queue")
    ds.add_argument("-o", "--output", help="write the queue (JSONL) here instead of stdout")
    ds.add_argument("--exclude", nargs="*", default=[], metavar="JSONL",
                    help="files whose `article_id` (or `id`) rows are already labelled or queued (e.g. data/real/labels.jsonl)")
    ds.add_argument("--random-share", type=float, default=0.2, help="share of the queue drawn at random (default 0.2)")
    ds.add_argument("--seed", type=int, default=0, help="seed of the random share")
    ds.add_argument("--likely-positive", type=float, metavar="LOGODDS", default=None,
                    help="only articles with a topic at most LOGODDS below its decision threshold (retrieval of "
                         "likely positives, e.g. 1.0)")
    ds.add_argument("--topics", nargs="+", metavar="TOPIC", help="rank by these topics only (default: all)")
    ds.set_defaults(func=_cmd_data_suggest)
    di = dsub.add_parser("import-orangesum", help="build orangesum/articles.jsonl.gz from a clone of the OrangeSum repository")
    di.add_argument("clone_dir", help="a clone of github.com/Tixierae/OrangeSum")
    di.add_argument("--data-dir", help="where to write orangesum/articles.jsonl.gz (default: TPC_DATA_DIR, else ../shared/data)")
    di.set_defaults(func=_cmd_data_import)


def _add_config(sub) -> None:
    csub = _group(sub, "config", "config tools", "config_command")
    cs = csub.add_parser("show", help="print the fully resolved config")
    cs.add_argument("config", help="YAML config, e.g. configs/default.yaml")
    cs.add_argument("--set", action="append", default=[], metavar="KEY=VALUE", help=SET_HELP)
    cs.set_defaults(func=_cmd_config_show)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tpc", description="Train, track, package and serve the turkey-policy classifiers.")
    p.add_argument("--debug", action="store_true", help="show the full traceback of an error instead of one paragraph")
    sub = p.add_subparsers(dest="command", required=True)

    _add_train(sub)
    _add_score(sub)
    _add_evaluate(sub)
    _add_promote(sub)
    _add_data(sub)
    _add_config(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    import os

    from training import progress

    args = parser().parse_args(argv)
    # Noise that says nothing to a user of this model: MLflow's download bars (one per model load).
    os.environ.setdefault("MLFLOW_ENABLE_ARTIFACTS_PROGRESS_BAR", "false")
    # MLflow's INFO lines (creating tables, validating the input example) ask nothing of the user; warnings stay.
    os.environ.setdefault("MLFLOW_LOGGING_LEVEL", "WARNING")
    logging.basicConfig(level=logging.WARNING, format="%(levelname)s %(name)s: %(message)s")
    progress.enable(args.command)
    try:
        return _run(args)
    except KeyboardInterrupt:
        print("tpc: interrupted", file=sys.stderr)
        return 130


def _run(args) -> int:
    from mlflow.exceptions import MlflowException

    from training.errors import TPCError
    from training.scoring.errors import Interrupted

    try:
        return args.func(args)
    except Interrupted as exc:
        print(f"tpc: {exc}", file=sys.stderr)
        return 130
    except (TPCError, FileNotFoundError) as exc:
        if args.debug:
            raise
        print(f"tpc: error: {exc}", file=sys.stderr)
        return getattr(exc, "exit_code", 2)
    except MlflowException as exc:  # the store refused something: one paragraph, not MLflow's traceback
        if args.debug:
            raise
        print(f"tpc: error: MLflow: {' '.join(exc.message.split())[:600]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
