"""Configs compose (`extends`, chains, `--set`), reject wrong keys naming the key and where it was set, and
flatten into MLflow params that fit its limits."""

from __future__ import annotations

import textwrap
from pathlib import Path

import pytest
import yaml

from training.config import ConfigError, TrainConfig, flatten, load_config, resolve, to_yaml

REPO = Path(__file__).resolve().parents[1]
DEFAULT = REPO / "configs" / "default.yaml"


def write(path: Path, text: str) -> Path:
    path.write_text(textwrap.dedent(text).lstrip(), encoding="utf-8")
    return path


@pytest.fixture
def chain(tmp_path) -> Path:
    """default.yaml <- mid.yaml <- leaf.yaml"""
    write(tmp_path / "mid.yaml", f"""
        extends: {DEFAULT}
        splits:
          n_folds: 3
        model:
          C: 2.0
          min_df: 2
    """)
    return write(tmp_path / "leaf.yaml", """
        extends: mid.yaml
        name: leaf
        model:
          min_df: 3
    """)


def test_extends_chain_and_set_resolve(chain):
    cfg = load_config(chain, ["model.C=0.5", "model.char_ngrams=null", "data.train=[a.jsonl, b.jsonl]"])
    assert cfg.name == "leaf"
    assert cfg.splits.n_folds == 3  # from mid.yaml
    assert cfg.model.min_df == 3  # leaf.yaml over mid.yaml
    assert cfg.model.C == 0.5  # --set over every file
    assert cfg.model.char_ngrams is None
    assert cfg.data.train == ["a.jsonl", "b.jsonl"]
    assert cfg.model.word_ngrams == (1, 2) and cfg.seed == 13  # untouched keys come from default.yaml
    assert cfg.register.alias == "candidate"
    # the raw resolved dict is what gets validated: same values
    assert TrainConfig.model_validate(resolve(chain, ["model.C=0.5", "model.char_ngrams=null",
                                                      "data.train=[a.jsonl, b.jsonl]"])) == cfg


def test_several_parents_later_wins_and_family_switch_drops_old_keys(tmp_path):
    write(tmp_path / "a.yaml", "seed: 1\nsplits: {n_folds: 4}\n")
    write(tmp_path / "b.yaml", "seed: 2\n")
    leaf = write(tmp_path / "leaf.yaml", f"""
        extends: [{DEFAULT}, a.yaml, b.yaml]
        model:
          family: embedding_linear
          encoder: spacy_vectors
    """)
    cfg = load_config(leaf)
    assert cfg.seed == 2 and cfg.splits.n_folds == 4
    # the tfidf-only keys of default.yaml (hash_bits...) are not carried into another family's section
    assert cfg.model.family == "embedding_linear" and cfg.model.char_ngrams is None


def test_extends_cycle_is_reported(tmp_path):
    write(tmp_path / "a.yaml", "extends: b.yaml\n")
    write(tmp_path / "b.yaml", "extends: a.yaml\n")
    with pytest.raises(ConfigError, match="cycle"):
        load_config(tmp_path / "a.yaml")


def test_unknown_key_names_key_file_and_line(chain, tmp_path):
    write(tmp_path / "mid.yaml", (tmp_path / "mid.yaml").read_text().replace("n_folds", "n_fold"))
    with pytest.raises(ConfigError) as exc:
        load_config(chain)
    msg = str(exc.value)
    # the typo lives in mid.yaml (a parent of the file given), line 3
    assert f"{(tmp_path / 'mid.yaml').resolve()}:3: unknown key `splits.n_fold`" in msg
    assert "did you mean `splits.n_folds`?" in msg
    assert "leaf.yaml: invalid config" in msg


def test_unknown_key_inside_a_model_family_lists_that_familys_keys(chain):
    with pytest.raises(ConfigError) as exc:
        load_config(chain, ["model.Cc=3"])
    msg = str(exc.value)
    assert "--set model.Cc=3: unknown key `model.Cc`; did you mean `model.C`?" in msg
    assert "hash_bits" in msg and "encoder" not in msg  # tfidf_linear's keys, not another family's


