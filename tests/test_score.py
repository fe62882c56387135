"""`tpc score`: streaming, parallel, one output row per input row in input order, JSONL and Parquet outputs."""

from __future__ import annotations

import csv
import json
import random
import re
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from training.bundle import output_columns
from training.cli import main
from training.score import InputError, read_chunks, score

SCHEMA = output_columns() + ["model_name", "model_version"]
WRITTEN = Path(__file__).resolve().parents[1] / "data" / "written"


def make_articles(n: int, seed: int = 0, passages: tuple[int, int] = (3, 8)) -> list[dict]:
    """Articles made of written passages (a date header, a title, paragraphs), ids art-00000..."""
    pool = [json.loads(line)["text"] for f in sorted(WRITTEN.glob("*.jsonl")) for line in f.open(encoding="utf-8")]
    rng = random.Random(seed)
    out = []
    for i in range(n):
        body = rng.sample(pool, rng.randint(*passages))
        out.append({"id": f"art-{i:05d}", "text": f"date 2025-0{1 + i % 9}-1{i % 10}\nActualité du jour numéro {i}\n"
                    + "\n".join(body)})
    return out


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    with path.open("w", encoding="utf-8") as fh:
        for r in rows:
            fh.write(json.dumps(r, ensure_ascii=False) + "\n")
    return path


def read_jsonl(path: Path) -> list[dict]:
    return [json.loads(line) for line in path.open(encoding="utf-8")]


@pytest.fixture(scope="module")
def articles():
    return make_articles(600, seed=1)


@pytest.fixture(scope="module")
def reference(trained, articles, tmp_path_factory):
    """One uninterrupted single-process run that the other formats and worker counts must reproduce."""
    d = tmp_path_factory.mktemp("score_ref")
    src = write_jsonl(d / "in.jsonl", articles)
    summary = score(src, d / "out.jsonl", "models:/turkey-policy@champion", chunk_size=64, workers=1)
    return {"summary": summary, "path": d / "out.jsonl", "rows": read_jsonl(d / "out.jsonl")}


def test_one_row_per_input_row_in_order_with_documented_schema(reference, articles, trained):
    rows = reference["rows"]
    assert reference["summary"]["rows"] == len(articles) == len(rows)
    assert [r["id"] for r in rows] == [a["id"] for a in articles]
    assert all(list(r) == SCHEMA for r in rows)
    version = str(trained["result"]["registered_version"])
    assert {(r["model_name"], r["model_version"]) for r in rows} == {("turkey-policy", version)}
    assert all(r["error"] is None and r["n_passages"] >= 3 for r in rows)
    assert any(r["topics"] for r in rows) and any(not r["topics"] for r in rows)
    for r in rows:
        for t in r["topics"]:
            assert r[t] is True and r[f"{t}_stance"] in ("favor", "against", "none", "mixed")


def test_two_workers_write_the_same_bytes(reference, tmp_path):
    src = tmp_path / "in.jsonl"
    src.write_bytes((reference["path"].parent / "in.jsonl").read_bytes())
    out = tmp_path / "two.jsonl"
    summary = score(src, out, "models:/turkey-policy@champion", chunk_size=50, workers=2)
    assert summary["rows"] == len(reference["rows"]) and summary["errors"] == 0
    assert out.read_bytes() == reference["path"].read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl", "two.jsonl"]  # no partial or sidecar left


def test_parquet_output_has_typed_schema_and_same_rows(reference, tmp_path):
    out = tmp_path / "out.parquet"
    score(reference["path"].parent / "in.jsonl", out, "models:/turkey-policy@champion", chunk_size=128)
    table = pq.read_table(out)
    assert table.column_names == SCHEMA
    assert table.schema.field("topics").type == pa.list_(pa.string())
    assert table.schema.field("n_passages").type == pa.int64()
    assert table.schema.field("mediation").type == pa.bool_()
    assert table.schema.field("mediation_prob").type == pa.float64()
    assert table.to_pylist() == reference["rows"]


def test_csv_parquet_and_txt_folder_inputs_score_like_jsonl(reference, articles, tmp_path):
    some = articles[:40]
    with (tmp_path / "in.csv").open("w", encoding="utf-8", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["id", "text"])
        w.writerows([a["id"], a["text"]] for a in some)  # texts hold newlines: quoted multi-line fields
    pq.write_table(pa.table({"id": [a["id"] for a in some], "text": [a["text"] for a in some]}),
                   tmp_path / "in.parquet")
    folder = tmp_path / "txt"
    folder.mkdir()
    for a in some:
        (folder / f"{a['id']}.txt").write_text(a["text"], encoding="utf-8")
    expected = reference["rows"][:40]
    for src in ("in.csv", "in.parquet", "txt"):
        out = tmp_path / f"{src.replace('.', '_')}.jsonl"
        assert score(tmp_path / src, out, "models:/turkey-policy@champion", chunk_size=16)["rows"] == 40
        assert read_jsonl(out) == expected, src


