"""The local engine: chunks scored in this process (one worker) or in a pool of spawned worker processes, each of
which loads the model once; results come back in input order with at most 2 x workers chunks in flight."""

from __future__ import annotations

import os
import signal
from collections import deque
from collections.abc import Iterable, Iterator
from pathlib import Path

from training.modelref import ModelError
from training.scoring.errors import ScoringError
from training.scoring.frames import Scored, encode, score_frame
from training.scoring.model import WorkerSpec
from training.scoring.readers import Chunk

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


def _init_pool_worker(*spec) -> None:
    # Ctrl-C reaches the whole process group: the parent alone handles it (stops the pool, says how to resume).
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    try:
        _init_worker(*spec)
    except ModelError as exc:
        _WORKER["error"] = str(exc)  # raised by the first chunk, so the parent gets the message, not a dead pool


def _work(payload: tuple):
    if "error" in _WORKER:
        raise ModelError(_WORKER["error"])
    columns, values = score_frame(_WORKER["model"], payload, _WORKER["name"], _WORKER["version"],
                                  _WORKER["max_chars"])
    return encode(columns, values, _WORKER["fmt"])


def scored_chunks(chunks: Iterable[Chunk], skip: int, spec: WorkerSpec, workers: int = 1) -> Iterator[Scored]:
    """The chunks from index `skip` on, scored, in input order; at most 2*workers chunks in flight."""
    if workers <= 1:
        _init_worker(*spec)
        for i, chunk in enumerate(chunks):
            if i >= skip:
                yield Scored(i, *_work(chunk.payload()))
        return
    # spawn, not fork: the parent holds MLflow/SQLAlchemy state that must not be shared with children.
    # One BLAS thread per worker, set in the environment the children start with (numpy reads it at import,
    # before any initializer runs): K workers x the default threads per core spin against each other.
    saved = {k: os.environ.get(k) for k in _THREAD_VARS}
    os.environ.update({k: os.environ.get(k) or "1" for k in _THREAD_VARS})
    try:
        yield from _pooled(chunks, skip, workers, spec)
    finally:
        os.environ.update({k: v for k, v in saved.items() if v is not None})
        for k in (k for k, v in saved.items() if v is None):
            os.environ.pop(k, None)


_THREAD_VARS = ("OMP_NUM_THREADS", "OPENBLAS_NUM_THREADS", "MKL_NUM_THREADS")


def _pooled(chunks: Iterable[Chunk], skip: int, workers: int, spec: WorkerSpec) -> Iterator[Scored]:
    import multiprocessing as mp
    from concurrent.futures import ProcessPoolExecutor
    from concurrent.futures.process import BrokenProcessPool

    with ProcessPoolExecutor(workers, mp_context=mp.get_context("spawn"), initializer=_init_pool_worker,
                             initargs=tuple(spec)) as pool:
        window: deque = deque()
        try:
            for i, chunk in enumerate(chunks):
                if i < skip:
                    continue
                window.append((i, pool.submit(_work, chunk.payload())))
                if len(window) >= 2 * workers:
                    j, fut = window.popleft()
                    yield Scored(j, *fut.result())
            while window:
                j, fut = window.popleft()
                yield Scored(j, *fut.result())
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
