"""The `transformer` family, offline: a tiny BERT trained here on our own text stands in for CamemBERT.

The estimators (learning, pairs, seeds, persistence, errors) are tested directly; then the real command line
trains configs/topic_transformer.yaml on a small subset into a temporary SQLite store, registers and promotes it,
and the champion is loaded by alias and scores the seed articles through `tpc score`.
"""

from __future__ import annotations

import contextlib
import io
import json
import re
from pathlib import Path

import mlflow
import numpy as np
import pandas as pd
import pytest

pytest.importorskip("torch")
pytest.importorskip("transformers")

from conftest import REPO, copy_project  # noqa: E402
from tiny_bert import build_tiny_bert, project_texts  # noqa: E402

from training import STANCES, TOPICS  # noqa: E402
from training import models as families  # noqa: E402
from training.bundle import output_columns  # noqa: E402
from training.config import ConfigError, load_config, stance_model_config  # noqa: E402
from training.models.transformer import (  # noqa: E402
    TransformerStance,
    TransformerTopic,
    load_pretrained_dir,
    requirements,
)

CITIES = ["Kiev", "Bakou", "Doha", "Tripoli", "Varsovie", "Islamabad", "Tunis", "Alger", "Rome", "Madrid", "Riga",
          "Sofia"]
ARMS = [f"{c} achète des drones Bayraktar à la Turquie." for c in CITIES]
MEDIATION = [f"Ankara accueille à Istanbul des pourparlers de paix pour {c}." for c in CITIES]


@pytest.fixture(scope="module", autouse=True)
def one_torch_thread():
    """On 2 cores shared with other jobs, OpenMP threads spin-wait on each other and two threads make a
    tiny-model step many times slower than one. CI with dedicated cores would not need this."""
    import torch

    before = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(before)


@pytest.fixture(scope="session")
def tiny_bert(tmp_path_factory) -> Path:
    return build_tiny_bert(tmp_path_factory.mktemp("tiny_bert"), project_texts(REPO))


def small(cls, tiny_bert, **kw):
    params = {"model_name_or_path": str(tiny_bert), "max_length": 32, "epochs": 1, "batch_size": 4, "random_state": 5}
    return cls(**{**params, **kw})


@pytest.fixture(scope="module")
def topic_model(tiny_bert):
    """Fit on 8 + 8 passages of two topics; the other 4 + 4 are held out."""
    texts = ARMS[:8] + MEDIATION[:8]
    Y = np.array([[0, 1, 0, 0]] * 8 + [[1, 0, 0, 0]] * 8)
    return small(TransformerTopic, tiny_bert, epochs=20, batch_size=2, learning_rate=2e-3).fit(texts, Y)


@pytest.fixture(scope="module")
def stance_model(tiny_bert):
    X = [[t, "arms_trade"] for t in ARMS[:6]] + [[t, "mediation"] for t in MEDIATION[:6]]
    y = ["favor", "against", "none"] * 4
    return small(TransformerStance, tiny_bert).fit(X, y)


# -- the estimators -------------------------------------------------------------------------------------------
def test_topic_fine_tuning_learns_held_out_passages(topic_model):
    P = topic_model.predict_proba(ARMS[8:] + MEDIATION[8:])
    assert P.shape == (8, len(TOPICS)) and ((P >= 0) & (P <= 1)).all()
    arms, mediation = TOPICS.index("arms_trade"), TOPICS.index("mediation")
    assert (P[:4, arms] > 0.5).all() and (P[:4, mediation] < 0.5).all()
    assert (P[4:, mediation] > 0.5).all() and (P[4:, arms] < 0.5).all()
    assert topic_model.predict(ARMS[8:9]).tolist() == [[0, 1, 0, 0]]
    history = topic_model.history_
    assert [h["epoch"] for h in history] == list(range(1, 21))
    assert history[-1]["train_loss"] < history[0]["train_loss"] and "val_macro_f1" in history[-1]


def test_stance_reads_the_topic_as_second_segment(stance_model):
    text = ARMS[10]
    P = stance_model.predict_proba([[text, t] for t in TOPICS])
    assert P.shape == (len(TOPICS), len(STANCES))
    np.testing.assert_allclose(P.sum(1), 1.0, rtol=1e-9)
    # The same passage asked about different topics gets different answers: the topic is part of the input.
    assert len({tuple(np.round(row, 6)) for row in P}) == len(TOPICS)
    assert list(stance_model.classes_) == list(STANCES)
    assert set(stance_model.predict(np.array([[text, "sanctions"]], dtype=object))) <= set(STANCES)
    assert stance_model.predict_proba(np.empty((0, 2), dtype=object)).shape == (0, len(STANCES))


def test_same_seed_same_model_other_seed_other_model(tiny_bert):
    texts, Y = ARMS[:4] + MEDIATION[:4], np.array([[0, 1, 0, 0]] * 4 + [[1, 0, 0, 0]] * 4)
    a = small(TransformerTopic, tiny_bert, random_state=7).fit(texts, Y).predict_proba(ARMS[4:6])
    b = small(TransformerTopic, tiny_bert, random_state=7).fit(texts, Y).predict_proba(ARMS[4:6])
    c = small(TransformerTopic, tiny_bert, random_state=8).fit(texts, Y).predict_proba(ARMS[4:6])
    assert np.array_equal(a, b)
    assert not np.allclose(a, c)


