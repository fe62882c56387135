"""`score()`: batch scoring as the command line runs it. Each step is owned elsewhere in this package: check the
options and paths, resolve the model, open the sink (new or resumed), let the engine score the reader's chunks into
the sink, and summarise."""

from __future__ import annotations

import time
from collections.abc import Iterator
from pathlib import Path

from training.bundle import MAX_ARTICLE_CHARS
from training.modelref import ModelError
from training.scoring import engines
from training.scoring.errors import InputError, Interrupted
from training.scoring.meter import Meter, progress_mode, progress_seconds
from training.scoring.model import resolved
from training.scoring.readers import Chunk, input_fingerprint, input_kind, read_chunks
from training.scoring.sink import Output, check_finished, check_paths

MAX_CHUNK_ROWS = 2000  # larger chunks sent to workers multiply peak memory (PITFALLS: 50k docs -> 3.1 GB)


def score(input_path, output_path, model_uri: str, chunk_size: int = 500, progress: bool | None = None,
          workers: int = 1, resume: bool = False, engine: str = "local", max_chars: int = MAX_ARTICLE_CHARS,
          overwrite: bool = False, allow_code_drift: bool = False) -> dict:
    """Score `input_path` into `output_path` (.jsonl or .parquet); returns a summary with rows and errors.

    `progress`: None shows a bar when stderr is a terminal and a line about every 10 s (TPC_PROGRESS_SECONDS)
    otherwise; True forces the bar, False shows nothing. Ctrl-C raises `Interrupted` (committed rows are kept)."""
    _check_options(engine, chunk_size, workers, max_chars)
    mode, every = progress_mode(progress), progress_seconds()
    t0 = time.perf_counter()
    input_path, output_path = Path(input_path), Path(output_path)
    fmt = _check_input_output(input_path, output_path, resume, overwrite)
    out = None
    try:
        with resolved(model_uri, allow_code_drift) as model:
            out = Output(output_path, fmt, {"input": input_fingerprint(input_path), **model.identity(),
                                            "chunk_size": chunk_size, "max_chars": max_chars, "format": fmt})
            skip = out.open(resume)
            resumed_from = out.state["rows"]
            spec = model.worker_spec(max_chars, fmt)
            fracs: dict[int, float] = {}
            chunks = _chunks(read_chunks(input_path, chunk_size, max_chars), skip, fracs)
            scored = iter(()) if skip is None else engines.engine(engine, workers)(chunks, skip, spec)
            meter = Meter(mode if skip is not None else "off", out.state["rows"], every)
            _drain(scored, out, meter, fracs, input_path)
    except KeyboardInterrupt:
        raise Interrupted(out.committed_rows() if out is not None else 0) from None
    return _summary(out, output_path, model.display, engine, workers, resumed_from, time.perf_counter() - t0)


def _check_options(engine: str, chunk_size: int, workers: int, max_chars: int) -> None:
    engines.check(engine)
    if not 1 <= chunk_size <= MAX_CHUNK_ROWS:
        raise InputError(f"--chunk-size {chunk_size}: choose 1..{MAX_CHUNK_ROWS}")
    if workers < 1:
        raise InputError(f"--workers {workers}: must be at least 1")
    if max_chars < 1:
        raise InputError(f"--max-chars {max_chars}: must be at least 1")


def _check_input_output(input_path: Path, output_path: Path, resume: bool, overwrite: bool) -> str:
    """The output format, once input and output are known usable: before the model is looked up, which is slow."""
    if not input_path.exists():
        raise InputError(f"{input_path}: input not found")
    fmt = check_paths(input_path, output_path)
    input_kind(input_path)
    check_finished(output_path, resume, overwrite)
    return fmt


def _chunks(chunks: Iterator[Chunk], skip: int | None, fracs: dict[int, float]) -> Iterator[Chunk]:
    """The reader's chunks, noting how far through the input each one ends (for the meter's ETA)."""
    for i, chunk in enumerate(chunks):
        if skip is not None and i >= skip:
            fracs[i] = chunk.frac
        yield chunk


def _drain(scored: Iterator, out: Output, meter: Meter, fracs: dict[int, float], input_path: Path) -> None:
    """Write what the engine yields, commit by commit, then put the finished output in place."""
    try:
        for item in scored:
            out.write(*item)
            meter.update(item.rows, item.errors, fracs.pop(item.index, None))
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


def _summary(out: Output, output_path: Path, model: str, engine: str, workers: int, resumed_from: int,
             seconds: float) -> dict:
    scored_rows = out.state["rows"] - resumed_from
    summary = {"rows": out.state["rows"], "errors": out.state["errors"], "output": str(output_path),
               "model": model, "workers": workers, "resumed_rows": resumed_from, "seconds": round(seconds, 2),
               "articles_per_s": round(scored_rows / seconds, 1) if seconds else None}
    if engine == "spark":
        summary.update(engine="spark", workers=None)  # Spark's own local[2] workers score
    return summary


def _close(generator) -> None:
    close = getattr(generator, "close", None)
    if close is not None:
        close()
