"""`tpc score --engine spark` (mlflow.pyfunc.spark_udf in local[2]) gives the same rows as the local engine."""

from __future__ import annotations

import json

import pyarrow.parquet as pq
import pytest

from test_score import make_articles, read_jsonl, write_jsonl
from training.score import score

pytest.importorskip("pyspark")
MODEL = "models:/turkey-policy@champion"


@pytest.fixture(scope="module")
def inputs(trained, tmp_path_factory):
    d = tmp_path_factory.mktemp("spark")
    src = write_jsonl(d / "in.jsonl", make_articles(2000, seed=5, passages=(1, 3)))
    local = score(src, d / "local.jsonl", MODEL, chunk_size=250, workers=2)
    return {"dir": d, "src": src, "local": d / "local.jsonl", "summary": local}


@pytest.mark.slow
def test_spark_engine_matches_local_engine(inputs):
    d = inputs["dir"]
    summary = score(inputs["src"], d / "spark.jsonl", MODEL, engine="spark")
    assert summary["rows"] == inputs["summary"]["rows"] == 2000 and summary["errors"] == 0
    spark_rows, local_rows = read_jsonl(d / "spark.jsonl"), read_jsonl(inputs["local"])
    assert [r["id"] for r in spark_rows] == [r["id"] for r in local_rows]  # input order kept
    for s, loc in zip(spark_rows, local_rows):
        assert list(s) == list(loc)
        for key, value in loc.items():
            if isinstance(value, float):
                assert s[key] == pytest.approx(value, abs=1e-9), (loc["id"], key)
            else:
                assert s[key] == value, (loc["id"], key)
    assert any(r["topics"] for r in spark_rows)


@pytest.mark.slow
def test_spark_parquet_output_and_empty_text_rows(inputs):
    d = inputs["dir"]
    src = write_jsonl(d / "few.jsonl", [{"id": "a", "text": json.loads(inputs["src"].open().readline())["text"]},
                                        {"id": "b", "text": ""}, {"id": "c"}])
    score(src, d / "few.parquet", MODEL, engine="spark")
    local = d / "few_local.parquet"
    score(src, local, MODEL)
    spark_table, local_table = pq.read_table(d / "few.parquet"), pq.read_table(local)
    assert spark_table.schema == local_table.schema
    rows = spark_table.to_pylist()
    assert [r["id"] for r in rows] == ["a", "b", "c"]
    assert rows[0]["error"] is None and rows[1]["error"] and rows[2]["error"]
    assert rows[0]["topics"] == local_table.to_pylist()[0]["topics"]
