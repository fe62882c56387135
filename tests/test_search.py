"""Sweeps: the space syntax and its errors, and a real sweep of a few trials against a temporary MLflow store:
nested trial runs under one parent, the best config logged and trained, and a rerun that continues the study."""

from __future__ import annotations

import json
import shutil
from pathlib import Path

import pytest
import yaml
from conftest import own_store

from training.config import ConfigError, load_config, resolve
from training.search import Dimension, check_space, default_storage, parse_space, run_search, study_name

REPO = Path(__file__).resolve().parents[1]
# Small but complete: the same code path as a real sweep, a fraction of the time.
QUICK = ["splits.n_folds=2", "article.composite_articles=50", "model.char_ngrams=null", "data.seeds_gold=null",
         "register.export_dir=null",
         'search.space={"model.C": [0.5, 8, "log"], "model.min_df": [1, 3, "int"], '
         '"topic.min_threshold": [[0.05, 0.1], "categorical"]}']


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    # BLAS threads oversubscribe a shared 2-core machine: one topic fit took 50 s with 2 threads, 2.7 s with 1.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


# -- the space syntax -------------------------------------------------------------------------------------------

def test_space_syntax_parses_every_kind():
    dims = parse_space({"model.C": [0.5, 8, "log"], "model.min_df": [1, 3, "int"], "topic.min_threshold": [0, 0.2],
                        "article.composite_articles": [10, 500, "int_log"],
                        "model.char_ngrams": [[[2, 4], [2, 5], None], "categorical"]})
    assert dims == [Dimension("model.C", "log", 0.5, 8), Dimension("model.min_df", "int", 1, 3),
                    Dimension("topic.min_threshold", "float", 0, 0.2),
                    Dimension("article.composite_articles", "int_log", 10, 500),
                    Dimension("model.char_ngrams", "categorical", choices=([2, 4], [2, 5], None))]


@pytest.mark.parametrize("space, message", [
    ({"model.C": [8, 0.5, "log"]}, "search.space.model.C: low (8) must be below high (0.5)"),
    ({"model.C": [0, 8, "log"]}, "search.space.model.C: a log scale needs low > 0"),
    ({"model.C": [0.5, 8, "exp"]}, "search.space.model.C: unknown kind 'exp'"),
    ({"model.min_df": [1, 2.5, "int"]}, "search.space.model.min_df: an int range needs whole bounds"),
    ({"model.C": ["a", "b"]}, "search.space.model.C: expected [low, high]"),
    ({"model.C": [1, 2, 3, 4]}, "search.space.model.C: expected [low, high]"),
    ({"model.char_ngrams": [[], "categorical"]}, "search.space.model.char_ngrams: categorical needs a non-empty"),
    ({"experiment": [["a", "b"], "categorical"]}, "search.space.experiment: `experiment` cannot be searched"),
    ({}, "search.space: empty"),
])
def test_malformed_space_entries_name_the_key(space, message):
    with pytest.raises(ConfigError) as exc:
        parse_space(space)
    assert message in str(exc.value)


def test_space_keys_and_bounds_are_checked_against_the_config_before_any_trial():
    raw = resolve(REPO / "configs" / "sweep.yaml")
    with pytest.raises(ConfigError, match=r"search.space.model.Cc: .*`model.Cc` is not a config key; did you mean "
                                          r"`model.C`\?"):
        check_space(raw, parse_space({"model.Cc": [0.5, 8, "log"]}))
    with pytest.raises(ConfigError, match=r"search.space.model.min_df: with value 0: `model.min_df`: Input should "
                                          r"be greater than or equal to 1"):
        check_space(raw, parse_space({"model.min_df": [0, 3, "int"]}))
    check_space(raw, parse_space(load_config(REPO / "configs" / "sweep.yaml").search.space))


