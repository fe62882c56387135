"""Scoring with Spark (`tpc score --engine spark`, extra `spark`): the same pyfunc through `mlflow.pyfunc.spark_udf`.

`score_dataframe` is the piece for data that lives on a cluster (Spark DataFrame in, Spark DataFrame out, write it
with Spark); `score_spark` is the CLI path: read the input with Spark, score, and stream the rows back in input order
into the same JSONL/Parquet output as the local engine.
"""

from __future__ import annotations

from pathlib import Path

from training.bundle import MAX_ARTICLE_CHARS
from training.score import EXTRA_COLUMNS, InputError, _check_paths, _Output, _tracking, input_kind, output_schema

ROW = "_tpc_row"


def spark_session(master: str = "local[2]", app: str = "tpc-score"):
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise InputError("--engine spark needs pyspark: pip install 'turkey-policy-classifiers[spark]'") from None
    return (SparkSession.builder.master(master).appName(app)
            .config("spark.ui.enabled", "false")
            .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
            .config("spark.sql.shuffle.partitions", "2")
            .config("spark.sql.execution.arrow.pyspark.enabled", "true")
            .getOrCreate())


def model_columns(model_uri: str) -> list[str]:
    """The model's output columns, from its signature (the bundle's `output_columns` at log time)."""
    import mlflow

    sig = mlflow.models.get_model_info(model_uri).signature
    if sig is None or sig.outputs is None:
        raise InputError(f"{model_uri}: the model has no output signature; the Spark engine needs one")
    return sig.outputs.input_names()


def result_type(columns: list[str]):
    """Spark struct matching the output schema (the same column types as the Parquet output)."""
    from pyspark.sql import types as T

    simple = {"string": T.StringType(), "int64": T.LongType(), "bool": T.BooleanType(), "double": T.DoubleType()}
    fields = []
    for f in output_schema(columns):
        kind = str(f.type)
        spark_type = T.ArrayType(T.StringType()) if kind.startswith("list") else simple[kind]
        fields.append(T.StructField(f.name, spark_type, True))
    return T.StructType(fields)


def score_dataframe(spark, df, model_uri: str, model_name: str = "", model_version: str = "",
                    max_chars: int = MAX_ARTICLE_CHARS, columns: list[str] | None = None):
    """A Spark DataFrame with `text` (and optional `id`) -> one row per input row with the output schema."""
    import mlflow
    from pyspark.sql import functions as F

    columns = columns or model_columns(model_uri)
    udf = mlflow.pyfunc.spark_udf(spark, model_uri, result_type=result_type(columns), env_manager="local",
                                  params={"max_chars": int(max_chars)})
    id_col = F.col("id").cast("string") if "id" in df.columns else F.lit(None).cast("string")
    # The schema wants strings: a null text is scored as empty and comes back as an error row.
    scored = df.withColumn("_out", udf(F.struct(F.coalesce(F.col("text").cast("string"), F.lit("")).alias("text"),
                                                F.coalesce(id_col, F.lit("")).alias("id"))))
    keep = [c for c in df.columns if c == ROW]
    return scored.select(*keep, *[_restore_nulls(c, columns) for c in columns],
                         F.lit(model_name).alias("model_name"), F.lit(model_version).alias("model_version"))


def _restore_nulls(c: str, columns: list[str]):
    """spark_udf casts a string column holding some None to str ("None"/"nan") and a float one to NaN. Put the
    nulls back from what the schema guarantees: an error row has no passages and a scored row has some; stance and
    evidence exist exactly for decided topics of a scored row; a date or title is never "nan"/"None" (a title has
    at least three words)."""
    from pyspark.sql import functions as F

    value, n = F.col("_out")[c], F.col("_out")["n_passages"]
    kind = str(output_schema(columns).field(c).type)
    if kind == "double":
        return F.when(F.isnan(value), F.lit(None)).otherwise(value).alias(c)
    if c == "error":
        return F.when(n > 0, F.lit(None).cast("string")).otherwise(value).alias(c)
    if c.endswith(("_stance", "_evidence")) and c.rsplit("_", 1)[0] in columns:
        decided = F.col("_out")[c.rsplit("_", 1)[0]] & (n > 0)
        return F.when(decided, value).otherwise(F.lit(None).cast("string")).alias(c)
    if c in ("title", "date"):
        return F.when(value.isin("nan", "None", "<NA>"), F.lit(None).cast("string")).otherwise(value).alias(c)
    return value.alias(c)


