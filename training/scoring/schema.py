"""The types of the output columns, so both writers and both engines agree: Arrow (the Parquet output) and plain
Python values (what the JSONL writer and the Parquet writer are given)."""

from __future__ import annotations

import math


def arrow_type(column: str, columns: list[str]):
    import pyarrow as pa

    if column == "topics":
        return pa.list_(pa.string())
    if column == "n_passages":
        return pa.int64()
    if column == "truncated" or f"{column}_prob" in columns:
        return pa.bool_()
    if column.endswith(("_prob", "_favor", "_against", "_none")):
        return pa.float64()
    return pa.string()


def output_schema(columns: list[str]):
    import pyarrow as pa

    return pa.schema([(c, arrow_type(c, columns)) for c in columns])


def plain_values(columns: list[str], frame) -> dict[str, list]:
    """Column -> plain Python values (NaN -> None, numpy -> Python) so every writer sees the same values."""
    out = {}
    for c in columns:
        values = frame[c].tolist()
        kind = arrow_type(c, columns)
        if str(kind) == "double":
            values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else float(v) for v in values]
        elif str(kind) == "int64":
            values = [int(v) for v in values]
        elif str(kind) == "bool":
            values = [bool(v) for v in values]
        elif c == "topics":
            values = [list(v) if v is not None else [] for v in values]
        else:
            values = [None if v is None or (isinstance(v, float) and math.isnan(v)) else str(v) for v in values]
        out[c] = values
    return out
