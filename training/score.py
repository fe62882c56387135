"""Batch scoring: stream articles in chunks, score them in worker processes, write one output row per input row,
in input order, resumable after a kill.

Output is built in ``OUTPUT.partial`` (a file for JSONL, a folder of one Parquet file per chunk for Parquet) with a
sidecar ``OUTPUT.progress.json`` committed after each chunk is on disk; the finished output is renamed into place,
so a file named OUTPUT is always complete. Row-level problems become error records; only an input that cannot be
read at all raises `InputError`.
"""

from __future__ import annotations

import codecs
import csv
import hashlib
import json
import math
import os
import shutil
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from training.bundle import MAX_ARTICLE_CHARS

EXTRA_COLUMNS = ["model_name", "model_version"]
JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
# A chunk also closes once its texts reach this many characters, so a file of huge articles keeps memory bounded.
CHUNK_CHAR_BUDGET = 20_000_000
MAX_CHUNK_ROWS = 2000  # larger chunks sent to workers multiply peak memory (PITFALLS: 50k docs -> 3.1 GB)
PROGRESS_FORMAT = 1


class InputError(ValueError):
    """An input (or output path) that cannot be used at all: file-level; row problems become error records."""


class ScoringError(RuntimeError):
    """Scoring stopped part-way (a worker died); progress so far is kept for --resume."""


# -- reading ---------------------------------------------------------------------------------------------------
@dataclass
class Chunk:
    ids: list = field(default_factory=list)
    texts: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    wheres: list = field(default_factory=list)
    chars: int = 0

    def __len__(self) -> int:
        return len(self.texts)

    def payload(self) -> tuple:
        return self.ids, self.texts, self.errors, self.wheres


def _has_surrogates(s: str) -> bool:
    try:
        s.encode("utf-8")
    except UnicodeEncodeError:
        return True
    return False


class _Rows:
    """Validates raw (id, text) pairs into chunk rows: location in every error, fallback ids, duplicates."""

    def __init__(self, max_chars: int):
        self.max_chars = max_chars
        # 8-byte digests, not the ids themselves: duplicate detection costs ~60 bytes per unique id.
        self.seen: set[int] = set()

    def make(self, raw_id, text, error: str | None, where: str) -> tuple:
        if error is None:
            if raw_id is None or (isinstance(raw_id, float) and math.isnan(raw_id)) or raw_id == "":
                raw_id = where  # position is the only stable key a row without id has
            elif isinstance(raw_id, bool) or not isinstance(raw_id, (str, int)):
                error = f"`id` must be a string or an integer, got {type(raw_id).__name__}"
            if error is None and _has_surrogates(str(raw_id)):
                error, raw_id = "`id` is not valid UTF-8", None
        rid = None if raw_id is None else str(raw_id)
        if error is None:
            if text is None:
                error = "`text` is missing"
            elif isinstance(text, bytes):
                try:
                    text = text.decode("utf-8")
                except UnicodeDecodeError as exc:
                    error = f"`text` is not valid UTF-8 (byte {exc.start})"
            elif not isinstance(text, str):
                error = f"`text` is {type(text).__name__}, expected a string"
            if error is None and _has_surrogates(text):
                error = "`text` is not valid UTF-8 (undecodable bytes or lone surrogates)"
        if error is None:
            digest = int.from_bytes(hashlib.blake2b(rid.encode("utf-8"), digest_size=8).digest(), "little")
            if digest in self.seen:
                error = f"duplicate id {rid[:200]!r}: an earlier row has the same id"
            else:
                self.seen.add(digest)
        if error is not None:
            return rid, None, f"{where}: {error}", where
        # The model cuts at max_chars and flags `truncated`; one char more is enough for it to see the cut.
        return rid, text[: self.max_chars + 1], None, where


def _jsonl_raw(path: Path) -> Iterator[tuple]:
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            where = f"{path.name}:{n}"
            try:
                line = raw.decode("utf-8")
            except UnicodeDecodeError as exc:
                yield None, None, f"invalid UTF-8 at byte {exc.start} of the line", where
                continue
            if not line.strip():
                continue
            try:
                obj = json.loads(line, strict=False)  # strict=False: raw tabs/NULs inside strings are common
            except json.JSONDecodeError as exc:
                yield None, None, f"invalid JSON ({exc.msg} at column {exc.colno})", where
                continue
            if not isinstance(obj, dict):
                yield None, None, f"expected a JSON object, got {type(obj).__name__}", where
                continue
            if "text" not in obj:
                yield obj.get("id"), None, None, where
            else:
                yield obj.get("id"), obj["text"], None, where


