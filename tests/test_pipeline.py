"""The vertical slice: train on the project's data into a temporary store, load the champion by alias, score."""

import json

import mlflow
import pandas as pd
import yaml

from training import TOPICS
from training.bundle import output_columns


def test_champion_scores_articles_with_documented_schema(champion, project):
    text = (project / "seeds" / "000_7557a05424130f05.txt").read_text(encoding="utf-8")
    out = champion.predict(pd.DataFrame({"text": [text, "   "]}))
    assert list(out.columns) == output_columns()
    assert len(out) == 2
    first = out.iloc[0]
    assert pd.isna(first["error"]) and first["n_passages"] == 13 and first["date"] == "2025-08-21"
    assert first["deployment"] and first["deployment_stance"] == "against"
    assert "n'enverra pas de troupes" in first["deployment_evidence"]
    assert out.iloc[1]["error"] == "`text` is empty"  # a bad row is reported, not dropped


def test_seed_000_first_passage_is_deployment_against(champion):
    passage = ("La Turquie n'enverra pas de troupes de maintien de la paix en Ukraine, ont déclaré ce jeudi des "
               "responsables du ministère de la Défense.")
    row = champion.predict(pd.DataFrame({"id": ["a"], "text": [passage]})).iloc[0]
    # the decision that matters: Turkey refuses a deployment (the real-data model trained with the test suite's
    # fewer folds also adds `mediation` and `arms_trade` on this peacekeeping passage: false alarms noted in
    # docs/quality.md)
    assert "deployment" in row["topics"] and "sanctions" not in row["topics"]
    assert row["deployment_stance"] == "against"
    assert row["id"] == "a"


def test_run_logs_lineage_config_and_metrics(trained):
    client = mlflow.MlflowClient()
    run = client.get_run(trained["result"]["run_id"])
    for t in TOPICS:
        assert 0 <= run.data.metrics[f"cv_topic_{t}_f1"] <= 1
        assert f"threshold_{t}" in run.data.metrics
    assert "seeds_article_topic_macro_f1" in run.data.metrics
    assert run.data.tags["git_commit"] and run.data.tags["seed"] == "13"
    assert run.data.params["model.family"] == "tfidf_linear"
    logged = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{run.info.run_id}/config/resolved.yaml"))
    assert logged == json.loads(trained["config"].model_dump_json())
    inputs = {d.dataset.name: d.dataset.digest for d in run.inputs.dataset_inputs}
    assert set(inputs) == {"training_passages", "seed_passages", "real_dev_passages", "real_test_passages"}
    for split in ("dev", "test"):  # measured on real articles it never saw, next to the keyword baseline
        assert 0 < run.data.metrics[f"real_{split}_article_topic_macro_f1"] <= 1
        assert f"keyword_real_{split}_article_topic_macro_f1" in run.data.metrics
        assert f"real_{split}_turkey_stance_favor_against_f1" in run.data.metrics
    artifacts = {a.path for a in client.list_artifacts(run.info.run_id, "report")}
    assert "report/cv_pr_curves.png" in artifacts and "report/cv_calibration.png" in artifacts


def test_registered_with_aliases_signature_and_export(trained):
    client = mlflow.MlflowClient()
    champ = client.get_model_version_by_alias("turkey-policy", "champion")
    cand = client.get_model_version_by_alias("turkey-policy", "candidate")
    assert str(champ.version) == str(cand.version) == str(trained["result"]["registered_version"])
    info = mlflow.models.get_model_info("models:/turkey-policy@champion")
    assert [c["name"] for c in info.signature.inputs.to_dict()] == ["text", "id"]
    outputs = {c["name"]: c for c in info.signature.outputs.to_dict()}
    assert list(outputs) == output_columns()  # every column, in the order rows have them, each with its own type
    assert {c["type"] for c in outputs.values()} == {"string", "long", "boolean", "double", "array"}
    for t in TOPICS:  # every topic typed alike: no `any`, no stance required for one topic and not another
        assert (outputs[t]["type"], outputs[t]["required"]) == ("boolean", True)
        assert (outputs[f"{t}_stance"]["type"], outputs[f"{t}_stance"]["required"]) == ("string", False)
        assert (outputs[f"{t}_prob"]["type"], outputs[f"{t}_favor"]["type"]) == ("double", "double")
    assert "promotion.decision" in champ.tags
    exported = trained["dir"] / "models" / "turkey-policy"
    model = mlflow.pyfunc.load_model(str(exported))
    assert model.predict(pd.DataFrame({"text": ["Ankara refuse les sanctions."]})).shape[0] == 1


def test_predict_function_returns_dicts(trained):
    from training.predict import predict

    results = predict(["Le Parlement turc autorise l'envoi de troupes en Libye."], tracking_uri=trained["uri"])
    assert len(results) == 1 and results[0]["deployment"] is True
    assert set(results[0]) == set(output_columns())