def read_input(spark, path: Path):
    """Input as a Spark DataFrame with `id`, `text` and a row number that keeps input order."""
    from pyspark.sql import functions as F

    kind = input_kind(path)
    if kind == "parquet":
        df = spark.read.parquet(str(path))
    elif kind == "jsonl":
        df = spark.read.schema("id string, text string").option("mode", "PERMISSIVE").json(str(path))
    elif kind == "csv":
        df = (spark.read.option("header", True).option("multiLine", True).option("escape", '"')
              .csv(str(path)))
    else:
        df = (spark.read.option("wholetext", True).text(str(path / "*.txt"))
              .withColumn("id", F.regexp_extract(F.input_file_name(), r"([^/]+)\.txt$", 1))
              .withColumnRenamed("value", "text"))
    if "text" not in df.columns:
        raise InputError(f"{path}: wrong schema: no `text` column (columns: {df.columns})")
    cols = ["text"] + (["id"] if "id" in df.columns else [])
    return df.select(*cols).withColumn(ROW, F.monotonically_increasing_id())


def score_spark(input_path, output_path, model_uri: str, max_chars: int = MAX_ARTICLE_CHARS, resume: bool = False,
                chunk_rows: int = 500, master: str = "local[2]") -> dict:
    import time

    import mlflow
    import pyarrow as pa

    from training.score import _encode, download_model, model_identity, resolve_version

    t0 = time.perf_counter()
    if resume:
        raise InputError("--resume works with the local engine; Spark reruns failed tasks itself")
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.exists():
        raise InputError(f"{input_path}: input not found")
    fmt = _check_paths(input_path, output_path)
    uri = _tracking()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name, version = resolve_version(model_uri)
    pinned = f"models:/{name}/{version}" if name else model_uri
    columns = model_columns(pinned)
    import tempfile

    spark = spark_session(master)
    with tempfile.TemporaryDirectory(prefix="tpc-model-") as model_dir:
        local_model = download_model(model_uri, name, version, model_dir)
        label = version if name else (mlflow.models.get_model_info(local_model).run_id or "")
        out = _Output(output_path, fmt, {"engine": "spark", **model_identity(local_model, name, version, model_uri)})
        if out.exists():
            raise InputError(f"{out.partial} exists from an interrupted run; delete it and {out.sidecar}")
        out.start()
        scored = score_dataframe(spark, read_input(spark, input_path), local_model, name or model_uri, label,
                                 max_chars, columns)
        all_columns = columns + EXTRA_COLUMNS
        schema = output_schema(all_columns)
        buffer: list = []
        index = 0

        def flush():
            nonlocal index, buffer
            values = {c: [r[c] for r in buffer] for c in all_columns}
            values = {c: (v if c != "topics" else [list(x or []) for x in v]) for c, v in values.items()}
            table = pa.table([pa.array(values[c], type=schema.field(c).type) for c in all_columns], schema=schema)
            encoded = _encode(all_columns, values, fmt)[0] if fmt == "jsonl" else table
            out.write(index, encoded, len(buffer), sum(v is not None for v in values["error"]), all_columns)
            index += 1
            buffer = []

        try:
            for row in scored.orderBy(ROW).drop(ROW).toLocalIterator():
                buffer.append(row.asDict(recursive=True))
                if len(buffer) >= chunk_rows:
                    flush()
            if buffer:
                flush()
        finally:
            out.close()
        if index == 0:
            out.discard()
            raise InputError(f"{input_path}: no articles found")
        out.finish()
    seconds = time.perf_counter() - t0
    return {"rows": out.state["rows"], "errors": out.state["errors"], "output": str(output_path),
            "model": f"{name}/{version}" if name else model_uri, "engine": "spark", "seconds": round(seconds, 2)}