def test_cli_exit_codes_and_table(reference, tmp_path, capsys):
    src = reference["path"].parent / "in.jsonl"
    good = tmp_path / "good.jsonl"
    write_jsonl(good, [{"id": "a", "text": json.loads(src.open().readline())["text"]}])
    assert main(["score", str(good), "-o", str(tmp_path / "a.jsonl"), "--table"]) == 0
    assert "a " in capsys.readouterr().out
    mixed = write_jsonl(tmp_path / "mixed.jsonl", [{"id": "a", "text": "Ankara livre des drones au Niger."},
                                                   {"id": "b", "text": ""}])
    assert main(["score", str(mixed), "-o", str(tmp_path / "b.jsonl")]) == 1
    assert main(["score", str(tmp_path / "missing.jsonl"), "-o", str(tmp_path / "c.jsonl")]) == 2
    assert "missing.jsonl: input not found" in capsys.readouterr().err
    assert main(["score", str(good), "-o", str(tmp_path / "d.jsonl"), "--model", "models:/no-such-model/1"]) == 2
    assert "version 1 of 'no-such-model' is not registered" in capsys.readouterr().err


def test_an_interrupted_run_is_not_silently_overwritten(reference, tmp_path):
    src = reference["path"].parent / "in.jsonl"
    out = tmp_path / "out.jsonl"
    (tmp_path / "out.jsonl.partial").write_bytes(b"{}\n")
    (tmp_path / "out.jsonl.progress.json").write_text("{}")
    with pytest.raises(InputError, match="pass --resume"):
        score(src, out, "models:/turkey-policy@champion")
    assert (tmp_path / "out.jsonl.partial").read_bytes() == b"{}\n"


def test_chunks_are_bounded_and_streamed(tmp_path):
    """The reader yields chunks as it goes (a generator), never more rows than asked for."""
    src = write_jsonl(tmp_path / "in.jsonl", make_articles(250, seed=3, passages=(1, 2)))
    sizes = [len(c) for c in read_chunks(src, chunk_size=100)]
    assert sizes == [100, 100, 50]
    with pytest.raises(InputError, match="chunk-size"):
        score(src, tmp_path / "o.jsonl", "models:/x/1", chunk_size=5000)


def test_one_pyfunc_call_on_a_whole_frame_gives_the_chunked_scorers_rows(reference, champion, articles, monkeypatch):
    """A registry consumer's single predict() on a big DataFrame: scored in bounded batches inside, with the same
    results as `tpc score`'s chunks (an article's result depends on nothing else in its batch)."""
    import pandas as pd

    from training import bundle as bundle_module

    monkeypatch.setattr(bundle_module, "PREDICT_BATCH", 37)
    frame = pd.DataFrame({"id": [a["id"] for a in articles], "text": [a["text"] for a in articles]})
    out = champion.predict(frame)
    rows = out.to_dict(orient="records")
    assert len(rows) == len(reference["rows"])
    for got, want in zip(rows, reference["rows"]):
        assert {k: got[k] for k in got} == {k: want[k] for k in got}


def _one_paragraph_error(err: str) -> str:
    text = err.strip()
    assert text.startswith("tpc: error: ") and "Traceback" not in text, err[-3000:]
    assert "\n" not in text, f"more than one paragraph:\n{err[-3000:]}"
    return text


@pytest.mark.parametrize("model, says", [
    ("turkey-policy", "no such model folder, and not a model URI; a registered model is models:/NAME@ALIAS"),
    ("models:/turkey-policy/999", "version 999 of 'turkey-policy' is not registered in the store sqlite:///"),
    ("models:/turkey-policy@nobody", "no version of 'turkey-policy' holds @nobody in the store"),
    ("runs:/0123456789abcdef/model", "cannot download the model"),
])
def test_a_model_that_cannot_be_resolved_exits_2_with_one_paragraph(reference, tmp_path, capsys, model, says):
    src = reference["path"].parent / "in.jsonl"
    assert main(["score", str(src), "-o", str(tmp_path / "o.jsonl"), "--model", model]) == 2
    assert says in _one_paragraph_error(capsys.readouterr().err)
    assert sorted(p.name for p in tmp_path.iterdir()) == []  # nothing written


