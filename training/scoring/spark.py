"""Scoring with Spark (`tpc score --engine spark`, extra `spark`): the same pyfunc through `mlflow.pyfunc.spark_udf`.

`score_dataframe` is the piece for data that lives on a cluster (Spark DataFrame in, Spark DataFrame out, write it
with Spark). `scored_chunks` is the command line's engine: the input is read by `readers`, as for the local engine
(the same chunks, ids, row errors and locations), each chunk is scored by `spark_udf` in Spark's Python workers, and
the rows go through the same `frames` and `sink`, so both engines write the same rows and `--resume` works for both.
"""

from __future__ import annotations

import contextlib
import os
import sys
import tempfile
import warnings
from collections.abc import Iterable, Iterator
from pathlib import Path

from training.bundle import MAX_ARTICLE_CHARS
from training.scoring.errors import InputError, ScoringError
from training.scoring.frames import Scored, encode, finish_frame, model_input
from training.scoring.model import WorkerSpec
from training.scoring.schema import DOUBLE, OutputSchema

ROW = "_tpc_row"


def log_path() -> Path:
    """Where Spark's own output goes (JVM log lines and warnings, the stderr of its Python workers)."""
    return Path(tempfile.gettempdir()) / f"tpc-spark-{os.getpid()}.log"


@contextlib.contextmanager
def _process_output_to(path: Path):
    """Send this process's stdout and stderr file descriptors to `path` while Spark starts its JVM: the JVM (and
    the Python workers it starts later) inherit them, so their chatter lands in the log, not on the console."""
    sys.stdout.flush()
    sys.stderr.flush()
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    saved = (os.dup(1), os.dup(2))
    try:
        os.dup2(fd, 1)
        os.dup2(fd, 2)
        yield
    finally:
        sys.stdout.flush()
        sys.stderr.flush()
        os.dup2(saved[0], 1)
        os.dup2(saved[1], 2)
        for f in (fd, *saved):
            os.close(f)


def spark_session(master: str = "local[2]", app: str = "tpc-score"):
    """A Spark session whose local Python workers run this interpreter and whose JVM output goes to `log_path()`."""
    try:
        from pyspark.sql import SparkSession
    except ImportError:
        raise InputError("--engine spark needs pyspark: pip install 'turkey-policy-classifiers[spark]'") from None
    if master.startswith("local"):
        # Spark starts its Python workers with PYSPARK_PYTHON, by default the `python3` found on PATH: without the
        # virtual environment activated that is another interpreter, without this project's packages.
        os.environ["PYSPARK_PYTHON"] = sys.executable
        os.environ["PYSPARK_DRIVER_PYTHON"] = sys.executable
    warnings.filterwarnings("ignore", message="PySpark does not yet fully support pandas", category=FutureWarning)
    builder = (SparkSession.builder.master(master).appName(app)
               .config("spark.ui.enabled", "false").config("spark.ui.showConsoleProgress", "false")
               .config("spark.driver.bindAddress", "127.0.0.1").config("spark.driver.host", "127.0.0.1")
               .config("spark.sql.shuffle.partitions", "2")
               .config("spark.sql.execution.arrow.pyspark.enabled", "true"))
    with _process_output_to(log_path()):
        return builder.getOrCreate()


def model_columns(model_uri: str) -> list[str]:
    """The model's output columns, from its signature (the bundle's `output_columns` at log time)."""
    import mlflow

    sig = mlflow.models.get_model_info(model_uri).signature
    if sig is None or sig.outputs is None:
        raise InputError(f"{model_uri}: the model has no output signature; the Spark engine needs one")
    return sig.outputs.input_names()


def result_type(columns: list[str]):
    """Spark struct matching the output schema (the same column types as the Parquet output)."""
    return OutputSchema.of(columns).spark()


def _udf(spark, model_uri: str, columns: list[str], max_chars: int):
    import logging

    import mlflow

    # env_manager="local" is the point here (the workers run this environment): MLflow's advice against it, and
    # its backend selection notes, are not for the console.
    quiet = [logging.getLogger(n) for n in ("mlflow.pyfunc", "mlflow.models.flavor_backend_registry")]
    levels = [q.level for q in quiet]
    for q in quiet:
        q.setLevel(logging.ERROR)
    try:
        return mlflow.pyfunc.spark_udf(spark, model_uri, result_type=result_type(columns), env_manager="local",
                                       params={"max_chars": int(max_chars)})
    finally:
        for q, level in zip(quiet, levels):
            q.setLevel(level)


