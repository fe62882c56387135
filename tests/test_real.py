"""The labelled real corpus (data/real/): keyed by id and digest only, checked against the reader on load, big
enough for the issue's sample, split by event and month with a test split apart; metrics on real text."""

import json
import re
import shutil
from collections import Counter
from pathlib import Path

import numpy as np
import pandas as pd
import pytest

from training import TOPICS
from training.articles import read_article
from training.data import DataError
from training.datacard import real_counts
from training.real import RealArticle, article_gold, load_real, passage_corpus, turkey_pairs
from training.real_eval import KeywordBaseline, real_metrics

REPO = Path(__file__).resolve().parents[1]
LABELS = REPO / "data" / "real" / "labels.jsonl"
ROW_KEYS = {"article_id", "date", "section", "sample", "event", "split", "passages"}


@pytest.fixture(scope="module")
def arts():
    return load_real(LABELS)


@pytest.fixture(scope="module")
def card():
    return real_counts(str(LABELS), str(LABELS.parent / "annotations"))


def test_no_third_party_text_is_committed():
    for path in sorted((REPO / "data" / "real").rglob("*.jsonl")):
        for line in path.read_text(encoding="utf-8").splitlines():
            row = json.loads(line)
            assert "text" not in row and "title" not in row and "abstract" not in row, path
            if path == LABELS:
                assert set(row) == ROW_KEYS
                assert all(set(p) == {"i", "digest", "labels"} for p in row["passages"])


def test_the_sample_holds_what_it_was_drawn_for(card, arts):
    samples = Counter(a.sample.split(":")[0] for a in arts)
    assert card["articles"] >= 1500 and card["splits"]["test"] >= 400
    assert samples["random"] >= 500 and samples["hard_negative"] >= 150
    assert samples["suggest"] >= 600  # retrieved by `tpc data suggest` (uncertainty and likely positives)
    assert card["no_topic_articles"] > card["articles"] / 2  # the random share keeps real prevalence
    # The issue asked for 120 articles per topic and 80 favor / 40 against pairs; OrangeSum has 477 articles
    # naming Turkey and arms deals are rare in it, so these are the floors of what the labelled corpus holds.
    assert all(n >= 90 for n in card["topic_articles"].values()), card["topic_articles"]
    assert card["turkey_stance_pairs"]["favor"] >= 60 and card["turkey_stance_pairs"]["against"] >= 20
    assert all(k >= 0.7 for k in card["kappa"].values()) and set(card["kappa"]) == set(TOPICS)


def test_every_article_that_names_turkey_is_labelled(arts):
    from training.orangesum import TURKEY_PATTERN, iter_rows

    pattern = re.compile(TURKEY_PATTERN)
    naming = {r["id"] for r in iter_rows() if pattern.search(f"{r.get('title') or ''}\n{r.get('text') or ''}".lower())}
    labelled = {a.id for a in arts}
    assert len(naming) >= 470 and not naming - labelled, sorted(naming - labelled)[:5]


def test_splits_never_share_an_event_or_a_week(arts):
    from training.real_splits import week_of

    split_of_event, split_of_week = {}, {}
    for a in arts:
        assert split_of_event.setdefault(a.event, a.split) == a.split, a.event
        assert split_of_week.setdefault(week_of(a.date), a.split) == a.split, a.date


def test_every_split_can_measure_every_topic_and_turkeys_stance(arts):
    for split in ("dev", "test"):
        part = [a for a in arts if a.split == split]
        gold = article_gold(part)
        assert gold.sum(0).min() >= 15, (split, gold.sum(0))
        stances = Counter(s for s in turkey_pairs(part)[2])
        assert stances["favor"] >= 5 and stances["against"] >= 3, (split, stances)


def test_a_label_whose_digest_no_longer_matches_is_refused(tmp_path):
    rows = LABELS.read_text(encoding="utf-8").splitlines()
    row = json.loads(rows[3])
    row["passages"][1]["digest"] = "000000000000"
    bad = tmp_path / "labels.jsonl"
    bad.write_text("\n".join(rows[:3] + [json.dumps(row)]) + "\n")
    with pytest.raises(DataError, match=rf"labels.jsonl:4: {row['article_id']}#1: digest 000000000000 no longer matches"):
        load_real(bad)
    row["passages"] = row["passages"][:-1]
    bad.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match="labels.jsonl:1: .* passages in the reader's splitting, the labels list"):
        load_real(bad)


def test_a_bad_label_row_is_refused(tmp_path):
    row = json.loads(LABELS.read_text(encoding="utf-8").splitlines()[0])
    row["split"] = "holdout"
    bad = tmp_path / "labels.jsonl"
    bad.write_text(json.dumps(row) + "\n")
    with pytest.raises(DataError, match="labels.jsonl:1: split 'holdout'"):
        load_real(bad)


