"""The promotion gate: a worse candidate is refused (alias unmoved, reason recorded), an equal one promoted.

Works on its own registered model name so the session's `turkey-policy@champion` stays where other tests expect."""

from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import mlflow
import pandas as pd
import pytest
from mlflow import MlflowClient

from training import tracking
from training.cli import main
from training.registry import promote

NAME = "turkey-policy-gate-test"
METRIC = "real_dev_article_topic_macro_f1"  # the default gate: real dev articles


def _register(bundle_dir: Path, note: str) -> str:
    with mlflow.start_run(run_name=f"gate-{note}"):
        example = pd.DataFrame({"id": ["x"], "text": ["Ankara livre des drones."]})
        from training.bundle import Bundle

        info = tracking.log_pyfunc(bundle_dir, example, Bundle.load(bundle_dir).predict_frame(example))
    return str(tracking.register(info.model_uri, NAME, tags={"note": note}).version)


@pytest.fixture(scope="module")
def gate(trained, tmp_path_factory):
    """Versions of NAME: v1 a copy of the trained champion, v2 the same bundle with thresholds nothing reaches."""
    d = tmp_path_factory.mktemp("gate")
    champ_uri = "models:/turkey-policy@champion"
    good = Path(mlflow.artifacts.download_artifacts(champ_uri, dst_path=str(d / "model"))) / "artifacts" / "bundle"
    bad = d / "bad"
    shutil.copytree(good, bad)
    spec = json.loads((bad / "bundle.json").read_text())
    spec["thresholds"], spec["has_aggregator"] = [1.01] * len(spec["labels"]), False  # never decides a topic
    (bad / "bundle.json").write_text(json.dumps(spec))
    mlflow.set_experiment("gate-test")
    old = os.getcwd()
    os.chdir(trained["dir"])  # promotion.eval_data is relative to the project
    try:
        yield {"good": good, "bad": bad, "eval": trained["config"].promotion.eval_data}
    finally:
        os.chdir(old)


def test_first_version_becomes_champion_then_a_worse_one_is_refused(gate):
    client = MlflowClient()
    v1 = _register(gate["good"], "good")
    first = promote(f"models:/{NAME}/{v1}", NAME, METRIC, 0.0, gate["eval"])
    assert first.promoted and "no current @champion" in first.reason
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == v1
    assert first.candidate[METRIC] > 0.5

    v2 = _register(gate["bad"], "bad")
    decision = promote(f"models:/{NAME}/{v2}", NAME, METRIC, 0.0, gate["eval"])
    assert not decision.promoted
    assert decision.candidate[METRIC] == 0.0 and decision.champion[METRIC] == first.candidate[METRIC]
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == v1  # the alias did not move
    mv = client.get_model_version(NAME, v2)
    assert mv.tags["promotion.decision"] == "refused"
    assert f"is worse than champion v{v1}" in mv.tags["promotion.reason"]
    assert mv.tags["promotion.champion_version"] == v1
    assert float(mv.tags[f"promotion.champion_{METRIC}"]) == pytest.approx(first.candidate[METRIC], abs=1e-6)
    summary = json.loads(mv.description.split("\n\n", 1)[1])
    assert summary["promoted"] is False and summary["candidate"] == 0.0 and summary["champion_version"] == v1


def test_equal_candidate_is_promoted_and_margin_is_honoured(gate, capsys):
    client = MlflowClient()
    champion = str(client.get_model_version_by_alias(NAME, "champion").version)
    v3 = _register(gate["good"], "equal")
    # Through the command line, the way a release is gated.
    assert main(["promote", "--candidate", f"models:/{NAME}/{v3}", "--config", "configs/default.yaml"]) == 0
    assert "PROMOTED: " in capsys.readouterr().out
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == v3
    mv = client.get_model_version(NAME, v3)
    assert mv.tags["promotion.decision"] == "promoted" and "delta +0.0000" in mv.tags["promotion.reason"]
    assert f"champion v{champion}" in mv.description

    v4 = _register(gate["bad"], "bad-again")
    assert main(["promote", "--candidate", f"models:/{NAME}/{v4}", "--config", "configs/default.yaml"]) == 3
    assert "REFUSED: " in capsys.readouterr().out
    # A margin wide enough lets even the broken model through: the margin is what decides.
    loose = promote(f"models:/{NAME}/{v4}", NAME, METRIC, 1.0, gate["eval"])
    assert loose.promoted and str(client.get_model_version_by_alias(NAME, "champion").version) == v4


def test_bad_candidate_uris_are_clear_errors(gate, capsys):
    assert main(["promote", "--candidate", "runs:/abc/model", "--config", "configs/default.yaml"]) == 2
    assert "registry URI" in capsys.readouterr().err
    assert main(["promote", "--candidate", f"models:/{NAME}/999", "--config", "configs/default.yaml"]) == 2
    assert "version 999" in capsys.readouterr().err


def test_default_pipeline_registered_through_the_gate(trained):
    """The training run registers a candidate and records the gate's decision on it."""
    client = MlflowClient()
    version = str(trained["result"]["registered_version"])
    mv = client.get_model_version("turkey-policy", version)
    assert mv.tags["promotion.decision"] == "promoted"
    assert trained["result"]["promoted"] is True
    assert str(client.get_model_version_by_alias("turkey-policy", "candidate").version) == version


def test_the_exported_champion_follows_every_promotion(gate, capsys):
    """`models/...` always holds the version @champion points to, whether train's gate or `tpc promote` moved it."""
    from mlflow.models import Model

    name, export_dir = "turkey-policy-export-test", Path("models") / "export-test"
    client = MlflowClient()

    def register(bundle, note):
        with mlflow.start_run(run_name=f"export-{note}"):
            example = pd.DataFrame({"id": ["x"], "text": ["Ankara livre des drones."]})
            from training.bundle import Bundle

            info = tracking.log_pyfunc(bundle, example, Bundle.load(bundle).predict_frame(example))
        return str(tracking.register(info.model_uri, name).version)

    def exported_version():
        uuid = Model.load(str(export_dir)).model_uuid
        return next(v for v in ("1", "2", "3") if mlflow.models.get_model_info(f"models:/{name}/{v}").model_uuid == uuid)

    v1 = register(gate["good"], "one")
    first = promote(f"models:/{name}/{v1}", name, METRIC, 0.0, gate["eval"], export_dir=str(export_dir))
    assert first.promoted and first.exported_to == str(export_dir) and exported_version() == v1
    v2 = register(gate["good"], "two")
    args = ["promote", "--candidate", f"models:/{name}/{v2}",
            "--set", f"register.name={name}", "--set", f"register.export_dir={export_dir}",
            "--set", f"promotion.eval_data={gate['eval']}", "--set", f"promotion.metric={METRIC}"]
    assert main(args) == 0
    out = capsys.readouterr().out
    assert out.startswith("PROMOTED: ") and f"exported the champion to {export_dir}" in out
    assert str(client.get_model_version_by_alias(name, "champion").version) == v2
    assert exported_version() == v2  # not the stale v1
    v3 = register(gate["bad"], "refused")
    assert main([*args[:2], f"models:/{name}/{v3}", *args[3:]]) == 3
    assert "exported" not in capsys.readouterr().out and exported_version() == v2  # a refusal exports nothing
