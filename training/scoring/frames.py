"""Between a chunk and the sink: a chunk as the pyfunc's input frame, the model's rows as output rows (reader
errors and locations kept, the model's name and version added), encoded as JSONL bytes or an Arrow table. Both
engines end here, which is why they write the same rows."""

from __future__ import annotations

import json
from typing import NamedTuple

from training.scoring.errors import ScoringError
from training.scoring.schema import OutputSchema


class Scored(NamedTuple):
    """One chunk scored, as an engine yields it to the sink."""

    index: int  # the chunk's position in the input: the sink refuses one out of order
    encoded: object  # JSONL bytes or an Arrow table, made in the worker so the parent only writes
    rows: int
    errors: int
    columns: list


def model_input(payload: tuple):
    """A chunk as the pyfunc's input frame. Rows the reader rejected go through as empty text (the schema wants
    strings); their error replaces the model's afterwards (`finish_frame`)."""
    import pandas as pd

    ids, texts = payload[0], payload[1]
    return pd.DataFrame({"id": ["" if i is None else i for i in ids], "text": ["" if t is None else t for t in texts]})


def score_frame(model, payload: tuple, model_name: str, model_version: str, max_chars: int):
    """One chunk through the pyfunc -> (output columns, plain values); reader errors and locations kept."""
    out = model.predict(model_input(payload), params={"max_chars": max_chars})
    return finish_frame(out, payload, model_name, model_version)


def finish_frame(out, payload: tuple, model_name: str, model_version: str):
    """The model's rows for one chunk -> (output columns, plain values): the reader's errors replace the model's,
    every error is prefixed with its location, and the model's name and version are added. Both engines end here."""
    ids, texts, errors, wheres = payload
    if len(out) != len(ids):
        raise ScoringError(f"the model returned {len(out)} rows for {len(ids)} inputs")
    out = out.reset_index(drop=True)
    out_errors = out["error"].tolist()
    merged = []
    for reader_error, model_error, where in zip(errors, out_errors, wheres):
        if reader_error is not None:
            merged.append(reader_error)
        elif isinstance(model_error, str):
            merged.append(f"{where}: {model_error}")
        else:
            merged.append(None)
    out["error"] = merged
    out["model_name"] = model_name
    out["model_version"] = model_version
    schema = OutputSchema.of(out.columns)
    return schema.columns, schema.plain(out)


def jsonl_bytes(columns: list[str], values: dict[str, list]) -> bytes:
    n = len(values[columns[0]]) if columns else 0
    lines = []
    for i in range(n):
        lines.append(json.dumps({c: values[c][i] for c in columns}, ensure_ascii=False, allow_nan=False))
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


def encode(columns, values, fmt: str):
    """Output rows -> (JSONL bytes or Arrow table, rows, errors, columns): what a worker sends back to the sink."""
    n = len(values["id"])
    n_errors = sum(e is not None for e in values["error"])
    if fmt == "jsonl":
        return jsonl_bytes(columns, values), n, n_errors, columns
    import pyarrow as pa

    schema = OutputSchema.of(columns).arrow()
    return pa.table([pa.array(values[c], type=schema.field(c).type) for c in columns], schema=schema), n, n_errors, columns