def _csv_raw(path: Path) -> Iterator[tuple]:
    csv.field_size_limit(2**31 - 1)  # the default (128 KB) would fail long articles
    with path.open("r", encoding="utf-8", errors="surrogateescape", newline="") as fh:
        reader = csv.reader(fh, strict=True)
        try:
            header = next(reader, None)
            if header is None:
                raise InputError(f"{path}: empty CSV file (no header line)")
            header = [h.lstrip("\ufeff").strip() for h in header]
            if "text" not in header:
                raise InputError(f"{path}:1: the header has no `text` column (columns: {header})")
            i_text, i_id = header.index("text"), header.index("id") if "id" in header else None
            start = reader.line_num + 1
            for rec in reader:
                where = f"{path.name}:{start}"
                start = reader.line_num + 1
                if not rec or (len(rec) == 1 and not rec[0].strip()):
                    continue
                if len(rec) != len(header):
                    yield None, None, f"expected {len(header)} fields, got {len(rec)}", where
                    continue
                yield (rec[i_id] if i_id is not None else None), rec[i_text], None, where
        except csv.Error as exc:
            raise InputError(f"{path}:{reader.line_num}: malformed CSV ({exc}); fix the quoting there") from None


def _parquet_raw(path: Path, batch_size: int) -> Iterator[tuple]:
    import pyarrow as pa
    import pyarrow.parquet as pq

    try:
        pf = pq.ParquetFile(path)
    except (pa.ArrowInvalid, OSError) as exc:
        raise InputError(f"{path}: not a readable Parquet file ({exc})") from None
    names = pf.schema_arrow.names
    if "text" not in names:
        raise InputError(f"{path}: wrong schema: no `text` column (columns: {names})")
    cols = ["text"] + (["id"] if "id" in names else [])
    n = 0
    for batch in pf.iter_batches(batch_size=batch_size, columns=cols):
        texts = batch.column("text").to_pylist()
        ids = batch.column("id").to_pylist() if "id" in cols else [None] * len(texts)
        for rid, text in zip(ids, texts):
            yield rid, text, None, f"{path.name}:row {n}"
            n += 1


def _folder_raw(path: Path, max_chars: int) -> Iterator[tuple]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".txt")
    if not files:
        raise InputError(f"{path}: folder has no .txt files")
    # At most 4 bytes per character: enough to know whether the text is longer than max_chars.
    limit = 4 * (max_chars + 1)
    for f in files:
        where = f.name
        try:
            if not f.is_file():  # a FIFO or device would block, a folder cannot be read
                yield f.stem, None, "not a regular file", where
                continue
            with f.open("rb") as fh:
                data = fh.read(limit)
        except OSError as exc:
            yield f.stem, None, f"unreadable ({exc.strerror or exc})", where
            continue
        try:
            text = codecs.getincrementaldecoder("utf-8")().decode(data, final=len(data) < limit)
        except UnicodeDecodeError as exc:
            yield f.stem, None, f"not valid UTF-8 (byte {exc.start})", where
            continue
        yield f.stem, text, None, where


def input_kind(path: Path) -> str:
    if path.is_dir():
        return "folder"
    suffix = path.suffix.lower()
    if suffix in JSONL_SUFFIXES:
        return "jsonl"
    if suffix in (".csv", ".parquet"):
        return suffix[1:]
    raise InputError(f"{path}: unsupported input type {suffix!r}; use .jsonl, .csv, .parquet or a folder of .txt")


