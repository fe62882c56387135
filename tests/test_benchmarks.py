"""The benchmark scripts' own machinery: the inputs they generate, what they measure, and that the floor and
the Spark peer use the model's real analyzers and output schema. No speed is asserted here."""

from __future__ import annotations

import json
import re
import sys

import numpy as np
import pytest

from benchmarks import common, floor, peers, training_cost
from training.articles import read_article


def test_generated_articles_are_seeded_about_2kb_and_parse_into_passages(tmp_path):
    a = common.write_articles(tmp_path / "a.jsonl", 300, seed=3)
    b = common.write_articles(tmp_path / "b.jsonl", 300, seed=3)
    c = common.write_articles(tmp_path / "c.jsonl", 300, seed=4)
    assert (tmp_path / "a.jsonl").read_bytes() == (tmp_path / "b.jsonl").read_bytes()
    assert (tmp_path / "a.jsonl").read_bytes() != (tmp_path / "c.jsonl").read_bytes()
    rows = [json.loads(line) for line in (tmp_path / "a.jsonl").read_text(encoding="utf-8").splitlines()]
    assert len(rows) == a["n"] == 300 and len({r["id"] for r in rows}) == 300
    sizes = [len(r["text"].encode("utf-8")) for r in rows]
    assert 1800 <= np.mean(sizes) <= 2300 and a["mean_text_bytes"] == round(np.mean(sizes))
    for r in rows[:50]:
        article = read_article(r["text"], id=r["id"])
        assert article.title and len(article.passages) >= 2