def _apply(df, udf, columns: list[str]):
    """`df` (text, optional id, any ROW column) -> ROW (when present) and the output columns."""
    from pyspark.sql import functions as F

    id_col = F.col("id").cast("string") if "id" in df.columns else F.lit(None).cast("string")
    # The schema wants strings: a null text is scored as empty and comes back as an error row.
    scored = df.withColumn("_out", udf(F.struct(F.coalesce(F.col("text").cast("string"), F.lit("")).alias("text"),
                                                F.coalesce(id_col, F.lit("")).alias("id"))))
    keep = [c for c in df.columns if c == ROW]
    schema = OutputSchema.of(columns)
    return scored.select(*keep, *[_restore_nulls(c, schema) for c in columns])


def score_dataframe(spark, df, model_uri: str, model_name: str = "", model_version: str = "",
                    max_chars: int = MAX_ARTICLE_CHARS, columns: list[str] | None = None):
    """A Spark DataFrame with `text` (and optional `id`) -> one row per input row with the output schema."""
    from pyspark.sql import functions as F

    columns = columns or model_columns(model_uri)
    scored = _apply(df, _udf(spark, model_uri, columns, max_chars), columns)
    return scored.select(*scored.columns, F.lit(model_name).alias("model_name"),
                         F.lit(model_version).alias("model_version"))


def _restore_nulls(c: str, schema: OutputSchema):
    """spark_udf casts a string column holding some None to str ("None"/"nan") and a float one to NaN. Put the
    nulls back from what the schema guarantees: an error row has no passages and a scored row has some; stance and
    evidence exist exactly for decided topics of a scored row; a date or title is never "nan"/"None" (a title has
    at least three words)."""
    from pyspark.sql import functions as F

    value, n = F.col("_out")[c], F.col("_out")["n_passages"]
    if schema.kinds[c] == DOUBLE:
        return F.when(F.isnan(value), F.lit(None)).otherwise(value).alias(c)
    if c == "error":
        return F.when(n > 0, F.lit(None).cast("string")).otherwise(value).alias(c)
    if c.endswith(("_stance", "_evidence")) and c.rsplit("_", 1)[0] in schema.labels:
        decided = F.col("_out")[c.rsplit("_", 1)[0]] & (n > 0)
        return F.when(decided, value).otherwise(F.lit(None).cast("string")).alias(c)
    if c in ("title", "date"):
        return F.when(value.isin("nan", "None", "<NA>"), F.lit(None).cast("string")).otherwise(value).alias(c)
    return value.alias(c)


def scored_chunks(chunks: Iterable, skip: int, spec: WorkerSpec, master: str = "local[2]") -> Iterator[Scored]:
    """The Spark engine of `tpc score`: the chunks from index `skip` on, scored in input order like the local
    engine's, each by `spark_udf` in Spark's Python workers."""
    import pandas as pd

    local_model, model_name, model_version, max_chars, fmt = spec
    spark = spark_session(master)
    columns = model_columns(local_model)
    udf = _udf(spark, local_model, columns, max_chars)
    for i, chunk in enumerate(chunks):
        if i < skip:
            continue
        payload = chunk.payload()
        frame = model_input(payload)
        frame.insert(0, ROW, range(len(frame)))
        try:
            sdf = spark.createDataFrame(frame, schema=f"{ROW} long, id string, text string")
            rows = _apply(sdf, udf, columns).orderBy(ROW).collect()
        except Exception as exc:  # Py4JJavaError, PythonException...: one paragraph, the details are in the log
            first = " ".join(str(exc).strip().splitlines()[:1])[:300]
            raise ScoringError(f"Spark failed on chunk {i} ({type(exc).__name__}: {first}); Spark's log: "
                               f"{log_path()}; committed chunks are kept: rerun with --resume") from None
        out = pd.DataFrame({c: [r[c] for r in rows] for c in columns}, columns=columns)
        cols, values = finish_frame(out, payload, model_name, model_version)
        yield Scored(i, *encode(cols, values, fmt))
