"""Data files: every bad row is refused with its file and line; the project's data validates and meets the
corpus minimums (issue 9); written passages are not templated and the challenge set is kept apart from them."""

import collections
import glob
import json
import re
import shutil
from pathlib import Path

import pytest

from training import STANCES, TOPICS
from training.articles import read_article
from training.data import DataError, load_files, load_jsonl, load_seed_gold

REPO = Path(__file__).resolve().parents[1]
GOOD = {"id": "w-1", "text": "Ankara refuse l'embargo.", "topics": ["sanctions"], "stance": {"sanctions": "against"},
        "event": "ev-1", "source": "synthetic"}


def _write(path: Path, *rows) -> Path:
    path.write_text("".join((r if isinstance(r, str) else json.dumps(r, ensure_ascii=False)) + "\n" for r in rows),
                    encoding="utf-8")
    return path


def _row(**changes):
    row = dict(GOOD, **changes)
    return {k: v for k, v in row.items() if v is not _DROP}


_DROP = object()


@pytest.mark.parametrize("bad,message", [
    ('{"id": "w-2", "text": ', "invalid JSON"),
    ("[1, 2, 3]", "expected a JSON object, got list"),
    ('"just a string"', "expected a JSON object, got str"),
    (_row(id="w-2", text=_DROP), "missing key(s) ['text']"),
    (_row(id="w-2", topics=_DROP, stance=_DROP), "missing key(s) ['stance', 'topics']"),
    (_row(id="w-2", comment="x"), "unknown key(s) ['comment']"),
    (_row(id="w-2", text="   "), "`text` must be a non-empty string"),
    (_row(id="w-2", text=None), "`text` must be a non-empty string"),
    (_row(id="w-2", text=42), "`text` must be a non-empty string"),
    (_row(id=""), "`id` must be a non-empty string"),
    (_row(id=7), "`id` must be a non-empty string"),
    (_row(id="w-2", topics=["war"], stance={"war": "none"}), "`topics` must be a list of distinct labels"),
    (_row(id="w-2", topics=["sanctions", "sanctions"]), "`topics` must be a list of distinct labels"),
    (_row(id="w-2", topics="sanctions"), "`topics` must be a list of distinct labels"),
    (_row(id="w-2", stance={}), "`stance` must have exactly one entry per topic present"),
    (_row(id="w-2", stance={"sanctions": "against", "mediation": "none"}), "exactly one entry per topic"),
    (_row(id="w-2", topics=[], stance={"sanctions": "none"}), "exactly one entry per topic"),
    (_row(id="w-2", stance={"sanctions": "pro"}), "stance value(s) {'sanctions': 'pro'} not in ['favor', 'against', 'none']"),
    (_row(id="w-2", event=""), "`event` must be a non-empty string"),
    (_row(id="w-2", source="web"), "`source` must be 'synthetic' (written) or 'seed' (real)"),
    (_row(id="w-2", date="2023-02-29"), "`date` must be YYYY-MM-DD or YYYY-MM"),
    (_row(id="w-2", date="hier"), "`date` must be YYYY-MM-DD or YYYY-MM"),
])
def test_bad_row_names_file_line_and_rule(tmp_path, bad, message):
    path = _write(tmp_path / "rows.jsonl", GOOD, "", bad)
    with pytest.raises(DataError) as err:
        load_jsonl(path)
    assert str(err.value).startswith(f"{path}:3: ")
    assert message in str(err.value)


def test_valid_optional_fields_are_kept(tmp_path):
    path = _write(tmp_path / "rows.jsonl", _row(date="2024-02-29"), _row(id="w-2", date="2024-02", topics=[], stance={}))
    corpus = load_jsonl(path)
    assert [e.date for e in corpus.examples] == ["2024-02-29", "2024-02"]
    assert [e.origin for e in corpus.examples] == [f"{path}:1", f"{path}:2"]


def test_invalid_utf8_names_line_and_byte(tmp_path):
    path = tmp_path / "rows.jsonl"
    path.write_bytes(json.dumps(GOOD).encode() + b"\n" + b'{"id": "w-2", "text": "caf\xe9"}\n')
    with pytest.raises(DataError, match=r"rows\.jsonl:2: not valid UTF-8 \(invalid continuation byte at byte 26\)"):
        load_jsonl(path)


