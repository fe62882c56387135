"""Held-out robustness checks: theatre-name swaps, theatre negatives, the stance challenge set."""

from __future__ import annotations

import json
from pathlib import Path

import numpy as np
import pytest

from training import TOPICS
from training.bundle import Bundle
from training.data import DataError
from training.robustness import (challenge_stance_metrics, counterfactual_metrics, evaluate, read_jsonl,
                                 swap_theatres, theatre_negative_metrics)

REPO = Path(__file__).resolve().parents[1]


def test_swap_theatres_swaps_names_both_ways_with_articles_and_case():
    assert swap_theatres("La Russie frappe l'Ukraine.") == "L'Azerbaïdjan frappe l'Arménie."
    assert swap_theatres("L'Azerbaïdjan et l'Arménie") == "La Russie et l'Ukraine"
    assert swap_theatres("de Kiev à Moscou, des drones russes") == "d'Erevan à Bakou, des drones azerbaïdjanais"
    assert swap_theatres("Damas et Tripoli ; forces syriennes, milices libyennes") == \
        "Tripoli et Damas ; forces libyennes, milices syriennes"
    assert swap_theatres("SYRIE") == "LIBYE"
    # No partial words, no double swaps, nothing else touched.
    assert swap_theatres("Les Russes ne sont pas Russiens; Ankara") == "Les Azerbaïdjanais ne sont pas Russiens; Ankara"
    text = "La Turquie enverra des troupes en Syrie et livrera des drones à l'Ukraine."
    assert swap_theatres(swap_theatres(text)) == text


class _NameTopic:
    """A topic model that (wrongly) keys on a theatre name: deployment iff 'Syrie' is in the text."""

    def predict_proba(self, texts):
        return np.array([[0.1, 0.1, 0.1, 0.9 if "Syrie" in t else 0.1] for t in texts])


class _BlindTopic:
    def predict_proba(self, texts):
        return np.array([[0.1, 0.1, 0.1, 0.9 if "troupes" in t else 0.1] for t in texts])


class _NegationStance:
    """Against when the text says "pas", favor otherwise (never none)."""

    def predict(self, X):
        return np.array(["against" if " pas " in x else "favor" for x, _ in np.asarray(X, dtype=object)])


def _bundle(topic_model, stance_model=None):
    return Bundle(topic_model, stance_model or _NegationStance(), TOPICS, [0.5] * 4)


def test_counterfactual_flip_rate_catches_a_name_keyed_model_and_spares_a_blind_one():
    rows = [{"text": "La Turquie enverra des troupes en Syrie.", "topics": ["deployment"]},
            {"text": "La Turquie enverra des troupes en Libye.", "topics": ["deployment"]},
            {"text": "Ankara et Washington discutent.", "topics": []}]  # no name: not counted
    keyed = counterfactual_metrics(_bundle(_NameTopic()), rows)
    assert keyed["counterfactual_n"] == 2
    assert keyed["counterfactual_topic_flip_rate"] == 1.0 and keyed["counterfactual_topic_flip_rate_deployment"] == 1.0
    assert keyed["counterfactual_topic_flip_rate_sanctions"] == 0.0
    blind = counterfactual_metrics(_bundle(_BlindTopic()), rows)
    assert blind["counterfactual_topic_flip_rate"] == 0.0 and blind["counterfactual_topic_mean_abs_delta"] == 0.0
    assert blind["counterfactual_stance_flip_rate"] == 0.0


def test_theatre_negative_rates_per_passage_and_per_explainer_article():
    rows = [{"text": f"Les combats continuent en Syrie, jour {i}."} for i in range(10)] + \
           [{"text": f"Kiev sous les drones, nuit {i}."} for i in range(10)]
    out = theatre_negative_metrics(_bundle(_NameTopic()), rows, np.random.default_rng(0), n_articles=30)
    assert out["theatre_negatives_fp_rate_deployment"] == 0.5 and out["theatre_negatives_fp_rate_mediation"] == 0.0
    assert out["theatre_negatives_fp_rate_any"] == 0.5
    # An explainer of 5+ passages drawn from these 20 almost always holds a "Syrie" passage: the max rule fires.
    assert out["theatre_negatives_explainer_max_fp_rate_deployment"] > 0.9
    assert out["theatre_negatives_explainer_model_fp_rate_deployment"] == \
        out["theatre_negatives_explainer_max_fp_rate_deployment"]  # no aggregator: the bundle's rule is the max


def test_challenge_metrics_per_phenomenon():
    rows = [{"text": "Ankara ne livrera pas de drones.", "topics": ["arms_trade"], "stance": {"arms_trade": "against"},
             "phenomenon": "negation"},
            {"text": "Ankara livrera des drones.", "topics": ["arms_trade"], "stance": {"arms_trade": "favor"},
             "phenomenon": "negation"},
            {"text": "Ankara livrera des drones si Kiev paie.", "topics": ["arms_trade"],
             "stance": {"arms_trade": "against"}, "phenomenon": "condition"}]
    out = challenge_stance_metrics(_bundle(_BlindTopic()), rows)
    assert out["challenge_stance_negation_accuracy"] == 1.0
    assert out["challenge_stance_condition_accuracy"] == 0.0
    assert out["challenge_stance_accuracy"] == pytest.approx(2 / 3)
    assert "challenge_topic_macro_f1" in out


def test_read_jsonl_keeps_phenomenon_and_names_bad_lines(tmp_path):
    rows = read_jsonl(REPO / "data" / "challenge" / "stance_challenge.jsonl")
    assert len(rows) == 160 and {r["phenomenon"] for r in rows} >= {"negation", "condition", "double_negation"}
    bad = tmp_path / "bad.jsonl"
    bad.write_text(json.dumps(rows[0] | {"stance": {}}, ensure_ascii=False) + "\n", encoding="utf-8")
    with pytest.raises(DataError, match="bad.jsonl:1"):
        read_jsonl(bad)


def test_evaluate_on_the_real_held_out_files_with_a_small_model(monkeypatch):
    from training.data import load_files
    from training.lexicon import load_lexicon
    from training.models.tfidf import TfidfLinearStance, TfidfLinearTopic

    monkeypatch.chdir(REPO)  # read-only use of the repository's held-out files
    train = load_files(["data/written/pilot.jsonl"])
    lex = load_lexicon("configs/lexicon.yaml")
    topic = TfidfLinearTopic(char_ngrams=None, lexicon=lex).fit(train.texts, train.topic_matrix())
    texts, topics, stances, _ = train.stance_pairs()
    stance = TfidfLinearStance(char_ngrams=None, lexicon=lex).fit(np.array([texts, topics], dtype=object).T, stances)
    out = evaluate(Bundle(topic, stance, TOPICS, [0.5] * 4, None, lex))
    for key in ["challenge_stance_macro_f1", "challenge_stance_favor_against_f1", "challenge_stance_negation_macro_f1",
                "theatre_negatives_fp_rate_any", "counterfactual_topic_flip_rate", "counterfactual_stance_flip_rate"] + \
            [f"theatre_negatives_fp_rate_{t}" for t in TOPICS]:
        assert 0.0 <= out[key] <= 1.0, key
    assert out["theatre_negatives_n"] == 150 and out["counterfactual_n"] > 50
