"""The peers of `tpc score`: what a registry consumer would write by hand with the same registered model.

    python -m benchmarks.peers pyfunc IN.jsonl OUT.jsonl --model models:/turkey-policy/1
    python -m benchmarks.peers spark  IN.jsonl OUT_DIR   --model models:/turkey-policy/1 [--master local[2]]

`pyfunc`: load the whole file into one DataFrame, `mlflow.pyfunc.load_model(...).predict(df)` in one process,
write JSONL. `spark`: `mlflow.pyfunc.spark_udf` over a Spark DataFrame read from the same JSONL, in local mode,
written as JSON part files. Both run with MLFLOW_TRACKING_URI pointing at the benchmark's store.
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


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("kind", choices=["pyfunc", "spark"])
    p.add_argument("input")
    p.add_argument("output")
    p.add_argument("--model", required=True)
    p.add_argument("--master", default="local[2]")
    args = p.parse_args(argv)
    if args.kind == "pyfunc":
        result = pyfunc_peer(args.input, args.output, args.model)
    else:
        result = spark_peer(args.input, args.output, args.model, args.master)
    print(json.dumps(result), file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