@pytest.mark.parametrize("workers", [1, 2])
def test_a_model_that_cannot_be_loaded_exits_2_with_one_paragraph(reference, tmp_path, capsys, workers):
    """A folder with a valid MLmodel whose bundle is broken: the failure is in the (spawned) worker's load."""
    import mlflow

    model = Path(mlflow.artifacts.download_artifacts("models:/turkey-policy@champion", dst_path=str(tmp_path / "m")))
    (model / "artifacts" / "bundle" / "bundle.json").unlink()
    capsys.readouterr()  # the download's own progress bars
    src = reference["path"].parent / "in.jsonl"
    out = tmp_path / "o.jsonl"
    rc = main(["score", str(src), "-o", str(out), "--model", str(model), "--workers", str(workers)])
    assert rc == 2
    assert "cannot load the model" in _one_paragraph_error(capsys.readouterr().err)
    assert not out.exists() and not out.with_name("o.jsonl.partial").exists()  # nothing to resume either


def test_a_finished_output_is_refused_unless_overwrite(reference, tmp_path, capsys):
    src = reference["path"].parent / "in.jsonl"
    out = tmp_path / "out.jsonl"
    out.write_bytes(b"an earlier result\n")
    with pytest.raises(InputError, match="exists from a finished run; pass --overwrite"):
        score(src, out, "models:/turkey-policy@champion")
    assert main(["score", str(src), "-o", str(out)]) == 2
    assert "--overwrite" in _one_paragraph_error(capsys.readouterr().err)
    assert out.read_bytes() == b"an earlier result\n"
    with pytest.raises(InputError, match="exists from a finished run"):  # --resume is no way around it
        score(src, out, "models:/turkey-policy@champion", resume=True)
    assert main(["score", str(src), "-o", str(out), "--overwrite"]) == 0
    assert out.read_bytes() == reference["path"].read_bytes()
    assert sorted(p.name for p in tmp_path.iterdir()) == ["out.jsonl"]


def test_progress_lines_when_stderr_is_not_a_terminal(reference, tmp_path, capsys, monkeypatch):
    """Not a terminal (pytest captures stderr): lines with rows, rate, share read and ETA, at the interval given
    by TPC_PROGRESS_SECONDS (0: after every chunk; the default is 10 s)."""
    monkeypatch.setenv("TPC_PROGRESS_SECONDS", "0")
    src = reference["path"].parent / "in.jsonl"
    score(src, tmp_path / "o.jsonl", "models:/turkey-policy@champion", chunk_size=200)
    lines = [line for line in capsys.readouterr().err.splitlines() if line.startswith("tpc score:")]
    assert len(lines) == 3, lines  # 600 rows in chunks of 200
    pattern = re.compile(r"tpc score: ([\d,]+) rows, [\d,.]+ articles/s(, (\d+)% of the input read, ETA \d+ (s|min))?")
    rows = []
    for line in lines:
        m = pattern.fullmatch(line)
        assert m, line
        rows.append(int(m.group(1).replace(",", "")))
    assert rows == [200, 400, 600]
    assert "ETA" in lines[0] and "ETA" not in lines[-1]  # the last chunk has read the whole input
    monkeypatch.setenv("TPC_PROGRESS_SECONDS", "soon")
    with pytest.raises(InputError, match="TPC_PROGRESS_SECONDS"):
        score(src, tmp_path / "p.jsonl", "models:/turkey-policy@champion")


def test_a_progress_bar_on_a_terminal(reference, trained, tmp_path):
    import fcntl
    import os
    import pty
    import struct
    import subprocess
    import sys
    import termios

    src = reference["path"].parent / "in.jsonl"
    master, slave = pty.openpty()
    fcntl.ioctl(slave, termios.TIOCSWINSZ, struct.pack("HHHH", 24, 100, 0, 0))  # a terminal 100 columns wide
    env = {**os.environ, "MLFLOW_TRACKING_URI": trained["uri"]}
    proc = subprocess.Popen([sys.executable, "-m", "training.cli", "score", str(src), "-o", str(tmp_path / "o.jsonl"),
                             "--chunk-size", "100"], stdout=subprocess.DEVNULL, stderr=slave, env=env, cwd=tmp_path)
    os.close(slave)
    seen = b""
    while True:
        try:
            data = os.read(master, 65536)
        except OSError:  # the child closed the terminal
            break
        if not data:
            break
        seen += data
    assert proc.wait(timeout=300) == 0
    os.close(master)
    text = seen.decode("utf-8", "replace")
    assert "600/600" in text and " articles/s]" in text, text[-2000:]  # tqdm's bar, its total estimated as it goes
    assert "tpc score:" not in text  # no progress lines on a terminal