def read_chunks(path: str | Path, chunk_size: int = 500, max_chars: int = MAX_ARTICLE_CHARS) -> Iterator[Chunk]:
    """Chunks of validated rows from a JSONL, CSV or Parquet file or a folder of .txt files, in input order.

    Chunk boundaries depend only on the input and the two parameters, which is what makes resume exact."""
    path = Path(path)
    if not path.exists():
        raise InputError(f"{path}: input not found")
    kind = input_kind(path)
    if kind != "folder" and path.stat().st_size == 0:
        raise InputError(f"{path}: empty file, nothing to score")
    raw = {"jsonl": lambda: _jsonl_raw(path), "csv": lambda: _csv_raw(path),
           "parquet": lambda: _parquet_raw(path, chunk_size), "folder": lambda: _folder_raw(path, max_chars)}[kind]()
    rows = _Rows(max_chars)
    chunk, total = Chunk(), 0
    for item in raw:
        rid, text, error, where = rows.make(*item)
        chunk.ids.append(rid)
        chunk.texts.append(text)
        chunk.errors.append(error)
        chunk.wheres.append(where)
        chunk.chars += len(text) if text else 0
        if len(chunk) >= chunk_size or chunk.chars >= CHUNK_CHAR_BUDGET:
            total += len(chunk)
            yield chunk
            chunk = Chunk()
    if len(chunk):
        total += len(chunk)
        yield chunk
    if total == 0:
        raise InputError(f"{path}: no articles found (only blank lines or a header)")


# -- scoring ---------------------------------------------------------------------------------------------------
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


def _plain(columns: list[str], frame) -> dict[str, list]:
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


def score_frame(model, payload: tuple, model_name: str, model_version: str, max_chars: int):
    """One chunk through the pyfunc -> (output columns, plain values); reader errors and locations kept."""
    import pandas as pd

    ids, texts, errors, wheres = payload
    # Rows the reader rejected go through as empty text (the schema wants strings); their error replaces the model's.
    frame = pd.DataFrame({"id": ["" if i is None else i for i in ids], "text": ["" if t is None else t for t in texts]})
    out = model.predict(frame, params={"max_chars": max_chars})
    if len(out) != len(frame):
        raise ScoringError(f"the model returned {len(out)} rows for {len(frame)} inputs")
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
    columns = list(out.columns)
    return columns, _plain(columns, out)


def jsonl_bytes(columns: list[str], values: dict[str, list]) -> bytes:
    n = len(values[columns[0]]) if columns else 0
    lines = []
    for i in range(n):
        lines.append(json.dumps({c: values[c][i] for c in columns}, ensure_ascii=False, allow_nan=False))
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


# Worker processes: each loads the model once, then scores the chunks it is sent.
_WORKER: dict = {}


def _init_worker(model_path: str, model_name: str, model_version: str, max_chars: int, fmt: str) -> None:
    import mlflow

    _WORKER.update(model=mlflow.pyfunc.load_model(model_path), name=model_name, version=model_version,
                   max_chars=max_chars, fmt=fmt)


def _work(payload: tuple):
    columns, values = score_frame(_WORKER["model"], payload, _WORKER["name"], _WORKER["version"],
                                  _WORKER["max_chars"])
    return _encode(columns, values, _WORKER["fmt"])


def _encode(columns, values, fmt: str):
    n = len(values["id"])
    n_errors = sum(e is not None for e in values["error"])
    if fmt == "jsonl":
        return jsonl_bytes(columns, values), n, n_errors, columns
    import pyarrow as pa

    schema = output_schema(columns)
    return pa.table([pa.array(values[c], type=schema.field(c).type) for c in columns], schema=schema), n, n_errors, columns


def _scored(chunks: Iterable[Chunk], skip: int, workers: int, init_args: tuple) -> Iterator[tuple]:
    """(chunk index, encoded output, rows, errors, columns) in input order; at most 2*workers chunks in flight."""
    if workers <= 1:
        _init_worker(*init_args)
        for i, chunk in enumerate(chunks):
            if i >= skip:
                yield (i, *_work(chunk.payload()))
        return
    # spawn, not fork: the parent holds MLflow/SQLAlchemy state that must not be shared with children.
    # One BLAS thread per worker, set in the environment the children start with (numpy reads it at import,
    # before any initializer runs): K workers x the default threads per core spin against each other.
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: os.environ.get(k) or "1" for k in _THREAD_VARS})
    try:
        yield from _pooled(chunks, skip, workers, init_args)
    finally:
        os.environ.update({k: v for k, v in saved.items() if v is not None})
        for k in (k for k, v in saved.items() if v is None):
            os.environ.pop(k, None)


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _pooled(chunks: Iterable[Chunk], skip: int, workers: int, init_args: tuple) -> Iterator[tuple]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_worker,
                             initargs=init_args) as pool:
        window: deque = deque()
        try:
            for i, chunk in enumerate(chunks):
                if i < skip:
                    continue
                window.append((i, pool.submit(_work, chunk.payload())))
                if len(window) >= 2 * workers:
                    j, fut = window.popleft()
                    yield (j, *fut.result())
            while window:
                j, fut = window.popleft()
                yield (j, *fut.result())
        except BrokenProcessPool as exc:
            raise ScoringError(f"a scoring worker died ({exc}); progress is kept: rerun with --resume "
                               "(fewer --workers or a smaller --chunk-size use less memory)") from None


