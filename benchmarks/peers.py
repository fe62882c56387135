"""The peers of `tpc score`: what a registry consumer would write by hand with the same registered model.

    python -m benchmarks.peers pyfunc IN.jsonl OUT.jsonl --model models:/turkey-policy/1
    python -m benchmarks.peers spark  IN.jsonl OUT_DIR   --model models:/turkey-policy/1 [--master local[2]]
    python -m benchmarks.peers sklearn IN.jsonl OUT.jsonl --model PEER.joblib [--processes 2]

`pyfunc`: load the whole file into one DataFrame, `mlflow.pyfunc.load_model(...).predict(df)` in one process,
write JSONL. `spark`: `mlflow.pyfunc.spark_udf` over a Spark DataFrame read from the same JSONL, in local mode,
written as JSON part files. Both run with MLFLOW_TRACKING_URI pointing at the benchmark's store.

`sklearn` is issue 15's plain scikit-learn peer, not the registered model: TF-IDF over hashed word 1-2 and char_wb
2-5 n-grams (HashingVectorizer + TfidfTransformer) and one-vs-rest logistic regression over whole articles (no
passages, no stance), trained once by `train_sklearn_peer` on the real train split (data/real/labels.jsonl: the
article texts and the union of their passages' topics; it is there to be timed, not to be good). It runs as one
process that starts `--processes` worker processes (each loads the joblib file itself: model loading is timed),
hands each a contiguous half of the input lines, and writes their rows {"id", "topics"} in input order.
"""

from __future__ import annotations

import argparse
import json
import sys
import time


def pyfunc_peer(input_path: str, output_path: str, model_uri: str) -> dict:
    import mlflow
    import pandas as pd

    t0 = time.perf_counter()
    df = pd.read_json(input_path, lines=True, dtype={"id": str})
    t_read = time.perf_counter()
    model = mlflow.pyfunc.load_model(model_uri)
    t_load = time.perf_counter()
    out = model.predict(df[["id", "text"]])
    t_pred = time.perf_counter()
    out.to_json(output_path, orient="records", lines=True, force_ascii=False)
    return {"rows": len(out), "errors": int(out["error"].notna().sum()), "read_s": t_read - t0,
            "load_s": t_load - t_read, "predict_s": t_pred - t_load, "write_s": time.perf_counter() - t_pred}


def spark_result_type(labels) -> str:
    """The model's output row as a Spark DDL struct (same columns as training.bundle.output_columns)."""
    from training.scoring.schema import OutputSchema

    return OutputSchema(labels).ddl()


def spark_peer(input_path: str, output_dir: str, model_uri: str, master: str = "local[2]") -> dict:
    import mlflow
    from pyspark.sql import SparkSession
    from pyspark.sql import functions as F

    from training import TOPICS

    import os

    # Spark's Python workers: this interpreter (with pandas, mlflow, the model's code), not the first python3 on PATH
    os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
    t0 = time.perf_counter()
    spark = (SparkSession.builder.master(master).appName("tpc-bench-spark-peer")
             .config("spark.ui.enabled", "false").config("spark.driver.host", "127.0.0.1")
             .config("spark.driver.bindAddress", "127.0.0.1").getOrCreate())
    spark.sparkContext.setLogLevel("ERROR")
    t_session = time.perf_counter()
    try:
        udf = mlflow.pyfunc.spark_udf(spark, model_uri, result_type=spark_result_type(TOPICS), env_manager="local")
        df = spark.read.schema("id string, text string").json(input_path)
        out = df.withColumn("p", udf(F.struct("text", "id"))).select("p.*")
        out.write.mode("overwrite").json(output_dir)
    finally:
        spark.stop()
    # rows are counted by the caller from the part files, outside the timed run
    return {"session_s": t_session - t0, "udf_and_write_s": time.perf_counter() - t_session}


def sklearn_peer_pipeline():
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfTransformer
    from sklearn.linear_model import LogisticRegression
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import FeatureUnion, make_pipeline

    hashed = dict(n_features=2 ** 20, alternate_sign=False, norm=None, lowercase=True)
    features = FeatureUnion([("word", HashingVectorizer(analyzer="word", ngram_range=(1, 2), **hashed)),
                             ("char", HashingVectorizer(analyzer="char_wb", ngram_range=(2, 5), **hashed))])
    return make_pipeline(features, TfidfTransformer(sublinear_tf=True),
                         OneVsRestClassifier(LogisticRegression(C=4.0, max_iter=1000, class_weight="balanced")))


def train_sklearn_peer(out_path, labels_path, data_dir=None) -> dict:
    """Fit the plain peer on the real train split and save it with joblib."""
    import joblib
    import numpy as np

    from training import TOPICS
    from training.real import article_gold, load_real

    t0 = time.perf_counter()
    arts = load_real(labels_path, data_dir, splits=("train",))
    Y = article_gold(arts)
    keep = [j for j in range(Y.shape[1]) if 0 < Y[:, j].sum() < len(Y)]  # a topic needs both classes
    model = sklearn_peer_pipeline().fit([a.text for a in arts], Y[:, keep])
    model.topics_ = [TOPICS[j] for j in keep]
    joblib.dump(model, out_path)
    return {"articles": len(arts), "topics": model.topics_, "fit_s": time.perf_counter() - t0,
            "positives": int(np.asarray(Y).sum())}


def _sklearn_worker(args) -> list[str]:
    model_path, lines = args
    import json as _json

    import joblib

    model = joblib.load(model_path)  # every worker loads the model: part of the timed cost
    rows = [_json.loads(line) for line in lines]
    Y = model.predict([r.get("text") or "" for r in rows])
    return [_json.dumps({"id": r.get("id"), "topics": [t for t, y in zip(model.topics_, yv) if y]},
                        ensure_ascii=False) + "\n" for r, yv in zip(rows, Y)]


def sklearn_peer(input_path: str, output_path: str, model_path: str, processes: int = 2) -> dict:
    from concurrent.futures import ProcessPoolExecutor

    t0 = time.perf_counter()
    with open(input_path, encoding="utf-8") as fh:
        lines = [line for line in fh if line.strip()]
    size = -(-len(lines) // processes)
    parts = [(model_path, lines[i:i + size]) for i in range(0, len(lines), size)]
    with ProcessPoolExecutor(processes) as pool, open(output_path, "w", encoding="utf-8") as out:
        for rows in pool.map(_sklearn_worker, parts):
            out.writelines(rows)
    return {"rows": len(lines), "errors": 0, "processes": processes, "seconds": time.perf_counter() - t0}


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["pyfunc", "spark", "sklearn"])
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--model", required=True)
    p.add_argument("--master", default="local[2]")
    p.add_argument("--processes", type=int, default=2, help="sklearn: worker processes")
    args = p.parse_args(argv)
    if args.kind == "pyfunc":
        result = pyfunc_peer(args.input, args.output, args.model)
    elif args.kind == "sklearn":
        result = sklearn_peer(args.input, args.output, args.model, args.processes)
    else:
        result = spark_peer(args.input, args.output, args.model, args.master)
    print(json.dumps(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
