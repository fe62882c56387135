"""The model fits of a run as independent jobs, run in worker processes when the family allows it.

Each cross-validation fold's topic and stance models and the held-out models share nothing but their inputs, and
on the default config they were two thirds of `tpc train`'s time on one core (72 of 128 s under cProfile).
`FitPool(jobs)` runs them in `jobs` worker processes with one BLAS thread each. They are loky's (shipped in
joblib, a scikit-learn dependency): fresh interpreters like `spawn`, but they do not re-run the caller's script,
so `train.run` works from a script without a `__main__` guard, and they can be killed at once. With one job, or a
family that keeps `parallel_fits` off (an encoder that fills its cache, torch), each job runs in this process when
its result is first asked for, in the order asked, so a serial run is the same run as before. A job returns what
its caller needs and nothing more: the out-of-fold probabilities, or the fitted estimator.
"""

from __future__ import annotations

import contextlib
from concurrent.futures import Future
from dataclasses import dataclass

from training import models as families
from training.concurrency import available_cores


@dataclass(frozen=True)
class FitJob:
    """Fit `task`'s estimator of `model` on (X, y); return `predict_proba(X_test)`, or the estimator if no X_test."""
    task: str
    model: object  # the pydantic model section
    lexicon: dict | None
    seed: int
    labels: tuple[str, ...]
    X: object
    y: object
    X_test: object = None

    def __call__(self):
        est = families.build(self.task, self.model, self.lexicon, self.seed, self.labels).fit(self.X, self.y)
        return est if self.X_test is None else est.predict_proba(self.X_test)


class _Deferred:
    """A job run in this process when its result is first asked for."""

    def __init__(self, fn, args):
        self.fn, self.args, self.future = fn, args, None

    def result(self):
        if self.future is None:
            self.future = Future()
            try:
                self.future.set_result(self.fn(*self.args))
            except BaseException as exc:
                self.future.set_exception(exc)
        return self.future.result()


_WORKER_MEMOS = contextlib.ExitStack()


def _start_worker() -> None:
    from threadpoolctl import threadpool_limits

    from training.lexicon import shared_counts
    from training.models.tfidf import shared_hashing

    threadpool_limits(1)  # `jobs` processes on the machine's cores: one BLAS thread each
    # The jobs of a run fit on the same passages (a fold is a part of them): in a worker each text is hashed and
    # its cues counted once, for the life of the process (a run's pool lives until its held-out model is back).
    _WORKER_MEMOS.enter_context(shared_hashing())
    _WORKER_MEMOS.enter_context(shared_counts())


def parallel_family(*model_sections) -> bool:
    """True when every family involved fits independently in a worker process (see `Family.parallel_fits`)."""
    return all(families.FAMILIES[m.family].parallel_fits for m in model_sections)


class FitPool:
    """Runs `FitJob`s (or any picklable function of picklable arguments) in `jobs` processes (0: one per available
    core), or deferred in this process when `jobs` is 1.

    Submit every job whose inputs are ready, then ask for results: the processes work on all of them meanwhile.
    Leaving the block stops the processes; leaving it by an error (or Ctrl-C) stops them at once."""

    def __init__(self, jobs: int = 1):
        self.jobs = available_cores() if jobs == 0 else jobs
        self._executor = None

    def __enter__(self) -> "FitPool":
        return self

    def __exit__(self, exc_type, exc, tb) -> None:
        executor, self._executor = self._executor, None
        if executor is not None:
            # An error or Ctrl-C stops the fits now rather than letting each worker finish its current one.
            executor.shutdown(wait=exc_type is None, kill_workers=exc_type is not None)

    def submit(self, fn, *args):
        """A handle whose `result()` is `fn(*args)` (or raises its error)."""
        if self.jobs <= 1:
            return _Deferred(fn, args)
        if self._executor is None:
            from joblib.externals.loky.backend.context import get_context
            from joblib.externals.loky.process_executor import ProcessPoolExecutor

            self._executor = ProcessPoolExecutor(self.jobs, context=get_context("loky"), initializer=_start_worker)
        return self._executor.submit(fn, *args)


SERIAL = FitPool(1)
