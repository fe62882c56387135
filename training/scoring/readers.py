"""Reading `tpc score` inputs: JSONL, CSV, Parquet or a folder of .txt files, as chunks of validated rows in input
order. Each row keeps its location (`file:line`, `file:row N`, the file name) for its error message; a row without
an id is keyed by that location. Only an input that cannot be read at all raises `InputError`."""

from __future__ import annotations

import codecs
import csv
import hashlib
import io
import json
import math
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from training.bundle import MAX_ARTICLE_CHARS
from training.scoring.errors import InputError

JSONL_SUFFIXES = (".jsonl", ".json", ".ndjson")
# A chunk also closes once its texts reach this many characters, so a file of huge articles keeps memory bounded.
CHUNK_CHAR_BUDGET = 20_000_000


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