def test_replicated_corpus_keeps_copies_in_their_originals_group(tmp_path):
    from training.splits import leak_free_groups

    written = tmp_path / "written"
    written.mkdir()
    rows = [json.loads(line) for line in (common.REPO / "data/written/mediation.jsonl").read_text().splitlines()[:40]]
    (written / "m.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    assert training_cost.replicate_corpus(written, 4, seed=1) == 160
    out = [json.loads(line) for line in (written / "m.jsonl").read_text().splitlines()]
    assert len({r["id"] for r in out}) == 160
    copies = [r for r in out if "~x" in r["id"]]
    assert all(r["text"] != rows[int(r["id"].split("-")[1].split("~")[0]) - 1]["text"] for r in copies[:40])
    # new events, yet the splitter groups each copy with its original through near-duplicate detection
    groups = leak_free_groups([r["text"] for r in out], [r["event"] for r in out])
    by_id = {r["id"]: g for r, g in zip(out, groups)}
    assert all(by_id[r["id"]] == by_id[r["id"].split("~")[0]] for r in copies)


def test_stats_median_and_spread():
    s = common.stats([2.0, 1.0, 4.0])
    assert s["median"] == 2.0 and s["min"] == 1.0 and s["max"] == 4.0 and s["spread"] == pytest.approx(1.5)


def test_run_measured_counts_the_memory_of_child_processes():
    pytest.importorskip("psutil")
    child = "import time; b = bytearray(300 * 2**20); b[::4096] = b'x' * len(b[::4096]); time.sleep(1.0)"
    parent = f"import subprocess, sys; subprocess.run([sys.executable, '-c', {child!r}], check=True)"
    m = common.run_measured([sys.executable, "-c", parent], interval=0.05)
    assert m.returncode == 0 and m.peak_rss_mb > 300


def test_floor_tokenizes_with_the_models_vectorizers_and_writes_one_row_per_article(tmp_path):
    from training.bundle import Bundle
    from training.models.tfidf import TfidfLinearStance, TfidfLinearTopic

    lines = (common.REPO / "data/written/sanctions.jsonl").read_text().splitlines()[:30]
    texts = [json.loads(line)["text"] for line in lines]
    Y = np.array([[i % 2, (i // 2) % 2, 0, 1] for i in range(len(texts))])
    topic = TfidfLinearTopic(max_iter=200).fit(texts, Y)
    pairs = np.array([[t, "sanctions"] for t in texts], dtype=object)
    stance = TfidfLinearStance(max_iter=200).fit(pairs, ["favor", "against", "none"] * 10)
    labels = ("mediation", "arms_trade", "sanctions", "deployment")
    bundle_dir = Bundle(topic, stance, labels, [0.5] * 4).save(tmp_path / "b")

    vectorizers = floor.model_vectorizers(bundle_dir)
    assert sorted(vectorizers) == ["char", "word"]
    assert vectorizers["char"].get_params() == topic.features_.transformer_list[1][1].steps[0][1].get_params()

    common.write_articles(tmp_path / "in.jsonl", 20)
    with (tmp_path / "in.jsonl").open("a", encoding="utf-8") as fh:  # an article without passages ends a chunk
        fh.write(json.dumps({"id": "empty", "text": ""}) + "\n")
    summary = floor.run(str(tmp_path / "in.jsonl"), str(tmp_path / "out.jsonl"), str(bundle_dir), chunk_size=7)
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    src = [json.loads(line) for line in (tmp_path / "in.jsonl").read_text().splitlines()]
    assert summary["rows"] == len(out) == 21
    assert out[-1] == {"id": "empty", "title": None, "n_passages": 0, "tokens": {"char": 0, "word": 0}}
    out, src = out[:-1], src[:-1]
    assert [o["id"] for o in out] == [s["id"] for s in src]
    assert all(o["n_passages"] == len(read_article(s["text"]).passages) for o, s in zip(out, src))
    # token counts are those of the model's own analyzers, summed over the article's passages
    char = vectorizers["char"].build_analyzer()
    assert all(o["tokens"]["char"] == sum(len(char(p.text)) for p in read_article(s["text"]).passages)
               for o, s in zip(out, src))
    assert all(o["tokens"]["word"] > 0 and o["tokens"]["char"] > o["tokens"]["word"] for o in out)


def test_spark_peer_schema_is_the_models_output_schema():
    from training import TOPICS
    from training.bundle import output_columns

    ddl = peers.spark_result_type(TOPICS)
    names = re.findall(r"(?:<|, )(\w+):", ddl)
    assert names == output_columns(TOPICS)


def test_scoring_runs_every_method_reports_failures_and_checkpoints(tmp_path):
    from benchmarks import scoring

    champion = common.Champion(tmp_path, {}, "models:/x/1", "1", tmp_path, None)
    write = "import sys; open(sys.argv[1], 'w').write('{}\\n' * int(sys.argv[2]))"
    (tmp_path / "ok.jsonl.partial").write_text("left over by an interrupted run")
    cmds = {"floor": ([sys.executable, "-c", write, str(tmp_path / "f.jsonl"), "5"], tmp_path / "f.jsonl"),
            "tpc-w1": ([sys.executable, "-c", write, str(tmp_path / "ok.jsonl"), "5"], tmp_path / "ok.jsonl"),
            "pyfunc": ([sys.executable, "-c", write, str(tmp_path / "short.jsonl"), "4"], tmp_path / "short.jsonl")}
    seen = []
    results = scoring.run_methods(cmds, champion, 5, 3, None, lambda m: None, on_repeat=lambda r: seen.append(
        len(r["floor"]["seconds"])))
    assert seen == [1, 2] and len(results["floor"]["seconds"]) == len(results["tpc-w1"]["seconds"]) == 3
    assert results["pyfunc"]["seconds"] == [] and "4/5 rows" in results["pyfunc"]["failed"]
    assert not list(tmp_path.glob("ok.jsonl*"))  # outputs and resume files are cleared
    methods = scoring.summarize(results, 5)
    r = scoring.ratios(methods)["tpc-w1"]
    assert r["vs_floor"] > 0 and r["beats_every_peer"] is None  # a failed peer is not a peer beaten


def test_sklearn_peer_scores_every_row_in_order_with_two_processes(tmp_path):
    import joblib

    texts = ["la Turquie vend des drones", "sanctions contre Ankara", "match de football", "météo du jour"] * 3
    model = peers.sklearn_peer_pipeline().fit(texts, [[1, 0], [0, 1], [0, 0], [0, 0]] * 3)
    model.topics_ = ["arms_trade", "sanctions"]
    joblib.dump(model, tmp_path / "peer.joblib")
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps({"id": f"a{i}", "text": t}) + "\n" for i, t in enumerate(texts[:7])))
    summary = peers.sklearn_peer(str(src), str(tmp_path / "out.jsonl"), str(tmp_path / "peer.joblib"), processes=2)
    rows = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    assert summary["rows"] == 7 and [r["id"] for r in rows] == [f"a{i}" for i in range(7)]
    assert rows[0]["topics"] == ["arms_trade"] and rows[2]["topics"] == []


def test_scoring_agreement_compares_decisions_of_champion_and_full_model(tmp_path):
    from benchmarks import scoring

    def write(name, rows):
        (tmp_path / name).write_text("".join(json.dumps(r) + "\n" for r in rows))

    none = {"id": "2", "topics": []}
    write("tpc-w2.jsonl", [{"id": "1", "topics": ["sanctions"], "sanctions_stance": "favor"}, none])
    write("full-w2.jsonl", [{"id": "1", "topics": ["sanctions"], "sanctions_stance": "none"}, none])
    a = scoring.agreement(tmp_path, [2])
    assert a["fast_path_vs_best_model"] == 1.0 and a["champion_vs_full_model"] == 0.5
    assert a["champion_vs_full_model_topics"] == 1.0 and "IS the champion" in a["text"]