def test_saved_models_are_safetensors_and_predict_identically(topic_model, stance_model, tmp_path):
    pairs = [[MEDIATION[9], "mediation"], [ARMS[9], "arms_trade"], [ARMS[9], "deployment"]]
    for est, X in ((topic_model, ARMS[8:] + MEDIATION[8:]), (stance_model, pairs)):
        directory = tmp_path / type(est).__name__
        families.save(est, directory)  # the family interface the bundle uses
        files = {p.relative_to(directory).as_posix() for p in directory.rglob("*") if p.is_file()}
        assert {"meta.json", "transformer.json", "model/model.safetensors", "model/tokenizer.json",
                "model/config.json"} <= files
        assert not [f for f in files if f.endswith((".pkl", ".pickle", ".bin", ".pt", ".pth", ".skops"))]
        assert json.loads((directory / "meta.json").read_text())["format"] == "transformers"
        loaded = families.load(directory)
        assert type(loaded) is type(est) and loaded.get_params() == est.get_params()
        assert np.array_equal(loaded.predict_proba(X), est.predict_proba(X))
        assert loaded.history_ == est.history_

    # Weights that do not cover the model are refused, not silently re-initialised.
    from safetensors.torch import load_file, save_file

    weights = tmp_path / "TransformerTopic" / "model" / "model.safetensors"
    save_file({k: v for k, v in load_file(weights).items() if not k.startswith("classifier.")}, weights)
    with pytest.raises(ValueError, match=r"saved weights lack \['classifier"):
        families.load(tmp_path / "TransformerTopic")


def test_bad_inputs_are_named(tiny_bert, tmp_path):
    with pytest.raises(ValueError, match=r"stance label\(s\) \['pro'\]"):
        small(TransformerStance, tiny_bert).fit([[ARMS[0], "arms_trade"]], ["pro"])
    with pytest.raises(ValueError, match=r"topic\(s\) \['tourism'\]"):
        small(TransformerStance, tiny_bert).fit([[ARMS[0], "tourism"]], ["favor"])
    with pytest.raises(ValueError, match=r"Y must have shape \(2, 4\)"):
        small(TransformerTopic, tiny_bert).fit(ARMS[:2], np.zeros((2, 3)))
    with pytest.raises(ConfigError, match="model.model_name_or_path: cannot load"):
        small(TransformerTopic, tmp_path / "no-such-model").fit(ARMS[:2], np.zeros((2, 4)))
    (tmp_path / "broken").mkdir()
    (tmp_path / "broken" / "transformer.json").write_text(json.dumps({"class": "os.system", "params": {}}))
    with pytest.raises(ValueError, match="`class` must be one of"):
        load_pretrained_dir(tmp_path / "broken")


def test_cuda_asked_for_without_a_gpu_is_a_config_error(tiny_bert):
    import torch

    if torch.cuda.is_available():
        pytest.skip("a GPU is present here")
    with pytest.raises(ConfigError, match="model.device: 'cuda'"):
        small(TransformerTopic, tiny_bert, device="cuda").fit(ARMS[:2], np.zeros((2, 4)))


def test_requirements_pin_torch_without_a_build_label():
    reqs = requirements()
    names = [re.split("==", r)[0] for r in reqs]
    assert names == ["torch", "transformers", "tokenizers", "safetensors"]
    assert all(re.fullmatch(r"[a-z]+==\d+(\.\d+)+", r) for r in reqs), reqs  # e.g. torch==2.13.0, never +cpu


def test_config_fine_tunes_camembert_for_both_tasks():
    cfg = load_config(REPO / "configs" / "topic_transformer.yaml")
    assert cfg.model.family == "transformer" and stance_model_config(cfg).family == "transformer"
    m = cfg.model
    assert (m.model_name_or_path, m.max_length, m.epochs, m.batch_size, m.learning_rate, m.warmup_ratio,
            m.weight_decay, m.device) == ("camembert-base", 256, 3, 16, 3e-5, 0.1, 0.01, "auto")
    assert cfg.data == load_config(REPO / "configs" / "default.yaml").data


