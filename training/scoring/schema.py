"""The output schema of a model that scores for `labels`: one `OutputSchema` gives the column list, each column's
type (Arrow for the Parquet output, Spark for the Spark engine, a DDL string for hand-written Spark jobs) and the
null handling (the plain Python values both writers are given). Nothing else spells out a column's type."""

from __future__ import annotations

import math
from collections.abc import Iterable
from dataclasses import dataclass
from functools import cached_property

from training.scoring.errors import ScoringError

# Column kinds, named as Spark DDL names them.
STRING, LONG, BOOLEAN, DOUBLE, STRINGS = "string", "bigint", "boolean", "double", "array<string>"
SCORER_COLUMNS = ("model_name", "model_version")  # added by `tpc score`, not by the model


@dataclass(frozen=True)
class OutputSchema:
    labels: tuple[str, ...]
    scorer: bool = False  # with SCORER_COLUMNS, as `tpc score` writes rows; without, as the model returns them

    def __post_init__(self):
        object.__setattr__(self, "labels", tuple(self.labels))

    @classmethod
    def of(cls, columns: Iterable[str]) -> OutputSchema:
        """The schema whose columns these are, in this order (a model's signature, a frame of scored rows)."""
        columns = list(columns)
        labels = tuple(c[: -len("_prob")] for c in columns if c.endswith("_prob"))
        for schema in (cls(labels), cls(labels, scorer=True)):
            if schema.columns == columns:
                return schema
        raise ScoringError(f"the model's output columns {columns} are not the output schema of labels "
                           f"{list(labels)}; score with a model logged by this project")

    @cached_property
    def kinds(self) -> dict[str, str]:
        kinds = {"id": STRING, "title": STRING, "date": STRING, "n_passages": LONG, "topics": STRINGS}
        for t in self.labels:
            kinds.update({f"{t}_prob": DOUBLE, t: BOOLEAN, f"{t}_stance": STRING, f"{t}_favor": DOUBLE,
                          f"{t}_against": DOUBLE, f"{t}_none": DOUBLE, f"{t}_evidence": STRING})
        kinds.update(truncated=BOOLEAN, error=STRING)
        if self.scorer:
            kinds.update(dict.fromkeys(SCORER_COLUMNS, STRING))
        return kinds

    @property
    def columns(self) -> list[str]:
        return list(self.kinds)

    def arrow(self):
        import pyarrow as pa

        types = {STRING: pa.string(), LONG: pa.int64(), BOOLEAN: pa.bool_(), DOUBLE: pa.float64(),
                 STRINGS: pa.list_(pa.string())}
        return pa.schema([(c, types[k]) for c, k in self.kinds.items()])

    def spark(self):
        from pyspark.sql import types as T

        types = {STRING: T.StringType(), LONG: T.LongType(), BOOLEAN: T.BooleanType(), DOUBLE: T.DoubleType(),
                 STRINGS: T.ArrayType(T.StringType())}
        return T.StructType([T.StructField(c, types[k], True) for c, k in self.kinds.items()])

    def mlflow(self):
        """The model's output signature: every column typed; the ones a row may leave empty (`None`) optional."""
        from mlflow.types.schema import Array, ColSpec, DataType, Schema

        types = {STRING: DataType.string, LONG: DataType.long, BOOLEAN: DataType.boolean, DOUBLE: DataType.double,
                 STRINGS: Array(DataType.string)}
        always = {"id", "n_passages", "topics", "truncated", *self.labels}
        return Schema([ColSpec(types[k], c, required=c in always) for c, k in self.kinds.items()])

    def ddl(self) -> str:
        """The row as a Spark DDL struct, for `mlflow.pyfunc.spark_udf(result_type=...)` without pyspark imported."""
        return "struct<" + ", ".join(f"{c}:{k}" for c, k in self.kinds.items()) + ">"

    def plain(self, frame) -> dict[str, list]:
        """Column -> plain Python values (NaN -> None, numpy -> Python) so every writer sees the same values."""
        return {c: _PLAIN[k](frame[c].tolist()) for c, k in self.kinds.items()}


def _missing(v) -> bool:
    return v is None or (isinstance(v, float) and math.isnan(v))


_PLAIN = {
    DOUBLE: lambda values: [None if _missing(v) else float(v) for v in values],
    LONG: lambda values: [int(v) for v in values],
    BOOLEAN: lambda values: [bool(v) for v in values],
    STRINGS: lambda values: [list(v) if v is not None else [] for v in values],
    STRING: lambda values: [None if _missing(v) else str(v) for v in values],
}
