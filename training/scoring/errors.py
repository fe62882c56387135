"""The errors of `tpc score`; the command line turns each into one paragraph and an exit code."""

from __future__ import annotations

from training.errors import TPCError


class InputError(TPCError, ValueError):
    """An input (or output path) that cannot be used at all: file-level; row problems become error records."""


class ScoringError(TPCError, RuntimeError):
    """Scoring stopped part-way (a worker died); progress so far is kept for --resume."""


class Interrupted(Exception):
    """Ctrl-C (SIGINT) while scoring: the workers are stopped, the committed rows are kept for --resume."""

    def __init__(self, rows: int):
        self.rows = rows
        super().__init__(f"interrupted after {rows} rows: rerun the same command with --resume")
