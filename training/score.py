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
import io
import json
import math
import os
import shutil
import signal
import sys
import tempfile
import time
from collections import deque
from collections.abc import Iterable, Iterator
from dataclasses import dataclass, field
from pathlib import Path

from training.bundle import MAX_ARTICLE_CHARS
from training.modelref import ModelError

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


class Interrupted(Exception):
    """Ctrl-C (SIGINT) while scoring: the workers are stopped, the committed rows are kept for --resume."""

    def __init__(self, rows: int):
        self.rows = rows
        super().__init__(f"interrupted after {rows} rows: rerun the same command with --resume")


PROGRESS_SECONDS = 10.0  # a progress line this often when stderr is not a terminal (TPC_PROGRESS_SECONDS)


# -- reading ---------------------------------------------------------------------------------------------------
@dataclass
class Chunk:
    ids: list = field(default_factory=list)
    texts: list = field(default_factory=list)
    errors: list = field(default_factory=list)
    wheres: list = field(default_factory=list)
    chars: int = 0
    frac: float = 0.0  # share of the input read once this chunk is complete (for the progress estimate)

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


class _Position:
    """How far a reader is through its input, 0..1 (bytes, rows or files, whichever the format knows)."""

    def __init__(self):
        self.frac = 0.0


def _jsonl_raw(path: Path, pos: _Position) -> Iterator[tuple]:
    size, consumed = max(path.stat().st_size, 1), 0
    with path.open("rb") as fh:
        for n, raw in enumerate(fh, 1):
            consumed += len(raw)
            pos.frac = consumed / size
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


def _csv_raw(path: Path, pos: _Position) -> Iterator[tuple]:
    csv.field_size_limit(2**31 - 1)  # the default (128 KB) would fail long articles
    size = max(path.stat().st_size, 1)
    with path.open("rb") as raw, io.TextIOWrapper(raw, encoding="utf-8", errors="surrogateescape", newline="") as fh:
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
                pos.frac = min(raw.tell() / size, 1.0)  # read-ahead: within one buffer of the truth
                if not rec or (len(rec) == 1 and not rec[0].strip()):
                    continue
                if len(rec) != len(header):
                    yield None, None, f"expected {len(header)} fields, got {len(rec)}", where
                    continue
                yield (rec[i_id] if i_id is not None else None), rec[i_text], None, where
        except csv.Error as exc:
            raise InputError(f"{path}:{reader.line_num}: malformed CSV ({exc}); fix the quoting there") from None


def _parquet_raw(path: Path, batch_size: int, pos: _Position) -> Iterator[tuple]:
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
    n, total = 0, max(pf.metadata.num_rows, 1)
    for batch in pf.iter_batches(batch_size=batch_size, columns=cols):
        texts = batch.column("text").to_pylist()
        ids = batch.column("id").to_pylist() if "id" in cols else [None] * len(texts)
        for rid, text in zip(ids, texts):
            pos.frac = (n + 1) / total
            yield rid, text, None, f"{path.name}:row {n}"
            n += 1


def _folder_raw(path: Path, max_chars: int, pos: _Position) -> Iterator[tuple]:
    files = sorted(p for p in path.iterdir() if p.suffix.lower() == ".txt")
    if not files:
        raise InputError(f"{path}: folder has no .txt files")
    # At most 4 bytes per character: enough to know whether the text is longer than max_chars.
    limit = 4 * (max_chars + 1)
    for k, f in enumerate(files, 1):
        pos.frac = k / len(files)
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
    pos = _Position()
    raw = {"jsonl": lambda: _jsonl_raw(path, pos), "csv": lambda: _csv_raw(path, pos),
           "parquet": lambda: _parquet_raw(path, chunk_size, pos),
           "folder": lambda: _folder_raw(path, max_chars, pos)}[kind]()
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
            chunk.frac = pos.frac
            yield chunk
            chunk = Chunk()
    if len(chunk):
        total += len(chunk)
        chunk.frac = 1.0
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

    from training.modelref import quiet_loading

    try:
        with quiet_loading():
            model = mlflow.pyfunc.load_model(model_path)
    except Exception as exc:  # missing Python dependency, broken bundle...: the model cannot be used at all
        from training.modelref import has_scheme

        why = " ".join(str(exc).split())[:400]
        registered = not has_scheme(model_name) and not Path(model_name).exists()
        label = f"models:/{model_name}/{model_version}" if registered else model_name
        raise ModelError(f"--model {label}: cannot load the model ({type(exc).__name__}: {why}); install what it "
                         "needs in this environment, or score with another model") from None
    _WORKER.update(model=model, name=model_name, version=model_version, max_chars=max_chars, fmt=fmt)


