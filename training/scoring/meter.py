"""Progress of `tpc score` on stderr: a tqdm bar on a terminal; elsewhere (a job, a log file) a line about every
10 s (TPC_PROGRESS_SECONDS) with rows, rate and an ETA; nothing when the caller says so."""

from __future__ import annotations

import os
import sys
import time

from training.scoring.errors import InputError

PROGRESS_SECONDS = 10.0  # a progress line this often when stderr is not a terminal (TPC_PROGRESS_SECONDS)


def progress_mode(progress: bool | None) -> str:
    """None: a bar when stderr is a terminal and lines otherwise; True forces the bar, False shows nothing."""
    return ("bar" if sys.stderr.isatty() else "lines") if progress is None else ("bar" if progress else "off")


def progress_seconds() -> float:
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


class Meter:
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
