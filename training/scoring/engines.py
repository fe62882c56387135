"""The engines `tpc score --engine` chooses from. An engine takes the reader's chunks, the number of chunks an
interrupted run already committed, and the model's `WorkerSpec`, and yields each later chunk `Scored`, in input
order; the sink writes what it yields. A new engine is one module with such a function and one line here."""

from __future__ import annotations

import functools
from collections.abc import Iterable, Iterator
from typing import Protocol

from training.scoring.errors import InputError
from training.scoring.frames import Scored
from training.scoring.model import WorkerSpec
from training.scoring.readers import Chunk

NAMES = ("local", "spark")


class Engine(Protocol):
    def __call__(self, chunks: Iterable[Chunk], skip: int, spec: WorkerSpec) -> Iterator[Scored]: ...


def check(name: str) -> None:
    if name not in NAMES:
        raise InputError(f"--engine {name!r}: choose local or spark")


def engine(name: str, workers: int) -> Engine:
    check(name)
    if name == "spark":
        from training.scoring.spark import scored_chunks  # pyspark is an optional extra

        return scored_chunks
    from training.scoring.local import scored_chunks

    return functools.partial(scored_chunks, workers=workers)