# -- progress sidecar and output ---------------------------------------------------------------------------------
def _fsync_dir(path: Path) -> None:
    try:
        fd = os.open(path, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def _write_atomic(path: Path, data: bytes) -> None:
    tmp = path.with_name(path.name + ".tmp")
    with open(tmp, "wb") as fh:
        fh.write(data)
        fh.flush()
        os.fsync(fh.fileno())
    os.replace(tmp, path)
    _fsync_dir(path.parent)


def input_fingerprint(path: Path) -> dict:
    """Enough to tell that a resumed run reads the same input: size, mtime and digests of its ends."""
    path = Path(path)
    if path.is_dir():
        h = hashlib.sha256()
        n = size = 0
        for f in sorted(p for p in path.iterdir() if p.suffix.lower() == ".txt"):
            try:
                st = f.stat()
                entry = f"{f.name}\t{st.st_size}\t{st.st_mtime_ns}\n"
                size += st.st_size
            except OSError:
                entry = f"{f.name}\t?\n"
            h.update(entry.encode("utf-8", "surrogateescape"))
            n += 1
        return {"path": str(path.resolve()), "kind": "folder", "files": n, "size": size, "digest": h.hexdigest()}
    st = path.stat()
    h = hashlib.sha256()
    with path.open("rb") as fh:
        h.update(fh.read(1 << 20))
        if st.st_size > 2 << 20:
            fh.seek(st.st_size - (1 << 20))
            h.update(fh.read(1 << 20))
    return {"path": str(path.resolve()), "kind": input_kind(path), "size": st.st_size, "mtime_ns": st.st_mtime_ns,
            "digest": h.hexdigest()}


def resolve_version(model_uri: str) -> tuple[str, str]:
    """(name, version) of a registry URI such as models:/turkey-policy@champion; ('', uri) otherwise."""
    if model_uri.startswith("models:/"):
        from mlflow import MlflowClient
        from mlflow.exceptions import MlflowException

        ref = model_uri[len("models:/"):]
        client = MlflowClient()
        try:
            if "@" in ref:
                name, alias = ref.split("@", 1)
                return name, str(client.get_model_version_by_alias(name, alias).version)
            name, _, version = ref.partition("/")
            client.get_model_version(name, version)
            return name, version
        except MlflowException as exc:
            raise InputError(f"--model {model_uri}: not found in the registry at {_tracking()} "
                             f"({exc.message.splitlines()[0]})") from None
    return "", model_uri


def _tracking() -> str:
    from training.tracking import tracking_uri

    return tracking_uri()


def _check_paths(input_path: Path, output_path: Path) -> str:
    if output_path.suffix.lower() not in (".jsonl", ".parquet"):
        raise InputError(f"{output_path}: output must end in .jsonl or .parquet")
    if output_path.is_dir():
        raise InputError(f"{output_path}: output is a folder; give a file name")
    src, dst = input_path.resolve(), output_path.resolve()
    if src == dst:
        raise InputError(f"{output_path}: output would overwrite the input")
    if input_path.is_dir() and src in dst.parents:
        raise InputError(f"{output_path}: output must not be inside the input folder {input_path}")
    if not output_path.parent.is_dir():
        raise InputError(f"{output_path}: folder {output_path.parent} does not exist")
    return output_path.suffix.lower()[1:]


class _Output:
    """OUTPUT.partial + OUTPUT.progress.json; `commit` after each chunk, `finish` renames into place."""

    def __init__(self, output: Path, fmt: str, identity: dict):
        self.output, self.fmt, self.identity = output, fmt, identity
        self.partial = output.with_name(output.name + ".partial")
        self.sidecar = output.with_name(output.name + ".progress.json")
        self.state = {"chunks": 0, "rows": 0, "errors": 0, "bytes": 0, "columns": None}
        self.fh = None

    def exists(self) -> bool:
        return self.partial.exists() or self.sidecar.exists()

    def discard(self) -> None:
        if self.partial.is_dir():
            shutil.rmtree(self.partial)
        else:
            self.partial.unlink(missing_ok=True)
        self.sidecar.unlink(missing_ok=True)

    def start(self) -> None:
        self.discard()
        if self.fmt == "parquet":
            self.partial.mkdir()
        else:
            self.partial.touch()
        self._commit()

    def resume(self) -> dict:
        try:
            saved = json.loads(self.sidecar.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise InputError(f"{self.sidecar}: progress file unreadable ({exc}); delete {self.partial} and "
                             f"{self.sidecar} to start over") from None
        if not self.partial.exists() and saved.get("state", {}).get("done") and self.output.exists():
            return saved["state"]  # killed between the final rename and removing the progress file
        if not self.partial.exists():
            raise InputError(f"{self.partial} is missing but {self.sidecar} exists; delete the progress file to "
                             "start over")
        mismatched = [k for k in self.identity if saved.get("identity", {}).get(k) != self.identity[k]]
        if mismatched:
            lines = [f"  {k}: interrupted run {saved.get('identity', {}).get(k)!r}, now {self.identity[k]!r}"
                     for k in mismatched]
            raise InputError(f"cannot resume {self.output}: the interrupted run differs in {', '.join(mismatched)}\n"
                             + "\n".join(lines) + f"\nrerun without --resume after deleting {self.partial} and "
                             f"{self.sidecar}, or resume with the same input, model and options")
        self.state = saved["state"]
        if self.fmt == "jsonl":
            # Bytes after the last commit belong to a chunk that was never committed: cut them.
            with open(self.partial, "r+b") as fh:
                fh.truncate(self.state["bytes"])
                fh.flush()
                os.fsync(fh.fileno())
        else:
            for p in self.partial.iterdir():
                if not (p.name.startswith("part-") and p.suffix == ".parquet") or int(p.stem[5:]) >= self.state["chunks"]:
                    p.unlink()
        return self.state

    def _commit(self) -> None:
        data = {"format": PROGRESS_FORMAT, "identity": self.identity, "state": self.state}
        _write_atomic(self.sidecar, json.dumps(data, indent=1).encode("utf-8"))

    def write(self, index: int, encoded, rows: int, errors: int, columns: list[str]) -> None:
        if index != self.state["chunks"]:
            raise ScoringError(f"internal: chunk {index} arrived, expected {self.state['chunks']}")
        if self.fmt == "jsonl":
            if self.fh is None:
                self.fh = open(self.partial, "ab")
            self.fh.write(encoded)
            self.fh.flush()
            os.fsync(self.fh.fileno())
            self.state["bytes"] = self.fh.tell()
        else:
            import pyarrow.parquet as pq

            part = self.partial / f"part-{index:08d}.parquet"
            tmp = part.with_suffix(".tmp")
            pq.write_table(encoded, tmp)
            with open(tmp, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(tmp, part)
            _fsync_dir(self.partial)
        self.state["chunks"] += 1
        self.state["rows"] += rows
        self.state["errors"] += errors
        self.state["columns"] = columns
        self._commit()

    def finish(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None
        if not self.state.get("done"):
            self.state["done"] = True
            self._commit()
        # Also reached on resume of a run killed during this step: then the partial may or may not be renamed yet.
        if self.fmt == "jsonl" and self.partial.exists():
            os.replace(self.partial, self.output)
        elif self.fmt == "parquet" and self.partial.exists():
            import pyarrow.parquet as pq

            assembled = self.partial / "assembled.tmp"
            writer = None
            for k in range(self.state["chunks"]):
                table = pq.read_table(self.partial / f"part-{k:08d}.parquet")
                writer = writer or pq.ParquetWriter(assembled, table.schema)
                writer.write_table(table)
            if writer is None:
                raise ScoringError("no rows were scored")
            writer.close()
            with open(assembled, "rb") as fh:
                os.fsync(fh.fileno())
            os.replace(assembled, self.output)
            shutil.rmtree(self.partial)
        _fsync_dir(self.output.parent)
        self.sidecar.unlink(missing_ok=True)

    def close(self) -> None:
        if self.fh is not None:
            self.fh.close()
            self.fh = None


def download_model(model_uri: str, name: str, version: str, dst: str) -> str:
    import mlflow

    uri = f"models:/{name}/{version}" if name else model_uri
    if Path(uri).exists():
        return uri
    return mlflow.artifacts.download_artifacts(artifact_uri=uri, dst_path=dst)


def model_identity(local_model: str, name: str, version: str, model_uri: str) -> dict:
    from mlflow.models import Model

    meta = Model.load(local_model)
    return {"model": f"{name}/{version}" if name else model_uri, "model_uuid": meta.model_uuid}


def score(input_path, output_path, model_uri: str, chunk_size: int = 500, progress: bool | None = None,
          workers: int = 1, resume: bool = False, engine: str = "local", max_chars: int = MAX_ARTICLE_CHARS) -> dict:
    """Score `input_path` into `output_path` (.jsonl or .parquet); returns a summary with rows and errors."""
    import mlflow

    if engine == "spark":
        from training.spark import score_spark

        return score_spark(input_path, output_path, model_uri, max_chars=max_chars, resume=resume)
    if engine != "local":
        raise InputError(f"--engine {engine!r}: choose local or spark")
    if not 1 <= chunk_size <= MAX_CHUNK_ROWS:
        raise InputError(f"--chunk-size {chunk_size}: choose 1..{MAX_CHUNK_ROWS}")
    if workers < 1:
        raise InputError(f"--workers {workers}: must be at least 1")
    if max_chars < 1:
        raise InputError(f"--max-chars {max_chars}: must be at least 1")
    t0 = time.perf_counter()
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.exists():
        raise InputError(f"{input_path}: input not found")
    fmt = _check_paths(input_path, output_path)
    input_kind(input_path)
    uri = _tracking()
    mlflow.set_tracking_uri(uri)
    mlflow.set_registry_uri(uri)
    name, version = resolve_version(model_uri)

    with tempfile.TemporaryDirectory(prefix="tpc-model-") as model_dir:
        local_model = download_model(model_uri, name, version, model_dir)
        identity = {"input": input_fingerprint(input_path), **model_identity(local_model, name, version, model_uri),
                    "chunk_size": chunk_size, "max_chars": max_chars, "format": fmt}
        out = _Output(output_path, fmt, identity)
        skip = 0
        resumed_from = 0
        if resume and out.exists():
            skip = out.resume()["chunks"]
            if out.state.get("done"):
                skip = None
            resumed_from = out.state["rows"]
        elif out.exists():
            raise InputError(f"{out.partial} exists from an interrupted run: pass --resume to continue it, or "
                             f"delete it and {out.sidecar} to start over")
        else:
            out.start()
        model_label = version if name else mlflow.models.get_model_info(local_model).run_id or ""
        init_args = (local_model, name or model_uri, model_label, max_chars, fmt)
        from tqdm import tqdm

        bar = tqdm(unit=" articles", initial=out.state["rows"],
                   disable=not (sys.stderr.isatty() if progress is None else progress))
        try:
            try:
                for item in () if skip is None else _scored(read_chunks(input_path, chunk_size, max_chars), skip, workers, init_args):
                    out.write(*item)
                    bar.update(item[2])
            except InputError:
                # A file-level failure part-way: no half output may survive to look like a result.
                out.close()
                out.discard()
                raise
        finally:
            out.close()
            bar.close()
        if out.state["chunks"] == 0:
            out.discard()
            raise InputError(f"{input_path}: no articles found")
        out.finish()
    seconds = time.perf_counter() - t0
    scored = out.state["rows"] - resumed_from
    return {"rows": out.state["rows"], "errors": out.state["errors"], "output": str(output_path),
            "model": f"{name}/{version}" if name else model_uri, "workers": workers, "resumed_rows": resumed_from,
            "seconds": round(seconds, 2), "articles_per_s": round(scored / seconds, 1) if seconds else None}
