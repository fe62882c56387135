"""Batch scoring, the import path of the README and the tests: the code lives in `training.scoring`."""

from training.scoring.batch import score
from training.scoring.errors import InputError, Interrupted, ScoringError
from training.scoring.readers import read_chunks

__all__ = ["InputError", "Interrupted", "ScoringError", "read_chunks", "score"]