def test_unknown_metric_and_missing_search_block_are_config_errors():
    cfg = load_config(REPO / "configs" / "sweep.yaml", ["search.metric=cv_topic_macro_f"])
    with pytest.raises(ConfigError, match="search.metric: 'cv_topic_macro_f' is not a metric trials report; "
                                          "did you mean 'cv_topic_macro_f1'"):
        run_search(cfg, 1, resolve(REPO / "configs" / "sweep.yaml", ["search.metric=cv_topic_macro_f"]))
    with pytest.raises(ConfigError, match="needs a `search:` block"):
        run_search(load_config(REPO / "configs" / "default.yaml"), 1)


def test_study_identity_and_storage():
    sweep = REPO / "configs" / "sweep.yaml"
    base = study_name(load_config(sweep))
    assert base.startswith("sweep-")
    # what does not change a trial's score keeps the study; what does starts another
    assert study_name(load_config(sweep, ["search.trials=3", "register.alias=champion"])) == base
    assert study_name(load_config(sweep, ["splits.n_folds=4"])) != base
    assert study_name(load_config(sweep, ["search.study_name=mine"])) == "mine"
    assert default_storage("sqlite:////x/y/mlflow.db") == "sqlite:////x/y/optuna.db"
    assert default_storage("http://127.0.0.1:5000") == f"sqlite:///{Path.cwd() / 'optuna.db'}"


# -- a real sweep -----------------------------------------------------------------------------------------------

@pytest.fixture(scope="module")
def sweep(tmp_path_factory):
    """Two trials and the final model, then the same sweep again with one more trial."""
    import mlflow

    d = tmp_path_factory.mktemp("sweep")
    for name in ("configs", "data", "seeds"):
        shutil.copytree(REPO / name, d / name)
    with own_store(d) as uri:
        cfg = load_config("configs/sweep.yaml", QUICK)
        first = run_search(cfg, 2, resolve("configs/sweep.yaml", QUICK), "configs/sweep.yaml")
        # what the first command logged on the parent (the rerun below logs its own best there)
        best_yaml = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{first['parent_run_id']}/best/resolved.yaml"))
        best_json = mlflow.artifacts.load_dict(f"runs:/{first['parent_run_id']}/best/trial.json")
        # the same sweep again, one more trial (the final model is not retrained: it is the slow part)
        again = run_search(cfg, 1, resolve("configs/sweep.yaml", QUICK), "configs/sweep.yaml", train_final=False)
        mlflow.set_tracking_uri(uri)
        runs = mlflow.search_runs(experiment_names=["turkey-policy"], output_format="list")
        client = mlflow.MlflowClient(uri)
        final_yaml = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{first['run_id']}/config/resolved.yaml"))
        versions = client.search_model_versions("name='turkey-policy'")
        yield {"first": first, "again": again, "runs": runs, "best_yaml": best_yaml, "best_json": best_json,
               "final_yaml": final_yaml, "versions": versions, "dir": d, "client": client}


def by_role(runs, role):
    return [r for r in runs if r.data.tags.get("search.role") == role]


def test_trials_are_nested_runs_under_one_parent(sweep):
    first, runs = sweep["first"], sweep["runs"]
    (parent,) = by_role(runs, "parent")
    assert parent.info.run_id == first["parent_run_id"]
    trials = by_role(runs, "trial")
    assert len(trials) == 3  # two, then one more on the rerun
    for t in trials:
        assert t.data.tags["mlflow.parentRunId"] == parent.info.run_id
        assert t.info.status == "FINISHED"
        assert 0.5 <= float(t.data.params["model.C"]) <= 8 and t.data.params["model.min_df"] in ("1", "2", "3")
        assert t.data.params["register.enabled"] == "False"  # trials never register
        assert 0 < t.data.metrics["cv_topic_macro_f1"] <= 1 and "cv_stance_macro_f1" in t.data.metrics
        assert not any(k.startswith("seeds_") for k in t.data.metrics)  # CV only
    assert sorted(t.data.tags["search.trial"] for t in trials) == ["0", "1", "2"]


