"""Scoring a Spark DataFrame, the import path of docs/scoring.md: the code lives in `training.scoring.spark`."""

from training.scoring.spark import log_path, result_type, score_dataframe, spark_session

__all__ = ["log_path", "result_type", "score_dataframe", "spark_session"]
