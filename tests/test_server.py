"""Against a real `mlflow server` (SQLite backend, one worker, no job runner) on loopback: train, register, promote
and score through HTTP only."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import mlflow
import pytest

from conftest import FAST, copy_project
from test_score import make_articles, write_jsonl
from test_serving import die_with_parent, free_port, stop, wait_http


@pytest.fixture
def server(tmp_path):
    port = free_port()
    log = tmp_path / "server.log"
    env = {**os.environ, "MLFLOW_SERVER_ENABLE_JOB_EXECUTION": "false"}
    env.pop("MLFLOW_TRACKING_URI", None)
    cmd = [str(Path(sys.executable).with_name("mlflow")), "server",
           "--backend-store-uri", f"sqlite:///{tmp_path / 'server.db'}",
           "--artifacts-destination", str(tmp_path / "artifacts"),
           "--host", "127.0.0.1", "--port", str(port), "--workers", "1"]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=tmp_path, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=die_with_parent)
    try:
        wait_http(f"http://127.0.0.1:{port}/health", proc, 120, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.mark.slow
def test_train_register_promote_and_score_through_a_tracking_server(server, tmp_path, monkeypatch):
    from training.config import load_config, resolve
    from training.train import run

    before = mlflow.get_tracking_uri()
    project = copy_project(tmp_path / "project")
    monkeypatch.setenv("MLFLOW_TRACKING_URI", server)
    monkeypatch.chdir(project)
    try:
        cfg = load_config("configs/default.yaml", FAST)
        result = run(cfg, resolve("configs/default.yaml", FAST), "configs/default.yaml")
        client = mlflow.MlflowClient()
        assert client.get_run(result["run_id"]).info.status == "FINISHED"
        assert result["registered_version"] == 1 and result["promoted"] is True
        assert str(client.get_model_version_by_alias("turkey-policy", "champion").version) == "1"
        # Artifacts went to the server's store, not to the working directory.
        assert (tmp_path / "artifacts").is_dir() and not (project / "mlruns").exists()

        # A second version of the same model, gated through the server by the command line.
        v2 = mlflow.register_model(result["model_uri"], "turkey-policy").version
        env = {**os.environ, "MLFLOW_TRACKING_URI": server}
        cli = [sys.executable, "-m", "training.cli"]
        promoted = subprocess.run([*cli, "promote", "--candidate", f"models:/turkey-policy/{v2}"], cwd=project,
                                  env=env, capture_output=True, text=True, timeout=300)
        assert promoted.returncode == 0, promoted.stderr[-3000:]
        assert promoted.stdout.startswith("PROMOTED: ")
        assert str(client.get_model_version_by_alias("turkey-policy", "champion").version) == str(v2)

        src = write_jsonl(project / "new.jsonl", make_articles(200, seed=11, passages=(2, 4)))
        scored = subprocess.run([*cli, "score", str(src), "-o", str(project / "scored.parquet"), "--workers", "2"],
                                cwd=project, env=env, capture_output=True, text=True, timeout=300)
        assert scored.returncode == 0, scored.stderr[-3000:]
        assert json.loads(scored.stderr.strip().splitlines()[-1])["model"] == f"turkey-policy/{v2}"
        import pyarrow.parquet as pq

        table = pq.read_table(project / "scored.parquet")
        assert table.num_rows == 200 and table.column("id").to_pylist() == [f"art-{i:05d}" for i in range(200)]
        assert set(table.column("model_version").to_pylist()) == {str(v2)}
    finally:
        mlflow.set_tracking_uri(before)
        mlflow.set_registry_uri(before)