def test_best_trial_config_is_logged_on_the_parent_and_trained(sweep):
    first, runs = sweep["first"], sweep["runs"]
    trials = {r.data.tags["search.trial"]: r for r in by_role(runs, "trial")}
    first_two = [trials["0"], trials["1"]]
    best = max(first_two, key=lambda r: r.data.metrics["cv_topic_macro_f1"])
    assert first["best_trial"] == int(best.data.tags["search.trial"])
    assert first["best_value"] == best.data.metrics["cv_topic_macro_f1"]
    assert sweep["best_json"]["mlflow_run_id"] == best.info.run_id
    logged = sweep["best_yaml"]
    assert logged["model"]["C"] == pytest.approx(float(best.data.params["model.C"]))
    assert logged["model"]["min_df"] == int(best.data.params["model.min_df"])
    assert logged["topic"]["min_threshold"] == float(best.data.params["topic.min_threshold"])
    assert load_config(sweep["dir"] / "configs" / "sweep.yaml",
                       QUICK + [f"{k}={json.dumps(v)}" for k, v in first["best_values"].items()]
                       ).model_dump(mode="json") == logged
    # the final model: trained with exactly that config, nested under the parent, registered (one per command)
    (final,) = by_role(runs, "final")
    assert final.info.run_id == first["run_id"]
    assert final.data.tags["mlflow.parentRunId"] == first["parent_run_id"]
    assert sweep["final_yaml"] == logged
    assert first["run_id"] in {v.run_id for v in sweep["versions"]}
    assert first["registered_version"] and "seeds_passage_topic_macro_f1" not in first["metrics"]  # seeds off here


def test_rerun_continues_the_same_study_and_parent(sweep):
    import optuna

    first, again = sweep["first"], sweep["again"]
    assert again["resumed"] and again["parent_run_id"] == first["parent_run_id"] and again["study"] == first["study"]
    assert (again["trials_run"], again["trials_complete"]) == (1, 3)
    study = optuna.load_study(study_name=first["study"], storage=first["storage"])
    assert first["storage"] == f"sqlite:///{sweep['dir'] / 'optuna.db'}"  # beside the MLflow store
    assert len(study.trials) == 3 and all(t.state.name == "COMPLETE" for t in study.trials)
    assert study.user_attrs["mlflow_parent_run_id"] == first["parent_run_id"]
    parent = sweep["client"].get_run(first["parent_run_id"])
    assert parent.data.metrics["trials_complete"] == 3
    history = sweep["client"].get_metric_history(first["parent_run_id"], "trials_complete")
    assert sorted(m.value for m in history) == [2, 3]
    # the rerun proposed a new point, not a replay of the first trials
    values = [json.dumps(t.params, sort_keys=True) for t in study.trials]
    assert len(set(values)) == 3


def test_trial_0_is_the_starting_config(sweep):
    """The sweep tries its base config first, so its best is never worse than not sweeping (issue 18)."""
    trials = {r.data.tags["search.trial"]: r for r in by_role(sweep["runs"], "trial")}
    params = trials["0"].data.params
    assert (float(params["model.C"]), params["model.min_df"], float(params["topic.min_threshold"])) == (4.0, "1", 0.05)
    assert sweep["first"]["best_value"] >= trials["0"].data.metrics["cv_topic_macro_f1"]


def test_starting_params_as_optuna_values_and_what_cannot_be_one():
    from training.search import starting_params

    cfg = load_config(REPO / "configs" / "sweep.yaml")
    dims = parse_space({"model.C": [0.5, 8, "log"], "model.min_df": [1, 3, "int"],
                        "model.char_ngrams": [[[2, 4], [2, 5], None], "categorical"]})
    assert starting_params(cfg, dims) == ({"model.C": 4.0, "model.min_df": 1, "model.char_ngrams": "[2, 5]"}, [])
    params, outside = starting_params(load_config(REPO / "configs" / "sweep.yaml", ["model.char_ngrams=[3, 6]"]),
                                      dims)
    assert "model.char_ngrams" not in params and outside == ["model.char_ngrams=[3, 6]"]
