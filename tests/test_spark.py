"""`tpc score --engine spark` (mlflow.pyfunc.spark_udf in local[2]) gives the same rows as the local engine, for every
input kind, with the Python of `tpc` in its workers and Spark's own output kept off the console."""

from __future__ import annotations

import csv
import json
import os
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from test_score import make_articles, read_jsonl, write_jsonl
from training.score import score

pytest.importorskip("pyspark")
MODEL = "models:/turkey-policy@champion"
REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="module")
def inputs(trained, tmp_path_factory):
    d = tmp_path_factory.mktemp("spark")
    src = write_jsonl(d / "in.jsonl", make_articles(2000, seed=5, passages=(1, 3)))
    local = score(src, d / "local.jsonl", MODEL, chunk_size=250, workers=2)
    return {"dir": d, "src": src, "local": d / "local.jsonl", "summary": local}


@pytest.mark.slow
def test_spark_engine_matches_local_engine(inputs):
    d = inputs["dir"]
    summary = score(inputs["src"], d / "spark.jsonl", MODEL, engine="spark", chunk_size=250)
    assert summary["rows"] == inputs["summary"]["rows"] == 2000 and summary["errors"] == 0
    assert (d / "spark.jsonl").read_bytes() == inputs["local"].read_bytes()
    assert any(r["topics"] for r in read_jsonl(d / "spark.jsonl"))


@pytest.mark.slow
def test_spark_rows_equal_local_rows_for_every_input_kind(inputs, tmp_path):
    """JSONL with missing ids, bad lines and empty texts; CSV with multi-line fields; Parquet; a folder of .txt
    (one article per file, however many lines it has): byte-identical outputs, JSONL and Parquet."""
    arts = make_articles(30, seed=9, passages=(3, 6))  # several lines each
    rows = [{"text": a["text"]} if i % 4 == 0 else a for i, a in enumerate(arts)]  # some without id
    jsonl = write_jsonl(tmp_path / "in.jsonl", rows)
    with jsonl.open("a", encoding="utf-8") as fh:
        fh.write('{"id": "broken", "text": \n{"id": "empty", "text": ""}\n[1, 2]\n')
    with (tmp_path / "in.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text"])
        w.writerows([a["id"], a["text"]] for a in arts)
    pq.write_table(pa.table({"text": [a["text"] for a in arts]}), tmp_path / "in.parquet")  # no id column
    folder = tmp_path / "txt"
    folder.mkdir()
    for a in arts:
        (folder / f"{a['id']}.txt").write_text(a["text"], encoding="utf-8")
    (folder / "notes.md").write_text("not an article")
    for src in ("in.jsonl", "in.csv", "in.parquet", "txt"):
        for suffix in (".jsonl", ".parquet"):
            local, spark = tmp_path / f"{src}-local{suffix}", tmp_path / f"{src}-spark{suffix}"
            a = score(tmp_path / src, local, MODEL, chunk_size=8)
            b = score(tmp_path / src, spark, MODEL, chunk_size=8, engine="spark")
            assert (a["rows"], a["errors"]) == (b["rows"], b["errors"]), src
            if suffix == ".jsonl":
                assert spark.read_bytes() == local.read_bytes(), src
            else:
                assert pq.read_table(spark).equals(pq.read_table(local)), src
    folder_rows = read_jsonl(tmp_path / "txt-spark.jsonl")
    assert [r["id"] for r in folder_rows] == sorted(a["id"] for a in arts)  # one row per file
    jsonl_rows = read_jsonl(tmp_path / "in.jsonl-spark.jsonl")
    assert jsonl_rows[0]["id"] == "in.jsonl:1" and jsonl_rows[-1]["error"].startswith("in.jsonl:33: expected a JSON")


@pytest.mark.slow
def test_spark_workers_use_the_python_of_tpc_and_its_output_stays_off_the_console(inputs, trained, tmp_path):
    """`.venv/bin/tpc` run without the virtual environment on PATH (the system python3 lacks pandas): the workers
    still run this Python; stderr holds the summary and nothing of the JVM."""
    seeds = REPO / "seeds"
    tpc = Path(sys.executable).with_name("tpc")
    env = {k: v for k, v in os.environ.items() if k not in ("VIRTUAL_ENV", "PYSPARK_PYTHON", "PYSPARK_DRIVER_PYTHON")}
    env.update(PATH="/usr/bin:/bin", MLFLOW_TRACKING_URI=trained["uri"])
    done = subprocess.run([str(tpc), "score", str(seeds), "-o", str(tmp_path / "spark.jsonl"), "--engine", "spark"],
                          env=env, cwd=tmp_path, capture_output=True, text=True, timeout=600)
    assert done.returncode == 0, done.stderr[-3000:]
    lines = [line for line in done.stderr.splitlines() if line.strip()]
    assert all(line.startswith(("tpc score:", "{")) for line in lines), done.stderr[-3000:]
    assert json.loads(lines[-1])["rows"] == 5 and done.stdout == ""
    assert score(seeds, tmp_path / "local.jsonl", MODEL)["rows"] == 5
    assert (tmp_path / "spark.jsonl").read_bytes() == (tmp_path / "local.jsonl").read_bytes()
    assert len(read_jsonl(tmp_path / "spark.jsonl")) == 5  # whole files, not lines


@pytest.mark.slow
def test_score_dataframe_on_a_spark_dataframe(inputs):
    """The cluster API: a Spark DataFrame in, the output columns out, in the local engine's values."""
    from training.spark import score_dataframe, spark_session

    spark = spark_session()
    local = read_jsonl(inputs["local"])[:20]
    df = spark.createDataFrame([(r["id"], json.loads(line)["text"]) for r, line in
                                zip(local, inputs["src"].open(encoding="utf-8"))], "id string, text string")
    rows = score_dataframe(spark, df, MODEL, "turkey-policy", local[0]["model_version"]).collect()
    got = sorted((r["id"], r["topics"], r["model_version"]) for r in rows)
    assert got == sorted((r["id"], r["topics"], r["model_version"]) for r in local)
