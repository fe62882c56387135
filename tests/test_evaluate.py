"""Metrics, thresholds and the evaluation report: the numbers are right, every part of the report is written,
and `tpc evaluate MODEL_URI DATA...` writes the same report for the champion on the held-out challenge files."""

from __future__ import annotations

import glob
import json
from pathlib import Path

import numpy as np
import pytest

from training import STANCES, TOPICS
from training.evaluate import choose_thresholds, report_tables, stance_metrics, topic_metrics, write_report

REPO = Path(__file__).resolve().parents[1]
PNG = b"\x89PNG\r\n\x1a\n"


def test_topic_metrics_per_label_and_averages():
    Y = np.array([[1, 0], [1, 0], [0, 0], [0, 0]])
    D = np.array([[1, 0], [0, 1], [1, 0], [0, 0]])
    m = topic_metrics(Y, D, ("a", "b"), "x")
    assert (m["x_a_precision"], m["x_a_recall"], m["x_a_f1"], m["x_a_support"]) == (0.5, 0.5, 0.5, 2.0)
    assert m["x_b_f1"] == 0.0 and m["x_b_support"] == 0.0
    assert m["x_macro_f1"] == 0.5  # a label absent from the gold does not drag the macro average
    assert m["x_micro_f1"] == pytest.approx(2 * (1 / 3) * 0.5 / (1 / 3 + 0.5))


def test_stance_metrics():
    m = stance_metrics(["favor", "favor", "against", "none"], ["favor", "against", "against", "none"], "s")
    assert m["s_favor_f1"] == pytest.approx(2 / 3) and m["s_against_f1"] == pytest.approx(2 / 3)
    assert m["s_none_f1"] == 1.0 and m["s_accuracy"] == 0.75
    assert m["s_favor_against_f1"] == pytest.approx(2 / 3)


def test_thresholds_maximize_f1_on_separable_scores():
    Y = np.array([[1], [1], [0], [0], [0]])
    P = np.array([[0.9], [0.35], [0.3], [0.1], [0.2]])
    t = choose_thresholds(Y, P)
    assert 0.3 < t[0] <= 0.35
    assert topic_metrics(Y, (P >= t).astype(int), ("a",), "x")["x_a_f1"] == 1.0


@pytest.fixture
def synthetic_report(tmp_path):
    rng = np.random.default_rng(0)
    n = 80
    Y = (rng.random((n, len(TOPICS))) < 0.3).astype(int)
    P = np.clip(Y * 0.3 + rng.random((n, len(TOPICS))) * 0.7, 0, 1)  # overlapping: some errors
    thresholds = choose_thresholds(Y, P)
    gold = list(rng.choice(STANCES, 30))
    proba = rng.dirichlet(np.ones(3), 30)
    texts = [f"passage {i}" for i in range(n)]
    paths = write_report(tmp_path, labels=TOPICS, Y=Y, P=P, thresholds=thresholds, stance_gold=gold,
                         stance_proba=proba, name="cv", texts=texts, stance_texts=texts[:30], stance_topics=["x"] * 30)
    return {"paths": paths, "Y": Y, "P": P, "thresholds": thresholds, "gold": gold, "proba": proba, "dir": tmp_path}


def test_report_writes_every_part(synthetic_report):
    d, names = synthetic_report["dir"], {p.name for p in synthetic_report["paths"]}
    assert names == {"cv_pr_curves.png", "cv_calibration.png", "cv_stance_confusion.png", "cv_stance_confusion.json",
                     "cv_thresholds.json", "cv_metrics.json", "cv_worst_errors.json", "cv_report.md"}
    for p in synthetic_report["paths"]:
        assert p.is_file() and p.stat().st_size > 100
        if p.suffix == ".png":
            assert p.read_bytes()[:8] == PNG
    assert json.loads((d / "cv_thresholds.json").read_text()) == dict(zip(TOPICS, synthetic_report["thresholds"]))
    md = (d / "cv_report.md").read_text()
    assert "![cv_pr_curves](cv_pr_curves.png)" in md and "| mediation |" in md


def test_report_numbers_match_the_metrics(synthetic_report):
    d, Y, P, t = synthetic_report["dir"], synthetic_report["Y"], synthetic_report["P"], synthetic_report["thresholds"]
    tables = json.loads((d / "cv_metrics.json").read_text())
    m = topic_metrics(Y, (P >= t).astype(int), TOPICS, "cv")
    for topic in TOPICS:
        assert tables["topic"][topic]["f1"] == pytest.approx(m[f"cv_{topic}_f1"])
        assert tables["topic"][topic]["support"] == Y[:, TOPICS.index(topic)].sum()
    assert tables["topic_macro_f1"] == pytest.approx(m["cv_macro_f1"])
    pred = np.asarray(STANCES)[synthetic_report["proba"].argmax(1)]
    s = stance_metrics(synthetic_report["gold"], pred, "stance")
    assert tables["stance_macro_f1"] == pytest.approx(s["stance_macro_f1"])
    cm = json.loads((d / "cv_stance_confusion.json").read_text())
    assert cm["labels"] == list(STANCES) and np.asarray(cm["matrix"]).sum() == 30
    assert np.trace(cm["matrix"]) == sum(g == p for g, p in zip(synthetic_report["gold"], pred))