def test_empty_and_blank_files_are_refused(tmp_path):
    for name, content in (("empty.jsonl", ""), ("blank.jsonl", "\n  \n\n")):
        path = tmp_path / name
        path.write_text(content)
        with pytest.raises(DataError, match=rf"{re.escape(str(path))}: no passages"):
            load_jsonl(path)


def test_missing_file_and_folder_are_refused(tmp_path):
    with pytest.raises(DataError, match="data file not found"):
        load_jsonl(tmp_path / "nope.jsonl")
    (tmp_path / "dir.jsonl").mkdir()
    with pytest.raises(DataError, match=r"dir\.jsonl: not a regular file"):
        load_files(["*.jsonl"], root=tmp_path)


def test_glob_matching_nothing_names_key_and_pattern(tmp_path):
    with pytest.raises(DataError, match=r"^data\.train: pattern 'data/\*\.jsonl' matched no file under "):
        load_files(["data/*.jsonl"], root=tmp_path)
    with pytest.raises(DataError, match=r"^promotion\.eval_data: pattern"):
        load_files(["x/*.jsonl"], root=tmp_path, key="promotion.eval_data")


def test_duplicate_ids_across_files_name_both_places(tmp_path):
    a = _write(tmp_path / "a.jsonl", GOOD)
    b = _write(tmp_path / "b.jsonl", _row(id="w-9"), _row(text="Autre texte."))
    with pytest.raises(DataError) as err:
        load_files(["*.jsonl"], root=tmp_path)
    assert str(err.value) == f"{b}:2: duplicate id 'w-1' (first at {a}:1)"


# -- seed gold labels ---------------------------------------------------------------------------------------------
@pytest.fixture
def seed_copy(tmp_path):
    shutil.copytree(REPO / "seeds", tmp_path / "seeds")
    rows = [json.loads(line) for line in (REPO / "data" / "seeds_gold.jsonl").read_text(encoding="utf-8").splitlines()]
    return tmp_path, rows


def _gold(tmp_path, rows) -> Path:
    return _write(tmp_path / "gold.jsonl", *rows)


def test_seed_gold_detects_changed_passage(seed_copy):
    tmp, rows = seed_copy
    rows[3] = dict(rows[3], text=rows[3]["text"] + " Ajout.")
    with pytest.raises(DataError, match=r"gold\.jsonl:4: passage .* no longer matches the reader's splitting"):
        load_seed_gold(_gold(tmp, rows), tmp / "seeds")


def test_seed_gold_detects_unlabelled_passage(seed_copy):
    tmp, rows = seed_copy
    with pytest.raises(DataError, match=r"passages without gold labels: \['000_7557a05424130f05#12'\]"):
        load_seed_gold(_gold(tmp, [r for r in rows if r["id"] != "000_7557a05424130f05#12"]), tmp / "seeds")


@pytest.mark.parametrize("bad_id,message", [
    ("000_7557a05424130f05#99", r"names no passage of 000_7557a05424130f05 \(it has 13\)"),
    ("000_7557a05424130f05#²", "names no passage"),
    ("000_7557a05424130f05", "names no passage"),
    ("../data/x#0", "must be ARTICLE#INDEX with a plain article file name"),
    ("missing_article#0", "seed article .*missing_article.txt not found"),
])
def test_seed_gold_bad_ids(seed_copy, bad_id, message):
    tmp, rows = seed_copy
    rows[0] = dict(rows[0], id=bad_id)
    with pytest.raises(DataError, match=rf"gold\.jsonl:1: .*{message}"):
        load_seed_gold(_gold(tmp, rows), tmp / "seeds")


def test_seed_article_with_invalid_utf8_is_named(seed_copy):
    tmp, rows = seed_copy
    f = tmp / "seeds" / "000_7557a05424130f05.txt"
    f.write_bytes(f.read_bytes() + b"\xff")
    with pytest.raises(DataError, match=r"000_7557a05424130f05\.txt: not valid UTF-8"):
        load_seed_gold(_gold(tmp, rows), tmp / "seeds")


