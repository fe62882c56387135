"""`tpc data suggest`: the labelling queue ranks by uncertainty around each topic's decision threshold, spreads
over topics and stories, mixes in a random share, and never queues what is already labelled."""

import json
import subprocess
import sys

import numpy as np
import pandas as pd
import pytest

from training import TOPICS
from training.suggest import SuggestError, decision_thresholds, read_scored, suggest


def _scored(n=400, seed=0) -> pd.DataFrame:
    rng = np.random.default_rng(seed)
    rows = []
    for i in range(n):
        row = {"id": f"a{i}", "title": f"titre {i} sujet {i % 37}", "error": None}
        for t in TOPICS:
            p = float(rng.beta(0.5, 3))
            row[f"{t}_prob"], row[t] = p, p >= 0.4
            row[f"{t}_evidence"] = f"passage {t} {i}"
        rows.append(row)
    return pd.DataFrame(rows)


def test_thresholds_are_read_off_the_decisions():
    tau = decision_thresholds(_scored(), list(TOPICS))
    assert np.all(np.abs(tau - 0.4) < 0.02)  # midway between the lowest positive and the highest negative


def test_queue_size_random_share_and_exclusions():
    df = _scored()
    q = suggest(df, 50, exclude={"a1", "a2"}, random_share=0.2, seed=1)
    assert len(q) == 50 and q["article_id"].is_unique
    assert (q["sample"] == "suggest:random").sum() == 10
    assert not {"a1", "a2"} & set(q["article_id"])


def test_uncertain_articles_come_first_and_every_topic_gets_a_share():
    df = _scored()
    q = suggest(df, 40, random_share=0.0, diversity=0.0)
    assert set(q["topic"]) == set(TOPICS)
    # with no diversity term, each topic's picks are its most uncertain articles
    for t in TOPICS:
        picked = q.loc[q["topic"] == t, "uncertainty"].to_numpy()
        assert np.all(np.diff(picked) <= 1e-9)
    assert q["uncertainty"].min() > np.median(suggest(df, 400, random_share=0.0)["uncertainty"])


def test_diversity_keeps_copies_of_one_story_apart():
    df = _scored(200)
    for t in TOPICS:  # ten copies of one dispatch, all at the threshold
        df.loc[:9, f"{t}_prob"] = 0.39
        df.loc[:9, f"{t}_evidence"] = "la même dépêche sur le même sujet"
    df.loc[:9, "title"] = "la même dépêche"
    plain = suggest(df, 12, random_share=0.0, diversity=0.0)
    diverse = suggest(df, 12, random_share=0.0, diversity=0.5)
    copies = {f"a{i}" for i in range(10)}
    assert len(copies & set(plain["article_id"])) > len(copies & set(diverse["article_id"])) >= 1


def test_likely_positive_keeps_only_articles_near_or_above_a_threshold():
    df = _scored()
    q = suggest(df, 30, positive_margin=0.0, random_share=0.3)
    decided = df.set_index("id")[list(TOPICS)].any(axis=1)
    assert decided[q["article_id"]].all()


def test_not_a_scored_file_is_refused(tmp_path):
    path = tmp_path / "x.jsonl"
    path.write_text('{"id": "a", "text": "t"}\n')
    with pytest.raises(SuggestError, match="not a `tpc score` output"):
        read_scored(path)


def test_cli_writes_the_queue_and_excludes_labelled_files(tmp_path):
    scored, labelled, queue = tmp_path / "scored.jsonl", tmp_path / "labels.jsonl", tmp_path / "q.jsonl"
    _scored(100).to_json(scored, orient="records", lines=True)
    labelled.write_text("".join(json.dumps({"article_id": f"a{i}"}) + "\n" for i in range(50)))
    out = subprocess.run([sys.executable, "-m", "training.cli", "data", "suggest", str(scored), "-n", "20",
                          "--exclude", str(labelled), "-o", str(queue)], capture_output=True, text=True)
    assert out.returncode == 0, out.stderr
    rows = [json.loads(line) for line in queue.read_text().splitlines()]
    assert len(rows) == 20 and all(int(r["article_id"][1:]) >= 50 for r in rows)
    assert json.loads(out.stderr.strip().splitlines()[-1])["excluded"] == 50
    bad = subprocess.run([sys.executable, "-m", "training.cli", "data", "suggest", str(tmp_path / "none.jsonl"),
                          "-n", "5"], capture_output=True, text=True)
    assert bad.returncode == 2 and "scored file not found" in bad.stderr
