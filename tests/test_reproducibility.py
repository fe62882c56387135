"""The same config and data give identical metrics on two runs, and a run logs what is needed to reproduce it:
the resolved config (equal to what `extends` + `--set` resolve to), git commit and dirty flag, dataset digests,
seed and package versions."""

from __future__ import annotations

import importlib.metadata as md
import re
import shutil
import subprocess
from pathlib import Path

import pytest
import yaml
from conftest import own_store

from training.config import load_config, resolve

REPO = Path(__file__).resolve().parents[1]
# A child config (extends + overrides) keeps the whole pipeline (CV, composite articles, seeds) at a fraction of
# the default's cost.
CHILD = """\
extends: default.yaml
name: repro
splits:
  n_folds: 2
article:
  composite_articles: 50
"""
SET = ["model.char_ngrams=null", "register.enabled=false", "register.export_dir=null"]


@pytest.fixture(autouse=True, scope="module")
def one_blas_thread():
    # BLAS threads oversubscribe a shared 2-core machine: one topic fit took 50 s with 2 threads, 2.7 s with 1.
    from threadpoolctl import threadpool_limits

    with threadpool_limits(1):
        yield


@pytest.fixture(scope="module")
def two_runs(tmp_path_factory):
    import mlflow

    from training.train import run

    d = tmp_path_factory.mktemp("repro")
    for name in ("configs", "data", "seeds"):
        shutil.copytree(REPO / name, d / name)
    (d / "configs" / "repro.yaml").write_text(CHILD, encoding="utf-8")
    out = []
    for store in ("first.db", "second.db"):
        with own_store(d, store) as uri:
            cfg = load_config("configs/repro.yaml", SET)
            result = run(cfg, resolve("configs/repro.yaml", SET), "configs/repro.yaml")
            client = mlflow.MlflowClient(uri)
            r = client.get_run(result["run_id"])
            logged = yaml.safe_load(mlflow.artifacts.load_text(f"runs:/{r.info.run_id}/config/resolved.yaml"))
            packages = mlflow.artifacts.load_dict(f"runs:/{r.info.run_id}/lineage/packages.json")
            out.append({"result": result, "run": r, "config": cfg, "logged": logged, "packages": packages})
    return {"runs": out, "dir": d}


def comparable(metrics: dict) -> dict:
    return {k: v for k, v in metrics.items() if not k.endswith("_seconds")}  # wall-clock times differ


def test_same_config_and_data_give_identical_metrics(two_runs):
    a, b = (comparable(r["run"].data.metrics) for r in two_runs["runs"])
    assert set(a) == set(b)
    assert any(k.startswith("cv_") for k in a) and any(k.startswith("seeds_") for k in a)
    assert a == b  # exactly, not approximately
    assert comparable(two_runs["runs"][0]["result"]["metrics"]) == comparable(two_runs["runs"][1]["result"]["metrics"])


def test_logged_config_is_the_resolved_config(two_runs):
    for r in two_runs["runs"]:
        expected = load_config(two_runs["dir"] / "configs" / "repro.yaml", SET).model_dump(mode="json")
        assert r["logged"] == expected
        assert r["logged"]["splits"]["n_folds"] == 2 and r["logged"]["model"]["char_ngrams"] is None
        assert r["logged"]["model"]["C"] == 4.0  # inherited from default.yaml
        params = r["run"].data.params
        assert params["name"] == "repro" and params["splits.n_folds"] == "2" and params["model.char_ngrams"] == "None"


def test_lineage_git_seed_datasets_packages(two_runs):
    from training.data import load_files, load_seed_gold
    from training.real import load_real, passage_corpus

    d = two_runs["dir"]
    written = load_files(["data/written/*.jsonl"], root=d)
    seeds = load_seed_gold(d / "data" / "seeds_gold.jsonl", d / "seeds")
    real = load_real(d / "data" / "real" / "labels.jsonl")
    expected = {"training_passages": (written + passage_corpus([a for a in real if a.split == "train"])).digest(),
                "seed_passages": seeds.digest()}
    for split in ("dev", "test"):
        expected[f"real_{split}_passages"] = passage_corpus([a for a in real if a.split == split]).digest()
    for r in two_runs["runs"]:
        tags = r["run"].data.tags
        # the code's commit, even though the run's working directory is not a git checkout
        assert re.fullmatch(r"[0-9a-f]{40}", tags["git_commit"])
        assert subprocess.run(["git", "cat-file", "-e", f"{tags['git_commit']}^{{commit}}"], cwd=REPO).returncode == 0
        assert tags["git_dirty"] in ("true", "false")
        assert tags["seed"] == "13" and r["run"].data.params["seed"] == "13"
        assert tags["config_path"] == "configs/repro.yaml"
        digests = {i.dataset.name: i.dataset.digest for i in r["run"].inputs.dataset_inputs}
        assert digests == expected
        for name in ("mlflow", "scikit-learn", "numpy", "scipy", "skops", "pydantic"):
            assert r["packages"][name] == md.version(name)
        assert re.fullmatch(r"3\.\d+\.\d+", r["packages"]["python"])


def test_git_info_records_commit_and_dirty_flag(tmp_path):
    from training.tracking import git_info

    def git(*args):
        subprocess.run(["git", "-c", "user.name=t", "-c", "user.email=t@t", *args], cwd=tmp_path, check=True,
                       capture_output=True)

    git("init", "-q")
    (tmp_path / "a.txt").write_text("one")
    git("add", "a.txt")
    git("commit", "-q", "-m", "one")
    head = subprocess.run(["git", "rev-parse", "HEAD"], cwd=tmp_path, capture_output=True, text=True).stdout.strip()
    assert git_info(tmp_path) == {"git_commit": head, "git_dirty": "false"}
    (tmp_path / "untracked.txt").write_text("x")
    assert git_info(tmp_path)["git_dirty"] == "false"  # untracked files do not change the code that ran
    (tmp_path / "a.txt").write_text("two")
    assert git_info(tmp_path) == {"git_commit": head, "git_dirty": "true"}
    outside = tmp_path.parent / "not-a-repo"
    outside.mkdir(exist_ok=True)
    assert git_info(outside) == {"git_commit": "unknown", "git_dirty": "false"}


def test_data_digest_changes_with_the_data(tmp_path):
    from training.data import load_files

    src = REPO / "data" / "written" / "pilot.jsonl"
    lines = src.read_text(encoding="utf-8").splitlines()
    (tmp_path / "a.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    (tmp_path / "b.jsonl").write_text("\n".join(lines[:-1] + [lines[-1].replace('"text": "', '"text": "X', 1)]) + "\n",
                                      encoding="utf-8")
    a, b = load_files([str(tmp_path / "a.jsonl")]), load_files([str(tmp_path / "b.jsonl")])
    assert a.digest() == load_files([str(src)]).digest() != b.digest()