# -- the project's own data ---------------------------------------------------------------------------------------
# Passage files; data/real/ holds labels keyed by OrangeSum ids and digests, validated by tests/test_real.py.
DATA_FILES = sorted(p for p in glob.glob(str(REPO / "data" / "**" / "*.jsonl"), recursive=True)
                    if "/data/real/" not in p)


@pytest.mark.parametrize("path", DATA_FILES, ids=lambda p: str(Path(p).relative_to(REPO)))
def test_every_data_file_validates(path):
    assert len(load_jsonl(path)) > 0


@pytest.fixture(scope="module")
def written():
    return load_files(["data/written/*.jsonl"], root=REPO)


@pytest.fixture(scope="module")
def challenge():
    return load_files(["data/challenge/*.jsonl"], root=REPO, key="promotion.eval_data")


def test_all_files_together_have_unique_ids(written, challenge):
    load_files(["data/written/*.jsonl", "data/challenge/*.jsonl", "data/seeds_gold.jsonl"], root=REPO)


def test_written_corpus_meets_the_minimums(written):
    topic = collections.Counter(t for e in written.examples for t in e.topics)
    pair = collections.Counter((t, s) for e in written.examples for t, s in e.stance.items())
    assert len(written) >= 2000
    assert {t: topic[t] for t in TOPICS if topic[t] < 300} == {}
    assert {f"{t}:{s}": pair[t, s] for t in TOPICS for s in STANCES if pair[t, s] < 60} == {}
    assert sum(1 for e in written.examples if not e.topics) >= 700
    assert {e.source for e in written.examples} == {"synthetic"}
    assert sum(1 for e in written.examples if len(e.topics) > 1) > 0  # topics also appear in combination


def _five_grams(text: str) -> set[tuple[str, ...]]:
    words = re.findall(r"\w+", text.lower())
    return {tuple(words[i:i + 5]) for i in range(len(words) - 4)}


def _overlaps(left: list[set], right: list[set], same: bool) -> list[tuple[int, int, int]]:
    """(i, j, shared) for pairs sharing more than half of either side's 5-grams, through an inverted index."""
    index: dict[tuple, list[int]] = collections.defaultdict(list)
    for j, grams in enumerate(right):
        for g in grams:
            index[g].append(j)
    found = []
    for i, grams in enumerate(left):
        shared = collections.Counter(j for g in grams for j in index.get(g, ()) if not same or j > i)
        found += [(i, j, n) for j, n in shared.items() if n > 0.5 * min(len(grams), len(right[j]))]
    return found


def test_no_two_written_passages_share_half_their_five_grams(written):
    grams = [_five_grams(t) for t in written.texts]
    pairs = _overlaps(grams, grams, same=True)
    assert [(written.examples[i].id, written.examples[j].id, n) for i, j, n in pairs] == []


def test_challenge_set_is_apart_from_written_passages(written, challenge):
    assert {e.event for e in challenge.examples} & {e.event for e in written.examples} == set()
    pairs = _overlaps([_five_grams(t) for t in challenge.texts], [_five_grams(t) for t in written.texts], same=False)
    assert [(challenge.examples[i].id, written.examples[j].id, n) for i, j, n in pairs] == []


def test_seed_gold_covers_every_seed_passage():
    gold = load_seed_gold(REPO / "data" / "seeds_gold.jsonl", REPO / "seeds")
    expected = {f"{p.stem}#{q.index}" for p in (REPO / "seeds").glob("*.txt")
                for q in read_article(p.read_text(encoding="utf-8")).passages}
    assert {e.id for e in gold.examples} == expected
    assert {e.source for e in gold.examples} == {"seed"}


def test_overlap_check_finds_a_copied_passage():
    """The 5-gram check is not vacuous: a light edit of a passage is caught."""
    a = "La Turquie a refusé jeudi de livrer des drones armés à l'Ukraine, a indiqué le ministère de la Défense."
    b = a.replace("jeudi", "vendredi")
    shared = len(_five_grams(a) & _five_grams(b))
    assert 0.5 * len(_five_grams(a)) < shared < len(_five_grams(a))
    assert _overlaps([_five_grams(a)], [_five_grams(b)], same=False) == [(0, 0, shared)]
    assert _overlaps([_five_grams(a)], [_five_grams("Le Conseil européen a prolongé les sanctions contre Moscou.")],
                     same=False) == []
