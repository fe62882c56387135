"""`mlflow models serve -m models:/turkey-policy@champion --env-manager local` answers /invocations with the
documented schema: started here on a free loopback port, asked, stopped."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

import pytest

from training.bundle import output_columns

ARTICLE = ("date 2025-08-21\nLa Turquie n'enverra pas de troupes en Ukraine\nLa Turquie n'enverra pas de troupes de "
           "maintien de la paix en Ukraine, ont déclaré ce jeudi des responsables du ministère de la Défense.")


def free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def die_with_parent() -> None:
    """preexec_fn: the server gets SIGTERM if pytest itself is killed (a timeout), instead of lingering."""
    try:
        import ctypes

        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG
    except OSError:
        pass


def wait_http(url: str, proc: subprocess.Popen, timeout: float, log: Path) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            raise AssertionError(f"server exited with {proc.returncode}:\n{log.read_text()[-3000:]}")
        try:
            with urllib.request.urlopen(url, timeout=2) as resp:
                if resp.status == 200:
                    return
        except (urllib.error.URLError, OSError):
            pass
        time.sleep(0.5)
    raise AssertionError(f"{url} did not answer within {timeout} s:\n{log.read_text()[-3000:]}")


def stop(proc: subprocess.Popen) -> None:
    if proc.poll() is None:
        os.killpg(proc.pid, signal.SIGTERM)
        try:
            proc.wait(timeout=20)
        except subprocess.TimeoutExpired:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()


def post_json(url: str, payload: dict) -> tuple[int, dict]:
    req = urllib.request.Request(url, data=json.dumps(payload).encode(), headers={"Content-Type": "application/json"})
    try:
        with urllib.request.urlopen(req, timeout=60) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read() or b"{}")


@pytest.fixture(scope="module")
def served(trained, tmp_path_factory):
    log = tmp_path_factory.mktemp("serve") / "serve.log"
    port = free_port()
    env = {**os.environ, "MLFLOW_TRACKING_URI": trained["uri"]}
    cmd = [str(Path(sys.executable).with_name("mlflow")), "models", "serve", "-m", "models:/turkey-policy@champion",
           "--env-manager", "local", "-h", "127.0.0.1", "-p", str(port), "--workers", "1"]
    with log.open("wb") as fh:
        proc = subprocess.Popen(cmd, env=env, cwd=log.parent, stdout=fh, stderr=subprocess.STDOUT,
                                start_new_session=True, preexec_fn=die_with_parent)
    try:
        wait_http(f"http://127.0.0.1:{port}/ping", proc, 120, log)
        yield f"http://127.0.0.1:{port}"
    finally:
        stop(proc)


@pytest.mark.slow
def test_served_champion_answers_with_documented_schema(served, champion):
    import pandas as pd

    payload = {"dataframe_split": {"columns": ["id", "text"],
                                   "data": [["a1", ARTICLE], ["a2", "   "], ["a3", "Il pleut à Lyon."]]}}
    status, body = post_json(f"{served}/invocations", payload)
    assert status == 200, body
    rows = body["predictions"]
    assert len(rows) == 3 and [r["id"] for r in rows] == ["a1", "a2", "a3"]
    assert all(set(r) == set(output_columns()) for r in rows)
    assert rows[0]["deployment"] is True and rows[0]["deployment_stance"] == "against"
    assert "deployment" in rows[0]["topics"] and "sanctions" not in rows[0]["topics"] and rows[0]["error"] is None
    assert rows[1]["error"] == "`text` is empty"
    # The server gives what the same model gives in-process.
    local = champion.predict(pd.DataFrame({"id": ["a1"], "text": [ARTICLE]})).iloc[0]
    assert rows[0]["deployment_prob"] == pytest.approx(local["deployment_prob"], abs=1e-9)


@pytest.mark.slow
def test_served_model_rejects_a_bare_list_and_takes_max_chars(served):
    status, _ = post_json(f"{served}/invocations", ["not", "a", "frame"])
    assert status == 400
    payload = {"dataframe_split": {"columns": ["text"], "data": [[ARTICLE * 3]]}, "params": {"max_chars": 100}}
    status, body = post_json(f"{served}/invocations", payload)
    assert status == 200 and body["predictions"][0]["truncated"] is True
