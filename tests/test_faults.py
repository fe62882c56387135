"""Faults around training: a tracking server that is down, broken or silent fails the run within seconds and before
any fitting; a failure after fitting keeps the fitted model on disk and says how to log it again (and that works)."""

import http.server
import json
import os
import re
import shlex
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path

import mlflow  # imported here so the timed calls below measure the checks, not the first import
import pandas as pd
import pytest

import training.stages as train_module
from training import tracking
from training.bundle import Bundle
from training.cli import main as tpc
from training.tracking import TrackingError, check_reachable

REPO = Path(__file__).resolve().parents[1]


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]  # closed again when the block ends: nothing listens there


class _Server:
    """A tiny HTTP server on 127.0.0.1 that answers every request with `status` (or never answers), and records
    the requests it got."""

    def __init__(self, status: int | None, health: int | None = None):
        requests = self.requests = []

        class Handler(http.server.BaseHTTPRequestHandler):
            def _answer(self):
                requests.append((self.command, self.path))
                if status is None:  # accept the connection, never answer
                    time.sleep(30)
                    return
                code = health if (health and self.path == "/health") else status
                body = b'{"error_code": "INTERNAL_ERROR"}'
                self.send_response(code)
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body)

            do_GET = do_POST = do_PATCH = do_DELETE = _answer

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.httpd.daemon_threads = True
        self.uri = f"http://127.0.0.1:{self.httpd.server_address[1]}"
        threading.Thread(target=self.httpd.serve_forever, daemon=True).start()

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()


@pytest.fixture
def no_fitting(monkeypatch):
    """Fail the test if training reaches any fitting step."""
    def forbidden(*args, **kwargs):
        raise AssertionError("fitting started although the tracking server is not usable")

    for name in ("oof_topic", "oof_stance", "submit_models", "fit_bundle"):
        monkeypatch.setattr(train_module, name, forbidden)
    monkeypatch.setattr(train_module, "load_files", forbidden)


@pytest.fixture
def project(tmp_path):
    """A fresh copy of the project per test: the session copy may already hold another test's mlruns/."""
    from conftest import copy_project

    return copy_project(tmp_path)


def _tpc_train(project: Path, uri: str, monkeypatch, capsys) -> tuple[int, str, float]:
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(project)
    start = time.perf_counter()
    code = tpc(["train", "configs/default.yaml"])
    return code, capsys.readouterr().err, time.perf_counter() - start


def test_unreachable_server_fails_fast_before_fitting(project, monkeypatch, capsys, no_fitting):
    uri = f"http://127.0.0.1:{_closed_port()}"
    code, err, seconds = _tpc_train(project, uri, monkeypatch, capsys)
    assert code == 2
    assert f"tpc: error: MLflow tracking server {uri} is unreachable" in err and "Connection refused" in err
    assert "nothing was trained or logged" in err
    assert seconds < 10
    assert not (project / "mlruns").exists() and not (project / "failed_runs").exists()


@pytest.mark.parametrize("health", [500, None], ids=["all-500", "health-ok-api-500"])
def test_failing_server_fails_fast_and_registers_nothing(project, monkeypatch, capsys, no_fitting, health):
    server = _Server(500, health=200 if health is None else None)
    try:
        code, err, seconds = _tpc_train(project, server.uri, monkeypatch, capsys)
    finally:
        server.close()
    assert code == 2 and seconds < 10
    where = "/health" if health == 500 else "/api/2.0/mlflow/experiments/search"
    assert f"MLflow tracking server {server.uri} answered HTTP 500 on {where}" in err
    # Only the read-only probes reached the server: no experiment, run or model version was created there.
    assert all(method == "GET" for method, _ in server.requests), server.requests
    assert not any("registered-models" in path or "runs" in path for _, path in server.requests)


def test_silent_server_times_out_within_seconds():
    server = _Server(None)
    try:
        start = time.perf_counter()
        with pytest.raises(TrackingError, match="is unreachable \\(timed out\\)"):
            check_reachable(server.uri, timeout=1.0)
        assert time.perf_counter() - start < 5
    finally:
        server.close()


def test_local_stores_need_no_server():
    check_reachable("sqlite:///nowhere/mlflow.db")
    check_reachable("databricks")


# -- a failure after fitting ------------------------------------------------------------------------------------
# Small and coarse on purpose: this test is about what happens after fitting, not about the model.
TINY = ["splits.n_folds=2", "article.composite_articles=0", "data.seeds_gold=null", "model.char_ngrams=null",
        "model.word_ngrams=[1,1]", "model.hash_bits=12", "model.max_iter=50", "register.export_dir=null",
        "register.promote=false", "data.train=[tiny/*.jsonl]", "data.real=null"]


@pytest.fixture
def tiny_project(tmp_path):
    """A copy of the configs with a small training file (12 passages of each written file)."""
    import shutil

    shutil.copytree(REPO / "configs", tmp_path / "configs")
    (tmp_path / "tiny").mkdir()
    lines = []
    for f in sorted((REPO / "data" / "written").glob("*.jsonl")):
        lines += f.read_text(encoding="utf-8").splitlines()[:12]
    (tmp_path / "tiny" / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return tmp_path


def test_registry_failure_after_fitting_keeps_the_model_and_relog_works(tiny_project, monkeypatch, capsys):
    uri = f"sqlite:///{tiny_project / 'mlflow.db'}"
    monkeypatch.setenv("MLFLOW_TRACKING_URI", uri)
    monkeypatch.chdir(tiny_project)
    register = tracking.register

    def registry_down(*args, **kwargs):
        raise RuntimeError("model registry unavailable (injected)")

    monkeypatch.setattr(tracking, "register", registry_down)
    args = ["train", "configs/default.yaml"] + [a for s in TINY for a in ("--set", s)]
    assert tpc(args) == 2
    err = capsys.readouterr().err
    assert "training finished but logging or registering the model failed (RuntimeError: model registry " \
           "unavailable (injected))" in err
    kept = re.search(r"The fitted model is kept at (\S+)\. ", err).group(1)
    run_id = Path(kept).parent.name
    assert Path(kept) == (tiny_project / "failed_runs" / run_id / "bundle").resolve()
    bundle = Bundle.load(kept)
    out = bundle.predict_frame(pd.DataFrame({"text": ["Ankara refuse de livrer des drones à Kiev."]}))
    assert len(out) == 1 and out["error"].isna().all()

    client = mlflow.MlflowClient(uri)
    assert client.search_registered_models() == []  # nothing half-registered
    assert client.get_run(run_id).info.status == "FAILED"

    # The printed command logs and registers the kept model once the registry is back.
    monkeypatch.setattr(tracking, "register", register)
    command = err.split("log and register it again from this directory with:\n")[1].strip()
    argv = shlex.split(command)
    assert argv[:2] == ["python", "-c"]
    env = dict(os.environ, PYTHONPATH=str(REPO))
    done = subprocess.run([sys.executable, "-c", argv[2]], cwd=tiny_project, env=env, capture_output=True,
                          text=True, timeout=300)
    assert done.returncode == 0, done.stderr[-2000:]
    version = client.get_model_version_by_alias("turkey-policy", "candidate")
    assert version.run_id == run_id
    model = mlflow.pyfunc.load_model(f"models:/turkey-policy/{version.version}")
    again = model.predict(pd.DataFrame({"text": ["Ankara refuse de livrer des drones à Kiev."]}))
    pd.testing.assert_frame_equal(again, out, check_dtype=False)  # the served schema may use pandas string dtypes
