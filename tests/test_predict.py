"""`training.predict.predict()` finds the store the way `tpc score` does, whatever the working directory, and never
creates an empty store as a side effect (issue 18)."""

from __future__ import annotations

import subprocess
import sys

import pytest

from training import tracking
from training.modelref import ModelError
from training.predict import load_model, predict
from training.tracking import TrackingError

TEXT = "Le Parlement turc autorise l'envoi de troupes en Libye."


@pytest.fixture
def no_env_store(monkeypatch):
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)
    load_model.cache_clear()
    yield
    load_model.cache_clear()


def test_from_a_sub_folder_of_the_project(trained, no_env_store, monkeypatch):
    sub = trained["dir"] / "notebooks" / "deep"
    sub.mkdir(parents=True, exist_ok=True)
    monkeypatch.chdir(sub)
    (row,) = predict([TEXT])
    assert row["id"] == "0" and row["deployment"] is True
    assert not (sub / "mlflow.db").exists() and not (sub.parent / "mlflow.db").exists()


def test_from_anywhere_through_the_project_the_package_is_installed_from(trained, no_env_store, monkeypatch,
                                                                          tmp_path):
    monkeypatch.setattr(tracking, "PROJECT_DIR", trained["dir"])  # where an editable install's project would be
    monkeypatch.chdir(tmp_path)
    assert predict([TEXT])[0]["deployment"] is True
    assert list(tmp_path.iterdir()) == []


def test_no_store_is_a_clear_error_and_creates_nothing(no_env_store, monkeypatch, tmp_path):
    monkeypatch.setattr(tracking, "PROJECT_DIR", tmp_path / "project")
    monkeypatch.chdir(tmp_path)
    with pytest.raises(TrackingError, match="no MLflow store: no mlflow.db in .*set MLFLOW_TRACKING_URI"):
        predict([TEXT])
    monkeypatch.setenv("MLFLOW_TRACKING_URI", f"sqlite:///{tmp_path / 'elsewhere.db'}")
    with pytest.raises(TrackingError, match="elsewhere.db does not exist"):
        predict([TEXT])
    assert list(tmp_path.iterdir()) == []


def test_a_model_that_cannot_be_found_is_one_paragraph(trained, no_env_store, monkeypatch):
    monkeypatch.chdir(trained["dir"])
    with pytest.raises(ModelError) as exc:
        predict([TEXT], model_uri="models:/turkey-policy@nobody")
    assert "model_uri models:/turkey-policy@nobody: no version of 'turkey-policy' holds @nobody" in str(exc.value)
    assert "\n" not in str(exc.value)


def test_tpc_score_creates_no_store_either(tmp_path, trained):
    """The command line, run where there is no store: exit 2, one paragraph, no mlflow.db left behind."""
    import os

    (tmp_path / "in.jsonl").write_text('{"text": "Ankara livre des drones."}\n', encoding="utf-8")
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    code = ("import sys; from training import tracking; from pathlib import Path; "
            "tracking.PROJECT_DIR = Path(sys.argv[1]); from training.cli import main; sys.exit(main(sys.argv[2:]))")
    done = subprocess.run([sys.executable, "-c", code, str(tmp_path / "project"), "score", "in.jsonl", "-o",
                           "out.jsonl"], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=300)
    assert done.returncode == 2, done.stderr[-3000:]
    assert done.stderr.strip().startswith("tpc: error: no MLflow store") and "Traceback" not in done.stderr
    assert sorted(p.name for p in tmp_path.iterdir()) == ["in.jsonl"]
