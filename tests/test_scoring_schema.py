"""`OutputSchema`: one owner for the output columns, their types and their nulls, whichever writer or engine asks."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pyarrow as pa
import pytest

from training import TOPICS
from training.bundle import output_columns
from training.scoring.errors import ScoringError
from training.scoring.schema import SCORER_COLUMNS, OutputSchema


def test_model_and_scorer_columns_are_found_back_from_the_column_list():
    model = OutputSchema(TOPICS)
    scorer = OutputSchema(TOPICS, scorer=True)
    assert model.columns == output_columns(TOPICS)
    assert scorer.columns == output_columns(TOPICS) + list(SCORER_COLUMNS)
    assert OutputSchema.of(model.columns) == model and OutputSchema.of(scorer.columns) == scorer


def test_columns_of_another_shape_are_refused_with_the_labels_named():
    with pytest.raises(ScoringError, match="not the output schema of labels"):
        OutputSchema.of(["id", "text"])
    with pytest.raises(ScoringError):
        OutputSchema.of(list(reversed(output_columns(TOPICS))))


def test_arrow_spark_and_ddl_types_agree_column_by_column():
    schema = OutputSchema(["mediation"], scorer=True)
    arrow = schema.arrow()
    assert arrow.names == schema.columns
    assert arrow.field("topics").type == pa.list_(pa.string())
    assert arrow.field("n_passages").type == pa.int64()
    assert arrow.field("mediation").type == arrow.field("truncated").type == pa.bool_()
    assert arrow.field("mediation_prob").type == arrow.field("mediation_none").type == pa.float64()
    assert arrow.field("mediation_stance").type == arrow.field("model_version").type == pa.string()
    ddl_fields = schema.ddl()[len("struct<"):-1].split(", ")
    assert [f.split(":", 1)[0] for f in ddl_fields] == schema.columns
    assert "n_passages:bigint" in ddl_fields and "topics:array<string>" in ddl_fields


def test_plain_values_have_none_for_missing_and_python_types():
    schema = OutputSchema(["mediation"])
    frame = pd.DataFrame({c: [None, None] for c in schema.columns})
    frame["n_passages"] = [np.int64(0), np.int64(3)]
    frame["topics"] = [None, np.array(["mediation"])]
    frame["mediation"] = [False, np.bool_(True)]
    frame["truncated"] = [False, False]
    frame["mediation_prob"] = [math.nan, np.float64(0.75)]
    frame["title"] = [math.nan, "Un titre"]
    plain = schema.plain(frame)
    assert plain["mediation_prob"] == [None, 0.75] and type(plain["mediation_prob"][1]) is float
    assert plain["n_passages"] == [0, 3] and type(plain["n_passages"][1]) is int
    assert plain["topics"] == [[], ["mediation"]]
    assert plain["mediation"] == [False, True] and type(plain["mediation"][1]) is bool
    assert plain["title"] == [None, "Un titre"] and plain["error"] == [None, None]
