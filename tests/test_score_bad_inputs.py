"""Bad input for `tpc score`, case by case: a row-level error record naming file and line, or a file-level failure
(exit 2) naming the file; every good row in the same file is still scored; exit 1 when some rows are errors."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from training.cli import main
from training.score import InputError, read_chunks

GOOD = ("date 2025-08-21\nLa Turquie n'enverra pas de troupes en Ukraine\nLa Turquie n'enverra pas de troupes de "
        "maintien de la paix en Ukraine, ont déclaré ce jeudi des responsables du ministère de la Défense.")


def _line(obj) -> bytes:
    return (json.dumps(obj, ensure_ascii=False) + "\n").encode("utf-8")


def _score(src: Path, out: Path, *extra: str) -> tuple[int, list[dict]]:
    code = main(["score", str(src), "-o", str(out), *extra])
    rows = [json.loads(line) for line in out.open(encoding="utf-8")] if out.exists() else []
    return code, rows


# (case, raw JSONL line, expected error substring or None when the row must be scored)
JSONL_CASES = [
    ("good-1", _line({"id": "good-1", "text": GOOD}), None),
    ("empty", _line({"id": "empty", "text": ""}), "`text` is empty"),
    ("whitespace", _line({"id": "whitespace", "text": " \n\t \u00a0 "}), "`text` is empty"),
    ("invalid-utf8", b'{"id": "invalid-utf8", "text": "caf\xe9 \xff"}\n', "invalid UTF-8"),
    ("binary", b"\x89PNG\r\x1a\x00\x00\x00\rIHDR\xfe\xfe\x00\n", "invalid UTF-8"),
    ("nul-escaped", _line({"id": "nul-escaped", "text": GOOD.replace("Ukraine,", "Ukraine,\u0000")}), None),
    ("nul-raw", b'{"id": "nul-raw", "text": "' + GOOD.replace("\n", "\\n").encode() + b'\x00"}\n', None),
    ("one-char", _line({"id": "one-char", "text": "a"}), None),
    ("english", _line({"id": "english", "text": "The weather in Oslo was mild and sunny all week."}), None),
    ("turkish", _line({"id": "turkish", "text": "Bugün İstanbul'da hava güneşli ve ılık olacak."}), None),
    ("missing-text", _line({"id": "missing-text", "body": GOOD}), "`text` is missing"),
    ("null-text", _line({"id": "null-text", "text": None}), "`text` is missing"),
    ("int-text", _line({"id": "int-text", "text": 42}), "`text` is int, expected a string"),
    ("list-text", _line({"id": "list-text", "text": ["a", "b"]}), "`text` is list, expected a string"),
    ("lone-surrogate", b'{"id": "lone-surrogate", "text": "abc \\ud800 def"}\n', "not valid UTF-8"),
    ("missing-id", _line({"text": GOOD}), None),
    ("good-1-dup", _line({"id": "good-1", "text": GOOD + " Encore."}), "duplicate id 'good-1'"),
    ("dict-id", _line({"id": {"a": 1}, "text": GOOD}), "`id` must be a string or an integer"),
    ("int-id", _line({"id": 7, "text": GOOD}), None),
    ("malformed", b'{"id": "malformed", "text": "unterminated\n', "invalid JSON"),
    ("array", b'["not", "an", "object"]\n', "expected a JSON object, got list"),
    ("good-2", _line({"id": "good-2", "text": GOOD.replace("Ukraine", "Libye")}), None),
]


@pytest.fixture(scope="module")
def mixed_jsonl(trained, tmp_path_factory):
    d = tmp_path_factory.mktemp("bad_jsonl")
    src = d / "mixed.jsonl"
    src.write_bytes(b"".join(raw for _, raw, _ in JSONL_CASES) + b"\n   \n")  # trailing blank lines are not rows
    before = src.read_bytes()
    code, rows = _score(src, d / "out.jsonl")
    assert src.read_bytes() == before  # input never touched
    return code, rows


def test_every_jsonl_case_gets_a_row_and_good_rows_are_scored(mixed_jsonl):
    code, rows = mixed_jsonl
    assert code == 1  # some rows are error records
    assert len(rows) == len(JSONL_CASES)
    for line_no, ((case, _, expected), row) in enumerate(zip(JSONL_CASES, rows), 1):
        if expected is None:
            assert row["error"] is None, (case, row["error"])
            assert row["n_passages"] >= 1, case
        else:
            assert expected in row["error"], (case, row["error"])
            assert row["error"].startswith(f"mixed.jsonl:{line_no}: "), (case, row["error"])  # file and line
            assert row["n_passages"] == 0 and row["topics"] == [], case


def test_good_rows_among_bad_ones_get_the_expected_predictions(mixed_jsonl):
    _, rows = mixed_jsonl
    by_case = dict(zip((c for c, _, _ in JSONL_CASES), rows))
    assert by_case["good-1"]["id"] == "good-1" and by_case["good-1"]["deployment"] is True
    assert by_case["nul-escaped"]["deployment"] is True and by_case["nul-raw"]["deployment"] is True
    assert by_case["missing-id"]["id"] == f"mixed.jsonl:{[c for c, _, _ in JSONL_CASES].index('missing-id') + 1}"
    assert by_case["int-id"]["id"] == "7"
    assert by_case["english"]["topics"] == [] and by_case["turkish"]["topics"] == []
    assert by_case["one-char"]["topics"] == []


def test_ten_megabyte_article_is_truncated_and_flagged(trained, tmp_path):
    huge = GOOD + "\n" + ("Le marché de Konya a ouvert comme chaque matin. " * 220_000)  # ~10.6 MB
    src = tmp_path / "huge.jsonl"
    src.write_bytes(_line({"id": "huge", "text": huge}) + _line({"id": "small", "text": GOOD}))
    assert src.stat().st_size > 10_000_000
    code, rows = _score(src, tmp_path / "out.jsonl", "--max-chars", "50000")
    assert code == 0
    assert rows[0]["truncated"] is True and rows[0]["error"] is None and rows[0]["deployment"] is True
    assert rows[1]["truncated"] is False


def test_csv_quoted_newlines_wrong_field_counts_and_bad_bytes(trained, tmp_path):
    src = tmp_path / "in.csv"
    src.write_bytes(
        b'id,text\n'
        b'a,"' + GOOD.encode() + b'"\n'                       # quoted field spanning three lines
        b'b,"one, two",extra\n'                                # line 5: a field too many
        b'c,"caf\xe9 \xff"\n'                                  # line 6: invalid UTF-8
        b'd,"Ankara et Kiev: ""paix"" en vue"\n'               # doubled quotes inside a field
    )
    code, rows = _score(src, tmp_path / "out.jsonl")
    assert code == 1 and [r["id"] for r in rows] == ["a", "", "c", "d"]
    assert rows[0]["error"] is None and rows[0]["deployment"] is True
    assert rows[1]["error"] == "in.csv:5: expected 2 fields, got 3"
    assert rows[2]["error"].startswith("in.csv:6: ") and "not valid UTF-8" in rows[2]["error"]
    assert rows[3]["error"] is None


def test_malformed_csv_quoting_fails_naming_file_and_line(trained, tmp_path, capsys):
    src = tmp_path / "in.csv"
    src.write_text('id,text\na,"fine"\nb,"bro"ken"\n', encoding="utf-8")
    code, _ = _score(src, tmp_path / "out.jsonl")
    assert code == 2
    assert "in.csv:3: malformed CSV" in capsys.readouterr().err
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.csv"]  # no half output, no sidecar


def test_parquet_wrong_schema_and_wrong_types(trained, tmp_path, capsys):
    pq.write_table(pa.table({"id": ["a"], "body": [GOOD]}), tmp_path / "noschema.parquet")
    code, _ = _score(tmp_path / "noschema.parquet", tmp_path / "o1.jsonl")
    assert code == 2 and "noschema.parquet: wrong schema: no `text` column" in capsys.readouterr().err
    pq.write_table(pa.table({"id": [1, 2, 3], "text": pa.array([b"\xff\xfe", GOOD.encode(), None])}),
                   tmp_path / "binary.parquet")
    code, rows = _score(tmp_path / "binary.parquet", tmp_path / "o2.jsonl")
    assert code == 1
    assert "binary.parquet:row 0: `text` is not valid UTF-8" in rows[0]["error"]
    assert rows[1]["error"] is None and rows[1]["id"] == "2"
    assert rows[2]["error"] == "binary.parquet:row 2: `text` is missing"
    (tmp_path / "fake.parquet").write_bytes(b"PAR1 this is not parquet")
    assert _score(tmp_path / "fake.parquet", tmp_path / "o3.jsonl")[0] == 2
    assert "fake.parquet: not a readable Parquet file" in capsys.readouterr().err


@pytest.mark.parametrize("name,content,message", [
    ("empty.jsonl", b"", "empty file"),
    ("blank.jsonl", b"\n  \n\n", "no articles found"),
    ("header.csv", b"id,text\n", "no articles found"),
    ("table.xlsx", b"x", "unsupported input type"),
])
def test_empty_or_unsupported_files_fail_at_file_level(trained, tmp_path, capsys, name, content, message):
    (tmp_path / name).write_bytes(content)
    code, _ = _score(tmp_path / name, tmp_path / "out.jsonl")
    assert code == 2
    assert f"{name}: {message}" in capsys.readouterr().err
    assert not (tmp_path / "out.jsonl").exists() and not (tmp_path / "out.jsonl.partial").exists()


def test_folder_with_unreadable_and_undecodable_files(trained, tmp_path):
    folder = tmp_path / "articles"
    folder.mkdir()
    (folder / "a.txt").write_text(GOOD, encoding="utf-8")
    (folder / "b.txt").write_bytes(b"\xff\xfe\x00 binary")
    (folder / "c.txt").symlink_to(tmp_path / "gone.txt")  # dangling: cannot be opened
    (folder / "d.txt").mkdir()  # not a file
    (folder / "e.txt").write_text("   ", encoding="utf-8")
    (folder / "notes.md").write_text("ignored: not an article", encoding="utf-8")
    if hasattr(os, "mkfifo"):
        os.mkfifo(folder / "f.txt")  # opening it would block forever
    code, rows = _score(folder, tmp_path / "out.jsonl")
    assert code == 1
    by_id = {r["id"]: r for r in rows}
    assert list(by_id) == ["a", "b", "c", "d", "e"] + (["f"] if hasattr(os, "mkfifo") else [])
    assert by_id["a"]["error"] is None and by_id["a"]["deployment"] is True
    assert by_id["b"]["error"].startswith("b.txt: not valid UTF-8")
    assert by_id["c"]["error"].startswith("c.txt: ")
    assert by_id["d"]["error"] == "d.txt: not a regular file"
    assert by_id["e"]["error"] == "e.txt: `text` is empty"


def test_output_never_overwrites_input_or_escapes(trained, tmp_path, capsys):
    src = tmp_path / "in.jsonl"
    src.write_bytes(_line({"id": "a", "text": GOOD}))
    before = src.read_bytes()
    assert main(["score", str(src), "-o", str(src)]) == 2
    assert "would overwrite the input" in capsys.readouterr().err
    (tmp_path / "link.jsonl").symlink_to(src)
    assert main(["score", str(src), "-o", str(tmp_path / "link.jsonl")]) == 2
    assert src.read_bytes() == before
    folder = tmp_path / "txt"
    folder.mkdir()
    (folder / "a.txt").write_text(GOOD, encoding="utf-8")
    assert main(["score", str(folder), "-o", str(folder / "out.jsonl")]) == 2
    assert "inside the input folder" in capsys.readouterr().err
    assert main(["score", str(src), "-o", str(tmp_path / "no" / "such" / "dir.jsonl")]) == 2
    assert main(["score", str(src), "-o", str(tmp_path / "out.csv")]) == 2
    out_dir = tmp_path / "out"
    out_dir.mkdir()
    assert main(["score", str(src), "-o", str(out_dir / "scored.jsonl")]) == 0
    assert sorted(p.name for p in out_dir.iterdir()) == ["scored.jsonl"]


@settings(max_examples=150, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(lines=st.lists(st.one_of(st.binary(max_size=60), st.text(max_size=60).map(lambda s: s.encode("utf-8")),
                                st.builds(lambda i, t: _line({"id": i, "text": t}).rstrip(b"\n"),
                                          st.one_of(st.none(), st.text(max_size=5), st.integers()),
                                          st.one_of(st.none(), st.text(max_size=40), st.integers()))),
                      min_size=1, max_size=20))
def test_reader_gives_one_row_per_non_blank_line_whatever_the_bytes(tmp_path_factory, lines):
    lines = [raw.replace(b"\n", b" ").replace(b"\r", b" ") for raw in lines]
    src = tmp_path_factory.mktemp("prop") / "in.jsonl"
    src.write_bytes(b"\n".join(lines) + b"\n")
    expected = sum(_not_blank(raw) for raw in lines)
    try:
        chunks = list(read_chunks(src, chunk_size=7))
    except InputError as exc:
        assert expected == 0 and ("empty file" in str(exc) or "no articles found" in str(exc))
        return
    rows = [(i, t, e) for c in chunks for i, t, e in zip(c.ids, c.texts, c.errors)]
    assert len(rows) == expected
    for rid, text, error in rows:
        assert (text is None) == (error is not None)  # every row is either scorable text or an error record
        if error is not None:
            assert error.startswith("in.jsonl:")
        else:
            text.encode("utf-8")  # what reaches the model is always encodable


def _not_blank(raw: bytes) -> bool:
    try:
        return bool(raw.decode("utf-8").strip())
    except UnicodeDecodeError:
        return True
