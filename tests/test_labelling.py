"""The labelling tools: pass files are validated, kappa is Cohen's, disagreements go to a third reading, and
the splits keep events and months whole."""

import json
from pathlib import Path

import numpy as np
import pytest
from sklearn.metrics import cohen_kappa_score

from training import real_splits
from training.labelling import PassError, agreement, cohen_kappa, disagreements, merge, read_adjudication, read_pass

N = {"orangesum-1": 3, "orangesum-2": 2}


def _pass(tmp_path: Path, name: str, rows) -> Path:
    path = tmp_path / name
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("seed", range(5))
def test_kappa_is_cohens(seed):
    rng = np.random.default_rng(seed)
    a = rng.integers(0, 3, 200)
    b = np.where(rng.random(200) < 0.7, a, rng.integers(0, 3, 200))
    assert cohen_kappa(list(a), list(b)) == pytest.approx(cohen_kappa_score(a, b))


def test_kappa_of_identical_single_category_is_one():
    assert cohen_kappa([0, 0, 0], [0, 0, 0]) == 1.0


@pytest.mark.parametrize("row,message", [
    ({"article_id": "orangesum-9", "labels": {}}, "unknown article"),
    ({"article_id": "orangesum-1", "labels": {"3": {"sanctions": "none"}}}, "has no passage '3'"),
    ({"article_id": "orangesum-1", "labels": {"0": {"sanction": "none"}}}, "not in topics"),
    ({"article_id": "orangesum-1", "labels": {"0": {"sanctions": "pro"}}}, "not in topics"),
])
def test_a_bad_pass_line_is_refused_with_file_and_line(tmp_path, row, message):
    path = _pass(tmp_path, "a.jsonl", [{"article_id": "orangesum-2", "labels": {}}, row])
    with pytest.raises(PassError, match=rf"a.jsonl:2: .*{message}"):
        read_pass([path], N)


def test_an_article_without_a_line_is_refused(tmp_path):
    path = _pass(tmp_path, "a.jsonl", [{"article_id": "orangesum-2", "labels": {}}])
    with pytest.raises(PassError, match="1 articles without a line.*orangesum-1"):
        read_pass([path], N)


def test_disagreements_go_to_adjudication_and_agreements_stand(tmp_path):
    a = read_pass([_pass(tmp_path, "a.jsonl", [
        {"article_id": "orangesum-1", "labels": {"0": {"mediation": "favor"}, "2": {"sanctions": "none"}}},
        {"article_id": "orangesum-2", "labels": {}}])], N)
    b = read_pass([_pass(tmp_path, "b.jsonl", [
        {"article_id": "orangesum-1", "labels": {"0": {"mediation": "favor"}, "1": {"deployment": "none"}}},
        {"article_id": "orangesum-2", "labels": {"1": {"arms_trade": "none"}}}])], N)
    items = disagreements(a, b, N)
    assert items == [("orangesum-1", 1), ("orangesum-1", 2), ("orangesum-2", 1)]
    adj = _pass(tmp_path, "adj.jsonl", [{"article_id": "orangesum-1", "passage": 1, "labels": {}},
                                        {"article_id": "orangesum-1", "passage": 2, "labels": {"sanctions": "none"}},
                                        {"article_id": "orangesum-2", "passage": 1, "labels": {"arms_trade": "none"}}])
    final = merge(a, b, read_adjudication([adj], items))
    assert final == {"orangesum-1": {0: {"mediation": "favor"}, 2: {"sanctions": "none"}},
                     "orangesum-2": {1: {"arms_trade": "none"}}}
    with pytest.raises(PassError, match="misses 1 disputed"):
        read_adjudication([_pass(tmp_path, "short.jsonl", [{"article_id": "orangesum-1", "passage": 1, "labels": {}},
                                                            {"article_id": "orangesum-1", "passage": 2, "labels": {}}])],
                          items)
    agree = agreement(a, b, N)
    assert agree["passages"] == 5 and agree["passages_disagreeing"] == 3
    assert agree["topic_kappa"]["mediation"] == 1.0 and agree["disagreements"]["sanctions"] == 1


def test_splits_keep_near_duplicates_and_weeks_whole_and_share_what_evaluation_needs():
    story = "le conseil de sécurité a voté une résolution sur le cessez-le-feu en libye après des semaines de " \
            "pourparlers entre les délégations réunies à genève sous l'égide des nations unies"
    ids = [f"orangesum-{i}" for i in range(60)]
    texts = [f"{story} mise à jour {i}" if i < 3 else f"article {i} sur un sujet {i * 7} différent numéro {i}"
             for i in range(60)]
    # the three copies of one story straddle two weeks: they must still end up together
    dates = ["2020-01-31", "2020-02-03", "2020-02-04"] + [f"20{16 + i % 5}-{1 + i % 12:02d}-10" for i in range(3, 60)]
    rare = np.array([[int(i % 10 == 5)] for i in range(60)])  # 6 articles carry a rare quantity (a stance pair)
    event_of, split_of = real_splits.assign(ids, texts, dates, rare, seed=3)
    assert len({event_of[a] for a in ids[:3]}) == 1 and len({split_of[a] for a in ids[:3]}) == 1
    by_week: dict[str, set] = {}
    for aid, d in zip(ids, dates):
        by_week.setdefault(real_splits.week_of(d), set()).add(split_of[aid])
    assert all(len(s) == 1 for s in by_week.values() if s) and len(by_week) > 3
    assert set(split_of.values()) == {"train", "dev", "test"}
    # the rare quantity lands in every split, not wherever the dates fell
    assert {split_of[ids[i]] for i in range(60) if rare[i, 0]} == {"train", "dev", "test"}


def test_a_stance_pass_must_cover_exactly_the_marked_pairs(tmp_path):
    from training.labelling import read_stance_pass

    pairs = {("orangesum-1", 0, "mediation"), ("orangesum-1", 2, "sanctions")}
    good = _pass(tmp_path, "s.jsonl", [{"article_id": "orangesum-1", "passage": 0, "stance": {"mediation": "favor"}},
                                       {"article_id": "orangesum-1", "passage": 2, "stance": {"sanctions": "none"}}])
    assert read_stance_pass([good], pairs) == {("orangesum-1", 0, "mediation"): "favor",
                                               ("orangesum-1", 2, "sanctions"): "none"}
    extra = _pass(tmp_path, "x.jsonl", [{"article_id": "orangesum-1", "passage": 1, "stance": {"mediation": "favor"}}])
    with pytest.raises(PassError, match=r"x.jsonl:1: .* is not a marked pair"):
        read_stance_pass([extra], pairs)
    short = _pass(tmp_path, "y.jsonl", [{"article_id": "orangesum-1", "passage": 0, "stance": {"mediation": "none"}}])
    with pytest.raises(PassError, match="1 marked pairs without a stance"):
        read_stance_pass([short], pairs)