def test_worst_errors_are_wrong_and_most_confident_first(synthetic_report):
    d, Y, P, t = synthetic_report["dir"], synthetic_report["Y"], synthetic_report["P"], synthetic_report["thresholds"]
    errs = json.loads((d / "cv_worst_errors.json").read_text())
    topic = errs["topic"]
    assert topic and len(topic) <= 25
    for e in topic:
        i, j = int(e["text"].split()[1]), TOPICS.index(e["topic"])
        assert e["gold"] == bool(Y[i, j]) and e["predicted"] == bool(P[i, j] >= t[j]) != e["gold"]
    assert [e["margin"] for e in topic] == sorted((e["margin"] for e in topic), reverse=True)
    assert all(e["gold"] != e["predicted"] for e in errs["stance"])


def test_missed_topics_count_as_none_in_the_numbers_and_apart_in_the_confusion_matrix(tmp_path):
    gold, pred = ["favor", "against", "none"], ["favor", "topic missed", "none"]
    tables = report_tables(("a",), np.array([[1]]), np.array([[1]]), gold, pred)
    assert tables["stance_macro_f1"] == stance_metrics(gold, ["favor", "none", "none"], "s")["s_macro_f1"]
    write_report(tmp_path, labels=("a",), Y=np.array([[1], [1], [1]]), P=np.array([[0.9], [0.2], [0.8]]),
                 thresholds=[0.5], stance_gold=gold, stance_proba=np.zeros((3, 3)), name="x", stance_pred=pred)
    cm = json.loads((tmp_path / "x_stance_confusion.json").read_text())
    assert cm["labels"] == [*STANCES, "topic missed"]
    assert cm["matrix"][STANCES.index("against")] == [0, 0, 0, 1]


# -- `tpc evaluate` on the champion -----------------------------------------------------------------------------

@pytest.fixture(scope="module")
def evaluated(champion, trained, tmp_path_factory):
    import contextlib
    import io

    from training.cli import main

    out = tmp_path_factory.mktemp("report") / "eval"
    files = sorted(glob.glob(str(trained["dir"] / "data" / "challenge" / "*.jsonl")))
    stdout = io.StringIO()
    with contextlib.redirect_stdout(stdout):
        code = main(["evaluate", "models:/turkey-policy@champion", *files, "--out", str(out)])
    return {"code": code, "metrics": json.loads(stdout.getvalue()), "out": out, "files": files}


def test_evaluate_command_writes_the_report_and_prints_the_metrics(evaluated):
    assert evaluated["code"] == 0
    out, m = evaluated["out"], evaluated["metrics"]
    for name in ("eval_pr_curves.png", "eval_calibration.png", "eval_stance_confusion.png"):
        assert (out / name).read_bytes()[:8] == PNG
    n_lines = sum(1 for f in evaluated["files"] for line in open(f, encoding="utf-8") if line.strip())
    assert m["eval_n"] == n_lines  # every labelled passage was scored
    for t in TOPICS:
        assert 0 <= m[f"eval_topic_{t}_f1"] <= 1 and f"eval_topic_{t}_precision" in m
    assert {"eval_topic_macro_f1", "eval_topic_micro_f1", "eval_stance_macro_f1"} <= set(m)
    tables = json.loads((out / "eval_metrics.json").read_text())
    assert tables["topic_macro_f1"] == pytest.approx(m["eval_topic_macro_f1"])
    assert json.loads((out / "eval_scalar_metrics.json").read_text()) == m
    thresholds = json.loads((out / "eval_thresholds.json").read_text())
    assert set(thresholds) == set(TOPICS) and all(0 <= v <= 1 for v in thresholds.values())
    md = (out / "eval_report.md").read_text()
    assert "models:/turkey-policy@champion" in md and "article aggregator (model bundle)" in md


def test_evaluate_worst_errors_quote_the_data(evaluated):
    errs = json.loads((evaluated["out"] / "eval_worst_errors.json").read_text())
    texts = {json.loads(line)["text"] for f in evaluated["files"] for line in open(f, encoding="utf-8")
             if line.strip()}
    assert errs["topic"] and all(e["text"] in texts for e in errs["topic"] + errs.get("stance", []))
    assert all({"gold", "predicted"} <= set(e) for e in errs["topic"])


def test_evaluate_metrics_are_those_of_the_promotion_gate(evaluated, champion):
    """`tpc evaluate` and the promotion gate measure the same way (one scoring path)."""
    from training.data import load_files
    from training.evaluate import evaluate_model

    frozen = evaluate_model(champion, load_files(evaluated["files"]), TOPICS, prefix="eval")
    assert frozen == evaluated["metrics"]


def test_evaluate_bad_input_exit_codes(trained, tmp_path, capsys):
    from training.cli import main

    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "x", "text": "t"}\n', encoding="utf-8")
    assert main(["evaluate", "models:/turkey-policy@champion", str(bad), "--out", str(tmp_path / "r")]) == 2
    assert f"{bad}:1: missing key(s)" in capsys.readouterr().err
    good = sorted(glob.glob(str(trained["dir"] / "data" / "challenge" / "*.jsonl")))[:1]
    assert main(["evaluate", "models:/no-such-model@champion", *good, "--out", str(tmp_path / "r")]) == 2
    err = capsys.readouterr().err.strip()
    assert err.startswith("tpc: error: MODEL_URI models:/no-such-model@champion: no version of 'no-such-model' holds "
                          "@champion") and "\n" not in err and "Traceback" not in err
