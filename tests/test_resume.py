"""Resume after `kill -9`: the finished output is byte-identical to an uninterrupted run; a mismatch is refused."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from test_score import make_articles, write_jsonl
from training.score import InputError, Interrupted, score

MODEL = "models:/turkey-policy@champion"


@pytest.fixture(scope="module")
def big_input(tmp_path_factory, trained):
    d = tmp_path_factory.mktemp("resume")
    return write_jsonl(d / "in.jsonl", make_articles(2000, seed=7, passages=(1, 3)))


def _tpc(args: list[str], cwd: Path, uri: str) -> subprocess.Popen:
    env = {**os.environ, "MLFLOW_TRACKING_URI": uri}
    # Own process group: the kill reaches the worker processes too, as a real `kill -9` of a job would.
    # Ctrl-C's default action back in the child, as in a terminal: a test run started in the background (nohup,
    # `cmd &` in a script) ignores SIGINT, and a child would inherit that and never see the Ctrl-C test's signal.
    return subprocess.Popen([sys.executable, "-m", "training.cli", "score", *args], cwd=cwd, env=env,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, start_new_session=True,
                            preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))


def _kill_mid_file(out: Path, proc: subprocess.Popen, min_rows: int, timeout: float = 240) -> int:
    sidecar = out.with_name(out.name + ".progress.json")
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        try:
            rows = json.loads(sidecar.read_text())["state"]["rows"]
        except (OSError, ValueError, KeyError):
            rows = 0
        if rows >= min_rows:
            os.killpg(proc.pid, signal.SIGKILL)
            proc.wait()
            return rows
        time.sleep(0.05)
    os.killpg(proc.pid, signal.SIGKILL)
    raise AssertionError("scoring never reached the kill point")


@pytest.mark.slow
@pytest.mark.parametrize("suffix,workers", [(".jsonl", 2), (".parquet", 1)])
def test_resume_after_sigkill_gives_identical_bytes(big_input, trained, tmp_path, suffix, workers):
    reference = big_input.with_name(f"reference{suffix}")
    if not reference.exists():
        assert score(big_input, reference, MODEL, chunk_size=100, workers=1)["rows"] == 2000

    out = tmp_path / f"out{suffix}"
    args = [str(big_input), "-o", str(out), "--chunk-size", "100", "--workers", str(workers)]
    proc = _tpc(args, tmp_path, trained["uri"])
    done = _kill_mid_file(out, proc, min_rows=500)
    assert 500 <= done < 2000
    assert not out.exists()  # a killed run never leaves a file that looks complete
    assert out.with_name(out.name + ".partial").exists()

    resumed = _tpc([*args, "--resume"], tmp_path, trained["uri"])
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err.decode()[-3000:]
    summary = json.loads(err.decode().strip().splitlines()[-1])
    assert summary["rows"] == 2000 and summary["resumed_rows"] >= done
    assert out.read_bytes() == reference.read_bytes()
    assert not out.with_name(out.name + ".partial").exists()
    assert not out.with_name(out.name + ".progress.json").exists()


def test_resume_truncates_bytes_written_after_the_last_commit(big_input, tmp_path):
    """A kill between writing a chunk and committing it leaves extra bytes; resume cuts them."""
    small = write_jsonl(tmp_path / "in.jsonl", [json.loads(line) for _, line in zip(range(120), big_input.open())])
    reference = tmp_path / "ref.jsonl"
    score(small, reference, MODEL, chunk_size=50)
    _identity_of(small, tmp_path)  # an interrupted run: chunk 1 committed
    partial = tmp_path / "capture.jsonl.partial"
    with partial.open("ab") as fh:
        fh.write(b'{"id": "art-00050", "title": "half a chunk, never comm')
    summary = score(small, tmp_path / "capture.jsonl", MODEL, chunk_size=50, resume=True)
    assert summary["resumed_rows"] == 50 and summary["rows"] == 120
    assert (tmp_path / "capture.jsonl").read_bytes() == reference.read_bytes()


def _identity_of(src: Path, tmp_path: Path) -> dict:
    """The identity a real run records, captured by interrupting one after its first commit."""
    from training.scoring.sink import Output

    captured = {}
    original = Output.write

    def stop_after_first(self, *a, **k):
        original(self, *a, **k)
        captured.update(json.loads(self.sidecar.read_text())["identity"])
        raise KeyboardInterrupt

    Output.write = stop_after_first
    try:
        with pytest.raises(Interrupted, match="interrupted after 50 rows: rerun the same command with --resume"):
            score(src, tmp_path / "capture.jsonl", MODEL, chunk_size=50)
    finally:
        Output.write = original
    return captured


def test_resume_refuses_a_changed_input_or_options(big_input, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [json.loads(line) for _, line in zip(range(60), big_input.open())])
    _identity_of(src, tmp_path)  # leaves capture.jsonl.partial + progress from an interrupted run
    capture = tmp_path / "capture.jsonl"
    with pytest.raises(InputError, match="chunk_size"):
        score(src, capture, MODEL, chunk_size=20, resume=True)
    with src.open("a", encoding="utf-8") as fh:
        fh.write(json.dumps({"id": "extra", "text": "Ankara et Kiev signent un accord."}) + "\n")
    with pytest.raises(InputError, match="differs in input"):
        score(src, capture, MODEL, chunk_size=50, resume=True)
    assert (tmp_path / "capture.jsonl.partial").exists()  # refused, nothing discarded


def test_resume_without_an_interrupted_run_starts_fresh(big_input, tmp_path):
    src = write_jsonl(tmp_path / "in.jsonl", [json.loads(line) for _, line in zip(range(30), big_input.open())])
    summary = score(src, tmp_path / "out.jsonl", MODEL, resume=True)
    assert summary["rows"] == 30 and summary["resumed_rows"] == 0


@pytest.mark.slow
def test_ctrl_c_stops_the_workers_says_how_to_resume_and_exits_130(big_input, trained, tmp_path):
    """SIGINT to the whole process group, as a terminal's Ctrl-C: no traceback, the workers stop, exit code 130,
    and the advised command finishes the output exactly."""
    import psutil

    reference = big_input.with_name("reference.jsonl")
    if not reference.exists():
        assert score(big_input, reference, MODEL, chunk_size=100, workers=1)["rows"] == 2000
    out = tmp_path / "out.jsonl"
    args = [str(big_input), "-o", str(out), "--chunk-size", "100", "--workers", "2"]
    proc = _tpc(args, tmp_path, trained["uri"])
    sidecar = out.with_name(out.name + ".progress.json")
    deadline = time.monotonic() + 240
    while time.monotonic() < deadline:
        assert proc.poll() is None, proc.communicate()[1].decode()[-3000:]
        try:
            if json.loads(sidecar.read_text())["state"]["rows"] >= 300:
                break
        except (OSError, ValueError, KeyError):
            pass
        time.sleep(0.05)
    workers = psutil.Process(proc.pid).children(recursive=True)
    assert len(workers) >= 2
    os.killpg(proc.pid, signal.SIGINT)
    _, err = proc.communicate(timeout=60)
    err = err.decode()
    assert proc.returncode == 130, err[-3000:]
    assert "Traceback" not in err and "KeyboardInterrupt" not in err, err[-3000:]
    rows = json.loads(sidecar.read_text())["state"]["rows"]
    assert err.strip().splitlines()[-1] == f"tpc: interrupted after {rows} rows: rerun the same command with --resume"
    psutil.wait_procs(workers, timeout=10)
    assert not [w for w in workers if w.is_running() and w.status() != psutil.STATUS_ZOMBIE]

    resumed = _tpc([*args, "--resume"], tmp_path, trained["uri"])
    _, err = resumed.communicate(timeout=600)
    assert resumed.returncode == 0, err.decode()[-3000:]
    assert json.loads(err.decode().strip().splitlines()[-1])["resumed_rows"] == rows
    assert out.read_bytes() == reference.read_bytes()