def test_wrong_family_lists_the_accepted_families(tmp_path):
    leaf = write(tmp_path / "leaf.yaml", f"extends: {DEFAULT}\nmodel:\n  family: tfidf_lnear\n")
    with pytest.raises(ConfigError) as exc:
        load_config(leaf)
    msg = str(exc.value)
    assert f"{leaf.resolve()}:3: `model.family` must be one of 'tfidf_linear', 'embedding_linear', 'transformer'" in msg
    assert "(got 'tfidf_lnear')" in msg


def test_literal_error_lists_accepted_values_and_names_the_set_item(chain):
    with pytest.raises(ConfigError) as exc:
        load_config(chain, ["splits.kind=temporl", "registr.enabled=false"])
    msg = str(exc.value)
    assert "--set splits.kind=temporl: `splits.kind` must be 'grouped_stratified' or 'temporal' (got 'temporl')" in msg
    assert "--set registr.enabled=false: unknown key `registr`; did you mean `register`?" in msg


def test_out_of_range_value_names_file_and_line(tmp_path):
    leaf = write(tmp_path / "leaf.yaml", f"extends: {DEFAULT}\nmodel:\n  C: -1\n")
    with pytest.raises(ConfigError, match=r"leaf\.yaml:3: `model\.C`: Input should be greater than 0 \(got -1\)"):
        load_config(leaf)


def test_bad_set_syntax(chain):
    with pytest.raises(ConfigError, match="expected KEY=VALUE"):
        load_config(chain, ["model.C"])
    with pytest.raises(ConfigError, match="'C' is a value, not a section"):
        load_config(chain, ["model.C.x=1"])


def test_flatten_truncates_long_values_within_mlflow_limits(tmp_path):
    import mlflow
    from mlflow.utils.validation import MAX_ENTITY_KEY_LENGTH, MAX_PARAM_VAL_LENGTH

    patterns = [f"data/written/{'x' * 40}_{i}.jsonl" for i in range(300)]  # ~16 KB as one JSON value
    cfg = load_config(DEFAULT, [f"data.train={patterns}"])
    other = load_config(DEFAULT, [f"data.train={patterns[:-1] + ['other.jsonl']}"])
    params = flatten(cfg)
    assert params["model.C"] == "4.0" and params["model.char_ngrams"] == "[2, 5]"
    long = params["data.train"]
    assert len(long) <= 500 <= MAX_PARAM_VAL_LENGTH and "[truncated" in long
    assert long != flatten(other)["data.train"]  # cut values still tell different configs apart
    assert all(len(k) <= MAX_ENTITY_KEY_LENGTH and len(v) <= MAX_PARAM_VAL_LENGTH for k, v in params.items())
    mlflow.set_tracking_uri(f"sqlite:///{tmp_path / 'mlflow.db'}")
    try:
        # its own experiment: an earlier test's active experiment id does not exist in this fresh store
        with mlflow.start_run(experiment_id=mlflow.create_experiment("flatten")) as run:
            mlflow.log_params(params)
        logged = mlflow.MlflowClient().get_run(run.info.run_id).data.params
    finally:
        mlflow.set_tracking_uri(None)
    assert logged["data.train"] == long
    assert yaml.safe_load(to_yaml(cfg))["data"]["train"] == patterns  # the artifact keeps the full value


def test_config_show_prints_the_resolved_config(chain, capsys):
    from training.cli import main

    assert main(["config", "show", str(chain), "--set", "model.C=0.25"]) == 0
    shown = yaml.safe_load(capsys.readouterr().out)
    assert shown == load_config(chain, ["model.C=0.25"]).model_dump(mode="json")
    assert shown["model"]["C"] == 0.25 and shown["model"]["min_df"] == 3


def test_config_show_reports_errors_with_exit_code_2(chain, capsys):
    from training.cli import main

    assert main(["config", "show", str(chain), "--set", "model.famly=x"]) == 2
    assert "unknown key `model.famly`" in capsys.readouterr().err
