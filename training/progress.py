"""Stage lines of long commands (`tpc train`, `tpc promote`): one line on stderr per stage, with the seconds since
the command started. The library stays quiet unless a command (or a caller) calls `enable`."""

from __future__ import annotations

import logging
import sys
import time

log = logging.getLogger("tpc.progress")


def stage(message: str) -> None:
    log.info(message)


class _Formatter(logging.Formatter):
    def __init__(self, command: str):
        super().__init__()
        self.command, self.t0 = command, time.monotonic()

    def format(self, record: logging.LogRecord) -> str:
        return f"tpc {self.command} [{time.monotonic() - self.t0:4.0f} s] {record.getMessage()}"


class _Stderr(logging.StreamHandler):
    """Writes to whatever sys.stderr is at the time (a test may swap it between commands)."""

    @property
    def stream(self):
        return sys.stderr

    @stream.setter
    def stream(self, value):
        pass


def enable(command: str) -> None:
    handler = _Stderr()
    handler.setFormatter(_Formatter(command))
    log.handlers = [handler]
    log.setLevel(logging.INFO)
    log.propagate = False