def _init_pool_worker(*init_args) -> None:
    # Ctrl-C reaches the whole process group: the parent alone handles it (stops the pool, says how to resume).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _init_worker(*init_args)
    except ModelError as exc:
        _WORKER["error"] = str(exc)  # raised by the first chunk, so the parent gets the message, not a dead pool


def _work(payload: tuple):
    if "error" in _WORKER:
        raise ModelError(_WORKER["error"])
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

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_pool_worker,
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
        except BaseException:
            # Ctrl-C, a file-level input error, or the consumer stopping: stop the workers now rather than let
            # them finish the chunks in flight (the parent would wait for them, and so would interpreter exit).
            for proc in list(getattr(pool, "_processes", {}).values()):
                proc.terminate()
            pool.shutdown(wait=False, cancel_futures=True)
            raise


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
    from training.modelref import resolve

    return resolve(model_uri, "--model")


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

    def committed_rows(self) -> int:
        """Rows a --resume would keep: what the sidecar on disk says (an interrupt may fall inside `write`)."""
        try:
            return int(json.loads(self.sidecar.read_text(encoding="utf-8"))["state"]["rows"])
        except (OSError, ValueError, KeyError, TypeError):
            return 0

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
    from training.modelref import download

    return download(model_uri, name, version, dst, "--model")


def model_identity(local_model: str, name: str, version: str, model_uri: str) -> dict:
    from mlflow.models import Model

    try:
        meta = Model.load(local_model)
    except Exception as exc:
        raise ModelError(f"--model {model_uri}: not an MLflow model ({' '.join(str(exc).split())[:300]}); give a "
                         "folder holding an MLmodel file, or a models:/ or runs:/ URI") from None
    return {"model": f"{name}/{version}" if name else model_uri, "model_uuid": meta.model_uuid}


def _check_finished(output: Path, resume: bool, overwrite: bool) -> None:
    """A finished output is never replaced silently: --overwrite says so (the old file stays until the new one is
    complete). The one exception: a resumed run that was killed between its final rename and the cleanup."""
    if not output.exists() or overwrite:
        return
    partial = output.with_name(output.name + ".partial")
    sidecar = output.with_name(output.name + ".progress.json")
    if resume and sidecar.exists() and not partial.exists():
        return
    raise InputError(f"{output}: exists from a finished run; pass --overwrite to replace it (it is replaced only "
                     "once the new output is complete), or choose another -o")


def _progress_seconds() -> float:
    value = os.environ.get("TPC_PROGRESS_SECONDS", "")
    try:
        seconds = float(value) if value.strip() else PROGRESS_SECONDS
    except ValueError:
        seconds = -1.0
    if not seconds >= 0:
        raise InputError(f"TPC_PROGRESS_SECONDS={value!r}: give a number of seconds >= 0 (default {PROGRESS_SECONDS:g})")
    return seconds


def _duration(seconds: float) -> str:
    seconds = int(round(seconds))
    if seconds < 60:
        return f"{seconds} s"
    if seconds < 3600:
        return f"{seconds // 60} min {seconds % 60} s"
    return f"{seconds // 3600} h {seconds % 3600 // 60} min"


class _Meter:
    """Progress on stderr: a tqdm bar on a terminal; elsewhere (a job, a log file) a line about every
    `every` seconds with rows, rate and an ETA estimated from how much of the input has been read."""

    def __init__(self, mode: str, rows: int, every: float):
        self.mode, self.every = mode, every
        self.rows, self.errors, self.start_rows, self.frac = rows, 0, rows, 0.0
        self.t0 = self.last = time.monotonic()
        self.bar = None
        if mode == "bar":
            from tqdm import tqdm

            self.bar = tqdm(unit=" articles", initial=rows, file=sys.stderr)

    def update(self, rows: int, errors: int, frac: float | None) -> None:
        self.rows += rows
        self.errors += errors
        if frac:
            self.frac = frac
        if self.bar is not None:
            if self.frac > 0:
                self.bar.total = max(int(round(self.rows / self.frac)), self.rows)
            self.bar.update(rows)
        elif self.mode == "lines":
            now = time.monotonic()
            if now - self.last >= self.every:
                self.last = now
                print(self.line(now), file=sys.stderr, flush=True)

    def line(self, now: float) -> str:
        rate = (self.rows - self.start_rows) / max(now - self.t0, 1e-9)
        text = f"tpc score: {self.rows:,} rows"
        if self.errors:
            text += f" ({self.errors:,} errors)"
        text += f", {rate:,.1f} articles/s" if rate < 10 else f", {rate:,.0f} articles/s"
        if 0 < self.frac < 1 and rate > 0:
            left = self.rows / self.frac - self.rows
            text += f", {self.frac:.0%} of the input read, ETA {_duration(left / rate)}"
        return text

    def close(self) -> None:
        if self.bar is not None:
            self.bar.close()