def test_passages_become_real_examples_grouped_by_event(arts):
    some = arts[:20]
    corpus = passage_corpus(some)
    assert len(corpus) == sum(len(a.article.passages) for a in some)
    assert {e.source for e in corpus.examples} == {"real"}
    assert {e.event for e in corpus.examples} == {a.event for a in some}


def _art(aid, text, labels, split="dev"):
    return RealArticle(aid, split, aid, None, None, "random", read_article(text, id=aid), labels, text)


ARTS = [
    _art("a", "Ankara refuse les sanctions.\nLa Turquie rejette l'embargo décidé par l'UE contre elle.",
         {1: {"sanctions": "against"}}),
    _art("b", "Le match a été arrêté.\nLe club écope d'une sanction de la ligue.", {}),
    _art("c", "La Turquie se dit prête à accueillir des pourparlers.\nErdogan propose une médiation.",
         {0: {"mediation": "favor"}, 1: {"mediation": "favor"}}),
]


def test_a_perfect_model_scores_one_and_the_keyword_list_takes_the_bait():
    def perfect(df):
        gold = {a.id: a for a in ARTS}
        rows = []
        for rid, text in zip(df["id"], df["text"]):
            a = gold.get(rid)
            lab = {} if a is None else {t: s for d in a.labels.values() for t, s in d.items()}
            if a is None:  # a passage scored alone: its own labels
                lab = next(({**d} for x in ARTS for i, d in x.labels.items() if x.article.passages[i].text == text), {})
            rows.append({"id": rid, **{t: t in lab for t in TOPICS}, **{f"{t}_stance": lab.get(t) for t in TOPICS}})
        return pd.DataFrame(rows)

    m = real_metrics(perfect, ARTS, "real_dev")
    assert m["real_dev_article_topic_macro_f1"] == 1.0 and m["real_dev_turkey_stance_favor_against_f1"] == 1.0
    assert m["real_dev_turkey_pairs"] == 3
    kw = real_metrics(KeywordBaseline({"topics": {"sanctions": ["sanction", "embargo"], "mediation": ["médiation"]},
                                       "stance": {"against": ["rejette"], "favor": ["propose"],
                                                  "turkey": ["turquie", "erdogan", "ankara"]}}).predict_frame,
                      ARTS, "kw")
    assert kw["kw_article_topic_sanctions_precision"] == 0.5  # the football "sanction" is a false alarm
    assert kw["kw_article_topic_mediation_recall"] == 1.0


def test_turkey_pairs_come_from_articles_that_name_turkey():
    texts, topics, stances = turkey_pairs(ARTS + [_art("d", "Paris impose des sanctions.\nFin.", {0: {"sanctions": "none"}})])
    assert topics == ["sanctions", "mediation", "mediation"] and stances == ["against", "favor", "favor"]


def test_tpc_evaluate_reports_real_text_for_any_model(trained, capsys, monkeypatch):
    from training.cli import main

    monkeypatch.chdir(trained["dir"])
    assert main(["evaluate", "models:/turkey-policy@champion", "--real", "dev"]) == 0
    m = json.loads(capsys.readouterr().out)
    # the same numbers the training run logged for its held-out model (the registered model is that model)
    logged = trained["result"]["metrics"]
    assert m["real_dev_article_topic_macro_f1"] == pytest.approx(logged["real_dev_article_topic_macro_f1"])
    assert m["real_dev_turkey_stance_favor_against_f1"] == pytest.approx(logged["real_dev_turkey_stance_favor_against_f1"])
    for t in TOPICS:
        assert 0 <= m[f"real_dev_article_topic_{t}_precision"] <= 1 and 0 <= m[f"real_dev_article_topic_{t}_recall"] <= 1
    assert main(["evaluate", "models:/turkey-policy@champion"]) == 2
    assert "--real" in capsys.readouterr().err


def test_labels_are_rebuilt_from_the_committed_passes(tmp_path):
    """labels.jsonl is exactly what the merge scripts make of the two blind passes, the third reading and the
    stance pass: nothing in it was edited by hand."""
    from training.labelling import main as labelling

    real = REPO / "data" / "real"
    ann = real / "annotations"
    topics = tmp_path / "topics.jsonl"
    assert labelling(["finalize", "--a", str(ann / "pass_a.jsonl"), "--b", str(ann / "pass_b.jsonl"),
                      "--queue", *map(str, sorted((real / "queues").glob("round*.jsonl"))),
                      "--adjudication", str(ann / "adjudication.jsonl"), "-o", str(topics)]) == 0
    rebuilt = tmp_path / "labels.jsonl"
    assert labelling(["stance-apply", str(topics), "--a", str(ann / "stance_pass_a.jsonl"),
                      "--b", str(ann / "stance_pass_b.jsonl"), "--adjudication", str(ann / "stance_adjudication.jsonl"),
                      "-o", str(rebuilt)]) == 0
    assert rebuilt.read_bytes() == LABELS.read_bytes()
