"""Batch scoring: read articles in chunks, score them through the pyfunc, write one output row per input row."""

from __future__ import annotations

import json
import sys
from collections.abc import Iterator
from pathlib import Path

import pandas as pd


class InputError(ValueError):
    """An input that cannot be read at all (file-level); row-level problems become error records instead."""


def _jsonl_chunks(path: Path, chunk_size: int) -> Iterator[pd.DataFrame]:
    rows = []
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                rows.append({"id": None, "text": None, "_error": f"{path.name}:{n}: invalid UTF-8 ({exc.reason})"})
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line)
            except json.JSONDecodeError as exc:
                rows.append({"id": None, "text": None, "_error": f"{path.name}:{n}: invalid JSON ({exc.msg})"})
            else:
                if isinstance(obj, dict):
                    rows.append({"id": obj.get("id"), "text": obj.get("text"), "_error": None})
                else:
                    rows.append({"id": None, "text": None, "_error": f"{path.name}:{n}: expected a JSON object"})
            if len(rows) >= chunk_size:
                yield pd.DataFrame(rows)
                rows = []
    if rows:
        yield pd.DataFrame(rows)


def _frame_chunks(df_iter, path: Path) -> Iterator[pd.DataFrame]:
    for df in df_iter:
        if "text" not in df.columns:
            raise InputError(f"{path}: no `text` column (columns: {list(df.columns)})")
        out = pd.DataFrame({"id": df["id"] if "id" in df.columns else None, "text": df["text"]})
        out["_error"] = None
        yield out.reset_index(drop=True)


def read_chunks(path: str | Path, chunk_size: int = 1000) -> Iterator[pd.DataFrame]:
    """Chunks of (id, text, _error) from a JSONL, CSV or Parquet file, or a folder of .txt files."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: input not found")
    if path.is_dir():
        files = sorted(p for p in path.iterdir() if p.suffix == ".txt")
        if not files:
            raise InputError(f"{path}: folder has no .txt files")
        for start in range(0, len(files), chunk_size):
            rows = []
            for f in files[start:start + chunk_size]:
                try:
                    rows.append({"id": f.stem, "text": f.read_bytes().decode("utf-8"), "_error": None})
                except (OSError, UnicodeDecodeError) as exc:
                    rows.append({"id": f.stem, "text": None, "_error": f"{f.name}: unreadable ({exc})"})
            yield pd.DataFrame(rows)
        return
    suffix = path.suffix.lower()
    if suffix in (".jsonl", ".json", ".ndjson"):
        yield from _jsonl_chunks(path, chunk_size)
    elif suffix == ".csv":
        yield from _frame_chunks(pd.read_csv(path, chunksize=chunk_size, dtype={"id": str}), path)
    elif suffix == ".parquet":
        import pyarrow.parquet as pq

        pf = pq.ParquetFile(path)
        yield from _frame_chunks((b.to_pandas() for b in pf.iter_batches(batch_size=chunk_size)), path)
    else:
        raise InputError(f"{path}: unsupported input type {suffix!r}; use .jsonl, .csv, .parquet or a folder of .txt")


def score_chunk(model, chunk: pd.DataFrame, model_name: str, model_version: str, max_chars: int = 200_000) -> pd.DataFrame:
    out = model.predict(chunk[["id", "text"]].astype({"id": object}), params={"max_chars": max_chars})
    bad = chunk["_error"].notna().to_numpy()
    if bad.any():
        out.loc[bad, "error"] = chunk.loc[bad, "_error"].to_numpy()
    out.insert(len(out.columns), "model_name", model_name)
    out.insert(len(out.columns), "model_version", model_version)
    return out


def resolve_version(model_uri: str) -> tuple[str, str]:
    """(name, version) of a registry URI such as models:/turkey-policy@champion; ('', path) otherwise."""
    if model_uri.startswith("models:/"):
        from mlflow import MlflowClient

        ref = model_uri[len("models:/"):]
        client = MlflowClient()
        if "@" in ref:
            name, alias = ref.split("@", 1)
            return name, str(client.get_model_version_by_alias(name, alias).version)
        name, _, version = ref.partition("/")
        return name, version
    return "", model_uri


def score(input_path, output_path, model_uri: str, chunk_size: int = 1000, progress: bool | None = None,
          workers: int = 1, resume: bool = False, engine: str = "local", max_chars: int = 200_000) -> dict:
    import mlflow
    from tqdm import tqdm

    from training.tracking import tracking_uri

    mlflow.set_tracking_uri(tracking_uri())
    mlflow.set_registry_uri(tracking_uri())
    output_path = Path(output_path)
    if output_path.resolve() == Path(input_path).resolve():
        raise InputError(f"{output_path}: output would overwrite the input")
    name, version = resolve_version(model_uri)
    model = mlflow.pyfunc.load_model(model_uri if not name else f"models:/{name}/{version}")
    parquet = output_path.suffix.lower() == ".parquet"
    tmp = output_path.with_name(output_path.name + ".partial")
    n_rows = n_errors = 0
    bar = tqdm(unit=" articles", disable=not (sys.stderr.isatty() if progress is None else progress))
    writer = None
    with (open(tmp, "w", encoding="utf-8") if not parquet else open(tmp, "wb")) as fh:
        for chunk in read_chunks(input_path, chunk_size):
            out = score_chunk(model, chunk, name, version, max_chars)
            n_rows += len(out)
            n_errors += int(out["error"].notna().sum())
            if parquet:
                import pyarrow as pa
                import pyarrow.parquet as pq

                table = pa.Table.from_pandas(out, preserve_index=False)
                writer = writer or pq.ParquetWriter(fh, table.schema)
                writer.write_table(table.cast(writer.schema))
            else:
                fh.write(out.to_json(orient="records", lines=True, force_ascii=False))
            bar.update(len(out))
        if writer is not None:
            writer.close()
    bar.close()
    tmp.replace(output_path)
    return {"rows": n_rows, "errors": n_errors, "output": str(output_path), "model": f"{name}/{version}"}