def score(input_path, output_path, model_uri: str, chunk_size: int = 500, progress: bool | None = None,
          workers: int = 1, resume: bool = False, engine: str = "local", max_chars: int = MAX_ARTICLE_CHARS,
          overwrite: bool = False) -> dict:
    """Score `input_path` into `output_path` (.jsonl or .parquet); returns a summary with rows and errors.

    `progress`: None shows a bar when stderr is a terminal and a line about every 10 s (TPC_PROGRESS_SECONDS)
    otherwise; True forces the bar, False shows nothing. Ctrl-C raises `Interrupted` (committed rows are kept)."""
    if engine not in ("local", "spark"):
        raise InputError(f"--engine {engine!r}: choose local or spark")
    if not 1 <= chunk_size <= MAX_CHUNK_ROWS:
        raise InputError(f"--chunk-size {chunk_size}: choose 1..{MAX_CHUNK_ROWS}")
    if workers < 1:
        raise InputError(f"--workers {workers}: must be at least 1")
    if max_chars < 1:
        raise InputError(f"--max-chars {max_chars}: must be at least 1")
    mode = ("bar" if sys.stderr.isatty() else "lines") if progress is None else ("bar" if progress else "off")
    every = _progress_seconds()
    t0 = time.perf_counter()
    input_path, output_path = Path(input_path), Path(output_path)
    if not input_path.exists():
        raise InputError(f"{input_path}: input not found")
    fmt = _check_paths(input_path, output_path)
    input_kind(input_path)
    _check_finished(output_path, resume, overwrite)
    out = None
    try:
        from training.modelref import check_path, needs_store, use_store

        check_path(model_uri, "--model")
        if needs_store(model_uri):
            use_store()  # an existing store only: scoring never creates an empty one
        name, version = resolve_version(model_uri)
        with tempfile.TemporaryDirectory(prefix="tpc-model-") as model_dir:
            local_model = download_model(model_uri, name, version, model_dir)
            identity = {"input": input_fingerprint(input_path),
                        **model_identity(local_model, name, version, model_uri),
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
            model_label = version if name else _run_id(local_model)
            init_args = (local_model, name or model_uri, model_label, max_chars, fmt)
            fracs: dict[int, float] = {}

            def chunks() -> Iterator[Chunk]:
                for i, chunk in enumerate(read_chunks(input_path, chunk_size, max_chars)):
                    if i >= skip:
                        fracs[i] = chunk.frac
                    yield chunk

            if skip is None:
                scored: Iterator[tuple] = iter(())
            elif engine == "spark":
                from training.spark import scored_chunks

                scored = scored_chunks(chunks(), skip, init_args)
            else:
                scored = _scored(chunks(), skip, workers, init_args)
            meter = _Meter(mode if skip is not None else "off", out.state["rows"], every)
            try:
                for item in scored:
                    out.write(*item)
                    meter.update(item[2], item[3], fracs.pop(item[0], None))
            except InputError:
                # A file-level failure part-way: no half output may survive to look like a result.
                _close(scored)
                out.close()
                out.discard()
                raise
            except ModelError:
                _close(scored)
                out.close()
                if out.state["chunks"] == 0:  # nothing scored with this model: nothing to resume either
                    out.discard()
                raise
            finally:
                _close(scored)  # stops the workers at once when anything (Ctrl-C included) ends the loop early
                out.close()
                meter.close()
            if out.state["chunks"] == 0:
                out.discard()
                raise InputError(f"{input_path}: no articles found")
            out.finish()
    except KeyboardInterrupt:
        raise Interrupted(out.committed_rows() if out is not None else 0) from None
    seconds = time.perf_counter() - t0
    scored_rows = out.state["rows"] - resumed_from
    summary = {"rows": out.state["rows"], "errors": out.state["errors"], "output": str(output_path),
               "model": f"{name}/{version}" if name else model_uri, "workers": workers,
               "resumed_rows": resumed_from, "seconds": round(seconds, 2),
               "articles_per_s": round(scored_rows / seconds, 1) if seconds else None}
    if engine == "spark":
        summary.update(engine="spark", workers=None)  # Spark's own local[2] workers score
    return summary


def _run_id(local_model: str) -> str:
    import mlflow

    try:
        return mlflow.models.get_model_info(local_model).run_id or ""
    except Exception:
        return ""


def _close(generator) -> None:
    close = getattr(generator, "close", None)
    if close is not None:
        close()