# -- the real path: tpc train -> register -> load by alias -> tpc score ------------------------------------------
def write_subset(project: Path, per_file: int = 12) -> Path:
    """`per_file` passages spread over each written file: every topic and both kinds of negatives."""
    rows = []
    for path in sorted((project / "data" / "written").glob("*.jsonl")):
        lines = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        rows += lines[:: max(1, len(lines) // per_file)][:per_file]
    out = project / "subset.jsonl"
    out.write_text("\n".join(rows) + "\n", encoding="utf-8")
    return out


@contextlib.contextmanager
def in_store(project: Path, uri: str):
    """Run the command line in `project` against the store `uri`, then put MLflow's URIs back as they were
    (the CLI sets them process-wide; the session's other tests use their own store)."""
    before = (mlflow.get_tracking_uri(), mlflow.get_registry_uri())
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MLFLOW_TRACKING_URI", uri)
        mp.chdir(project)
        mlflow.set_tracking_uri(uri)
        mlflow.set_registry_uri(uri)
        try:
            yield
        finally:
            mlflow.set_tracking_uri(before[0])
            mlflow.set_registry_uri(before[1])


@pytest.fixture(scope="module")
def pipeline(tiny_bert, tmp_path_factory):
    from training.cli import main

    project = copy_project(tmp_path_factory.mktemp("transformer_project"))
    write_subset(project)
    uri = f"sqlite:///{project / 'mlflow.db'}"
    out = io.StringIO()
    with in_store(project, uri), contextlib.redirect_stdout(out):
        code = main(["train", "configs/topic_transformer.yaml",
                     "--set", f"model.model_name_or_path={tiny_bert}", "--set", "model.epochs=1",
                     "--set", "model.max_length=64", "--set", "splits.n_folds=2",
                     "--set", "article.composite_articles=50", "--set", "data.train=[subset.jsonl]"])
    assert code == 0, out.getvalue()
    result = json.loads(out.getvalue().strip().splitlines()[-1])
    return {"project": project, "uri": uri, "result": result, "main": main, "tiny_bert": tiny_bert}


def test_tpc_train_logs_registers_and_promotes_a_transformer(pipeline):
    uri, result = pipeline["uri"], pipeline["result"]
    assert result["promoted"] is True and result["alias"] == "candidate"
    client = mlflow.MlflowClient(tracking_uri=uri, registry_uri=uri)
    champion = client.get_model_version_by_alias("turkey-policy", "champion")
    assert str(champion.version) == str(result["registered_version"]) and champion.tags["family"] == "transformer"
    run = client.get_run(result["run_id"])
    assert run.data.params["model.family"] == "transformer"
    assert run.data.params["model.model_name_or_path"] == str(pipeline["tiny_bert"])
    for key in ("cv_topic_macro_f1", "cv_stance_macro_f1", "seeds_article_topic_macro_f1", "threshold_sanctions"):
        assert key in run.data.metrics
    # Per-epoch metrics went into this run (no run of the fits' own): one step per fit, counted on.
    experiment = client.get_experiment_by_name("turkey-policy")
    assert len(client.search_runs([experiment.experiment_id])) == 1
    for task in ("topic", "stance"):
        steps = [m.step for m in client.get_metric_history(run.info.run_id, f"transformer_{task}_epoch_train_loss")]
        assert steps == list(range(1, len(steps) + 1)) and len(steps) >= 4  # 2 folds, held-out and final fits
        assert client.get_metric_history(run.info.run_id, f"transformer_{task}_epoch_val_loss")


def test_champion_bundle_is_safetensors_and_scores_seed_articles(pipeline, tmp_path):
    project, uri, main = pipeline["project"], pipeline["uri"], pipeline["main"]
    with in_store(project, uri):  # models:/ resolves through the process-wide registry URI
        local = Path(mlflow.artifacts.download_artifacts("models:/turkey-policy@champion",
                                                         dst_path=str(tmp_path / "m")))
        champion = mlflow.pyfunc.load_model("models:/turkey-policy@champion")
    bundle = local / "artifacts" / "bundle"
    for task in ("topic", "stance"):
        assert (bundle / task / "model" / "model.safetensors").is_file()
        assert (bundle / task / "model" / "tokenizer.json").is_file()
    assert not [p for p in local.rglob("*") if p.suffix in (".pkl", ".pickle", ".bin", ".pt")]
    reqs = (local / "requirements.txt").read_text().split()
    assert set(requirements()) <= set(reqs) and "torch==2.13.0+cpu" not in reqs

    seeds = sorted((project / "seeds").glob("*.txt"))
    frame = pd.DataFrame({"id": [p.stem for p in seeds], "text": [p.read_text(encoding="utf-8") for p in seeds]})
    direct = champion.predict(frame)
    assert list(direct.columns) == output_columns() and direct["error"].isna().all()
    assert (direct["n_passages"] > 1).all()  # long articles are split into passages and rolled up

    err = io.StringIO()
    with in_store(project, uri), contextlib.redirect_stderr(err):
        code = main(["score", "seeds", "-o", str(tmp_path / "scored.jsonl"),
                     "--model", "models:/turkey-policy@champion"])
    assert code == 0, err.getvalue()[-2000:]
    scored = pd.read_json(tmp_path / "scored.jsonl", lines=True, dtype={"id": str})
    assert list(scored.columns[: len(output_columns())]) == output_columns()
    assert scored["id"].tolist() == direct["id"].tolist()
    prob_cols = [f"{t}_prob" for t in TOPICS]
    np.testing.assert_allclose(scored[prob_cols].to_numpy(float), direct[prob_cols].to_numpy(float), rtol=1e-6)
    assert scored["topics"].tolist() == direct["topics"].tolist()
