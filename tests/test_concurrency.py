"""Concurrent experiments against one store: real `tpc` processes started together (3 trainings on one fresh SQLite
store; 2 against `mlflow server`; a `tpc promote` racing a `tpc train`; a parallel sweep losing a worker), and the
pieces they rely on in-process (retries on a locked store, the promotion locks, the compare-and-set, what a run
that registered a version does when a later step fails).

Every process test checks the same things: exit codes, one version per run, every run FINISHED with the same
metrics, and the gate serialized: exactly one version saw "no current @champion", every promotion was compared
with the champion the previous promotion left (no two promotions against one champion), and @champion ends on
the version with the best gate metric, with the gate's reason on it."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import shlex
import signal
import sqlite3
import subprocess
import sys
import time
from pathlib import Path

import mlflow
import pytest
from mlflow import MlflowClient
from mlflow.exceptions import MlflowException

from test_server import server  # noqa: F401  (a fixture: `mlflow server` on a loopback port, as in test_server.py)
from training import concurrency, registry, registry_locks
from training.cli import main as tpc

REPO = Path(__file__).resolve().parents[1]
NAME = "turkey-policy"
METRIC = "frozen_topic_macro_f1"
# A small training set (40 passages of each written file) and the labelled challenge sets as the gate's frozen
# evaluation set: the whole path (folds, roll-up, report, model, registry, gate) in seconds per run.
TINY = ["splits.n_folds=2", "article.composite_articles=20", "data.real=null", "data.seeds_gold=null",
        "model.char_ngrams=null", "data.train=[tiny/*.jsonl]", "promotion.eval_data=data/challenge/*.jsonl",
        f"promotion.metric={METRIC}"]


@pytest.fixture(autouse=True, scope="module")
def _keep_the_active_experiment():
    """`tpc` in this process sets MLflow's active experiment (a global, and MLFLOW_EXPERIMENT_ID) to one of the
    temporary stores made here: put it back, so later test modules do not start runs in an experiment id their own
    store does not have."""
    import mlflow.tracking.fluent as fluent

    before = (fluent._active_experiment_id, os.environ.get("MLFLOW_EXPERIMENT_ID"))
    yield
    fluent._active_experiment_id = before[0]
    if before[1] is None:
        os.environ.pop("MLFLOW_EXPERIMENT_ID", None)
    else:
        os.environ["MLFLOW_EXPERIMENT_ID"] = before[1]


def sets(items) -> list[str]:
    return [a for item in items for a in ("--set", item)]


def make_project(directory: Path) -> Path:
    import shutil

    shutil.copytree(REPO / "configs", directory / "configs")
    shutil.copytree(REPO / "data" / "challenge", directory / "data" / "challenge")
    (directory / "tiny").mkdir()
    lines = []
    for f in sorted((REPO / "data" / "written").glob("*.jsonl")):
        lines += f.read_text(encoding="utf-8").splitlines()[:40]
    (directory / "tiny" / "train.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")
    return directory


def start(args: list[str], cwd: Path, uri: str | None = None) -> subprocess.Popen:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    env.pop("MLFLOW_TRACKING_URI", None)
    if uri:
        env["MLFLOW_TRACKING_URI"] = uri
    return subprocess.Popen([sys.executable, "-m", "training.cli", *args], cwd=cwd, env=env, text=True,
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE)


def finish(procs: list[subprocess.Popen], timeout: float = 400) -> list[tuple[int, str, str]]:
    out = []
    for p in procs:
        try:
            stdout, stderr = p.communicate(timeout=timeout)
        except subprocess.TimeoutExpired:
            p.kill()
            stdout, stderr = p.communicate()
        out.append((p.returncode, stdout, stderr))
    return out


def train_result(stdout: str) -> dict:
    return json.loads(stdout.strip().splitlines()[-1])


def register_again(client: MlflowClient, result: dict) -> str:
    """Another version of `turkey-policy` holding the model a training run logged."""
    uri = result["model_uri"]
    return str(client.create_model_version(NAME, uri, run_id=result["run_id"],
                                           model_id=uri[len("models:/"):]).version)


def assert_gate_serialized(client: MlflowClient, name: str = NAME, metric: str = METRIC) -> dict:
    """The gate's record on every version of `name` is what a one-at-a-time gate leaves; returns {version: tags}."""
    versions = {str(v.version): client.get_model_version(name, str(v.version))
                for v in client.search_model_versions(f"name='{name}'")}
    tags = {v: mv.tags for v, mv in versions.items()}
    for v, t in tags.items():
        assert t.get("promotion.decision") in ("promoted", "refused"), (v, t)
        assert t["promotion.reason"] and versions[v].description.startswith(f"Promotion gate: {t['promotion.reason']}")
    firsts = [v for v, t in tags.items() if t["promotion.reason"].startswith("no current @champion")]
    assert len(firsts) == 1, f"more than one version saw no champion: {firsts}"
    promoted = [v for v, t in tags.items() if t["promotion.decision"] == "promoted" and v not in firsts]
    compared_with = [tags[v]["promotion.champion_version"] for v in promoted]
    assert len(set(compared_with)) == len(compared_with), f"two promotions against one champion: {tags}"
    # Follow the chain of promotions from the first: each one was compared with the previous one.
    chain, by_champion = [firsts[0]], {tags[v]["promotion.champion_version"]: v for v in promoted}
    while chain[-1] in by_champion:
        chain.append(by_champion[chain[-1]])
    assert sorted(chain) == sorted(firsts + promoted), tags
    champion = str(client.get_model_version_by_alias(name, "champion").version)
    assert champion == chain[-1]
    scores = {v: float(t[f"promotion.{metric}"]) for v, t in tags.items()}
    assert scores[champion] == max(scores.values()), scores
    for v, t in tags.items():  # refused: worse than the champion it was compared with, which was on the chain
        if t["promotion.decision"] == "refused":
            assert t["promotion.champion_version"] in chain
            assert scores[v] < float(t[f"promotion.champion_{metric}"])
    return tags


def assert_runs_complete(client: MlflowClient, run_ids: list[str]) -> None:
    runs = [client.get_run(r) for r in run_ids]
    assert [r.info.status for r in runs] == ["FINISHED"] * len(runs)
    keys = [set(r.data.metrics) for r in runs]
    assert all(k == keys[0] for k in keys) and {"cv_topic_macro_f1", "total_seconds"} <= keys[0]  # no metric lost
    assert len({len(r.data.params) for r in runs}) == 1


# -- real processes --------------------------------------------------------------------------------------------

@pytest.mark.slow
def test_three_trainings_at_once_on_one_fresh_sqlite_store(tmp_path):
    project = make_project(tmp_path)
    procs = [start(["train", "configs/default.yaml", *sets(TINY + [f"model.C={c}"])], project)
             for c in (0.05, 1, 20)]
    results = finish(procs)
    for code, stdout, stderr in results:
        assert code == 0, stderr[-3000:]
        assert "Traceback" not in stderr
    out = [train_result(stdout) for _, stdout, _ in results]
    uri = f"sqlite:///{project / 'mlflow.db'}"
    client = MlflowClient(uri, uri)
    assert sorted(r["registered_version"] for r in out) == [1, 2, 3]
    assert_runs_complete(client, [r["run_id"] for r in out])
    assert len(client.search_runs([client.get_experiment_by_name(NAME).experiment_id])) == 3
    tags = assert_gate_serialized(client)
    champion = client.get_model_version_by_alias(NAME, "champion")
    for r in out:  # what each run printed is what the registry holds
        assert r["promoted"] == (tags[str(r["registered_version"])]["promotion.decision"] == "promoted")
    # The exported directory holds the final champion, whichever run exported last.
    mlmodel = (project / "models" / "turkey-policy" / "MLmodel").read_text()
    assert f"run_id: {champion.run_id}" in mlmodel
    assert (project / "mlflow.db.lock").exists()  # the store was created under the lock beside it
    with sqlite3.connect(project / "mlflow.db") as con:
        assert con.execute("PRAGMA journal_mode").fetchone()[0] == "wal"


@pytest.mark.slow
def test_two_trainings_at_once_against_a_tracking_server(server, tmp_path):
    project = make_project(tmp_path / "project")
    procs = [start(["train", "configs/default.yaml", *sets(TINY + [f"model.C={c}", "register.export_dir=null"])],
                   project, server) for c in (0.05, 20)]
    results = finish(procs)
    for code, _, stderr in results:
        assert code == 0, stderr[-3000:]
    out = [train_result(stdout) for _, stdout, _ in results]
    client = MlflowClient(server, server)
    assert sorted(r["registered_version"] for r in out) == [1, 2]
    assert_runs_complete(client, [r["run_id"] for r in out])
    assert_gate_serialized(client)
    # The registry lock was taken and released: no lock model is left behind.
    assert [m.name for m in client.search_registered_models()] == [NAME]
    assert not (project / "mlruns").exists()  # everything went through the server


@pytest.mark.slow
def test_promote_racing_a_training(tmp_path):
    project = make_project(tmp_path)
    uri = f"sqlite:///{project / 'mlflow.db'}"
    mlflow.set_tracking_uri(uri)  # the registry finds logged models through the tracking URI (restored by conftest)
    client = MlflowClient(uri, uri)
    first = finish([start(["train", "configs/default.yaml", *sets(TINY + ["model.C=0.05"])], project)])[0]
    assert first[0] == 0, first[2][-3000:]
    v1 = train_result(first[1])
    # v2: the same model registered again (ties with v1); gated by hand while a training gates v3.
    v2 = register_again(client, v1)
    train = start(["train", "configs/default.yaml", *sets(TINY + ["model.C=20"])], project)
    deadline = time.monotonic() + 300
    while len(client.search_model_versions(f"name='{NAME}'")) < 3:  # v3 registered: its gate starts now
        assert train.poll() is None, train.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "the training did not register a version"
        time.sleep(0.1)
    promote = start(["promote", "--candidate", f"models:/{NAME}/{v2}", "--config", "configs/default.yaml",
                     *sets(TINY)], project)
    (t_code, t_out, t_err), (p_code, p_out, p_err) = finish([train, promote])
    assert t_code == 0, t_err[-3000:]
    tags = assert_gate_serialized(client)
    assert p_code == (0 if tags[str(v2)]["promotion.decision"] == "promoted" else 3), p_err[-3000:]
    assert p_out.startswith("PROMOTED: " if p_code == 0 else "REFUSED: ")
    assert p_out.splitlines()[0].split(": ", 1)[1] == tags[str(v2)]["promotion.reason"]  # then the export line
    v3 = train_result(t_out)
    assert v3["registered_version"] == 3 and v3["promotion_reason"] == tags["3"]["promotion.reason"]
    assert_runs_complete(client, [v1["run_id"], v3["run_id"]])


@pytest.mark.slow
def test_parallel_sweep_survives_a_killed_trial(tmp_path):
    import optuna

    project = make_project(tmp_path)
    uri = f"sqlite:///{project / 'mlflow.db'}"
    space = 'search.space={"model.C": [0.5, 8, "log"], "model.min_df": [1, 3, "int"]}'
    sweep = start(["train", "configs/sweep.yaml", "--trials", "4", "--jobs", "2",
                   *sets(TINY + ["register.export_dir=null", space])], project)
    # This process reads the store while the sweep creates it: it takes the store's lock as tpc does, or its own
    # MlflowClient would build the schema at the same moment and one of the two migrations would fail.
    concurrency.prepare_sqlite_store(uri, None)
    client, victim = MlflowClient(uri, uri), None
    deadline = time.monotonic() + 300
    while victim is None:  # kill the worker process of the first trial seen running
        assert sweep.poll() is None, sweep.communicate()[1][-3000:]
        assert time.monotonic() < deadline, "no trial started"
        time.sleep(0.1)
        try:
            running = client.search_runs(client.get_experiment_by_name(NAME).experiment_id,
                                         "tags.`search.role` = 'trial' and attributes.status = 'RUNNING'")
        except (MlflowException, AttributeError):  # the store or the experiment is not there yet
            continue
        for r in running:
            if "search.worker" in r.data.tags:
                victim = r
                os.kill(int(r.data.tags["search.worker"].rsplit(":", 1)[1]), signal.SIGKILL)
                break
    code, stdout, stderr = finish([sweep])[0]
    assert code == 0, stderr[-3000:]
    result = train_result(stdout)
    killed = int(victim.data.tags["search.trial"])
    assert result["trials_failed"] == [killed] and result["trials_complete"] == 3 and result["jobs"] == 2
    study = optuna.load_study(study_name=result["study"], storage=result["storage"])
    states = {t.number: t.state.name for t in study.trials}
    assert len(states) == 4 and states.pop(killed) == "FAIL" and set(states.values()) == {"COMPLETE"}
    assert "killed by SIGKILL" in study.trials[killed].user_attrs["error"]
    trials = client.search_runs([victim.info.experiment_id], "tags.`search.role` = 'trial'")
    assert len(trials) == 4 and {t.data.tags["mlflow.parentRunId"] for t in trials} == {result["parent_run_id"]}
    assert {t.info.run_id: t.info.status for t in trials}[victim.info.run_id] == "FAILED"
    assert sorted(t.info.status for t in trials) == ["FAILED"] + ["FINISHED"] * 3
    assert len({t.data.tags["search.worker"] for t in trials}) >= 2  # two worker processes ran trials
    assert client.get_run(result["run_id"]).info.status == "FINISHED" and result["registered_version"] == 1


# -- in-process: retries, locks, the compare-and-set, a failure after registration ---------------------------

@pytest.fixture(scope="module")
def tiny_store(tmp_path_factory):
    """One tiny training in a fresh store (registered, not gated): `turkey-policy` v1."""
    from conftest import own_store

    from training.config import load_config
    from training.train import run

    project = make_project(tmp_path_factory.mktemp("tiny"))
    with own_store(project) as uri:
        result = run(load_config("configs/default.yaml", TINY + ["register.promote=false", "register.export_dir=null"]))
    yield {"dir": project, "uri": uri, "result": result}


@pytest.fixture
def in_store(tiny_store, monkeypatch):
    monkeypatch.setenv("MLFLOW_TRACKING_URI", tiny_store["uri"])
    monkeypatch.chdir(tiny_store["dir"])
    mlflow.set_tracking_uri(tiny_store["uri"])
    mlflow.set_registry_uri(tiny_store["uri"])
    return tiny_store


def _fail_writes(engine, statement_prefix: str, times: int, error: BaseException):
    """Make the next `times` statements starting with `statement_prefix` fail as SQLite would."""
    import sqlalchemy

    left = {"n": times}

    def before(conn, cursor, statement, parameters, context, executemany):
        if statement.lstrip().upper().startswith(statement_prefix) and left["n"] > 0:
            left["n"] -= 1
            raise error

    sqlalchemy.event.listen(engine, "before_cursor_execute", before)
    return lambda: sqlalchemy.event.remove(engine, "before_cursor_execute", before)


def _schema_built_by_another_program(monkeypatch, uri: str, finishes: bool):
    """The first migration this process runs loses to another program's: that program builds the schema (or dies
    mid-way, leaving alembic's scratch copy of a table), then ours fails as alembic does when the revision moved."""
    import alembic.util
    import sqlalchemy
    from mlflow.store.db import utils as db_utils

    real, calls = db_utils._upgrade_db, []

    def upgrade(engine):
        calls.append(engine.url)
        if len(calls) == 1:
            if finishes:
                real(sqlalchemy.create_engine(uri))
            with contextlib.closing(sqlite3.connect(concurrency.sqlite_path(uri))) as con:
                con.execute("CREATE TABLE _alembic_tmp_metrics (key TEXT)")
                con.commit()
            raise alembic.util.CommandError("Online migration expected to match one row when updating 'a' to 'b' "
                                            "in 'alembic_version'; 0 found")
        return real(engine)

    monkeypatch.setattr(db_utils, "_upgrade_db", upgrade)
    monkeypatch.setattr(concurrency, "SCHEMA_QUIET_S", 0.3)
    return calls


@pytest.mark.parametrize("finishes", [True, False], ids=["it-finishes", "it-dies-midway"])
def test_a_store_built_at_once_by_another_program_is_opened(tmp_path, monkeypatch, caplog, finishes):
    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    calls = _schema_built_by_another_program(monkeypatch, uri, finishes)
    with caplog.at_level(logging.WARNING, "training.concurrency"):
        concurrency.prepare_sqlite_store(uri, "exp", settle_s=30)
    client = MlflowClient(uri, uri)
    assert client.get_experiment_by_name("exp") is not None
    client.create_registered_model("after-the-race")  # the registry's tables are there too
    with contextlib.closing(sqlite3.connect(tmp_path / "mlflow.db")) as con:
        tables = {row[0] for row in con.execute("SELECT name FROM sqlite_master WHERE type = 'table'")}
    assert not [t for t in tables if t.startswith("_alembic_tmp_")]
    messages = " ".join(r.getMessage() for r in caplog.records)
    assert "building its schema failed (CommandError: Online migration expected" in messages
    assert "dropped _alembic_tmp_metrics, left by a migration that did not finish" in messages
    assert len(calls) == (1 if finishes else 2)  # a finished schema is used as it is; a half-built one, migrated


def test_a_store_that_never_opens_raises_its_own_error(tmp_path, monkeypatch):
    import alembic.util
    from mlflow.store.db import utils as db_utils

    def upgrade(engine):
        raise alembic.util.CommandError("injected: this schema cannot be built")

    monkeypatch.setattr(db_utils, "_upgrade_db", upgrade)
    monkeypatch.setattr(concurrency, "SCHEMA_QUIET_S", 0.1)
    with pytest.raises(alembic.util.CommandError, match="injected: this schema cannot be built"):
        concurrency.prepare_sqlite_store(f"sqlite:///{tmp_path / 'mlflow.db'}", "exp", settle_s=5)


def test_a_locked_store_is_retried_then_reported(in_store, monkeypatch, caplog):
    monkeypatch.setattr(concurrency, "LOCKED_BACKOFF_S", 0.01)
    client = MlflowClient()
    store = client._tracking_client.store
    assert type(store).__name__.startswith("Retrying")  # tpc built the store with retries
    run_id = in_store["result"]["run_id"]
    undo = _fail_writes(store.engine, "INSERT INTO TAGS", 2, sqlite3.OperationalError("database is locked"))
    try:
        with caplog.at_level(logging.WARNING, "training.concurrency"):
            client.set_tag(run_id, "written.through.a.lock", "yes")
    finally:
        undo()
    assert client.get_run(run_id).data.tags["written.through.a.lock"] == "yes"
    assert sum("failed (locked" in r.getMessage() for r in caplog.records) == 2
    # A lock that never goes away: bounded, then the real cause.
    undo = _fail_writes(store.engine, "INSERT INTO TAGS", 99, sqlite3.OperationalError("database is locked"))
    try:
        with pytest.raises(MlflowException) as exc:
            client.set_tag(run_id, "never.written", "no")
    finally:
        undo()
    assert concurrency.retry_kind(exc.value) == "locked"
    assert f"failed {concurrency.LOCKED_ATTEMPTS} times on 'locked'" in "".join(exc.value.__notes__)
    assert "stayed locked by other writers" in concurrency.describe(exc.value, in_store["uri"])
    assert "never.written" not in client.get_run(run_id).data.tags


def test_registry_lock_is_exclusive_released_and_broken_when_stale(in_store):
    client = MlflowClient()
    lock = f"{NAME}{registry.LOCK_SUFFIX}"
    with registry.registry_lock(client, NAME, "first holder"):
        assert client.get_registered_model(lock).tags["tpc.lock.holder"] == "first holder"
        with pytest.raises(registry.PromotionError, match=r"another promotion of turkey-policy holds the registry "
                                                          r"lock turkey-policy.promotion-lock \(first holder"):
            with registry.registry_lock(client, NAME, "second holder", wait_s=0.5):
                pass
    assert lock not in [m.name for m in client.search_registered_models()]
    # A lock whose holder died long ago is broken and taken.
    client.create_registered_model(lock, tags={"tpc.lock.token": "dead", "tpc.lock.holder": "a dead process",
                                               "tpc.lock.acquired_at": str(time.time() - 10_000)})
    with registry.registry_lock(client, NAME, "after the dead one", wait_s=5):
        assert client.get_registered_model(lock).tags["tpc.lock.holder"] == "after the dead one"
    assert lock not in [m.name for m in client.search_registered_models()]


def test_the_gate_compares_again_when_the_champion_moves_meanwhile(in_store, monkeypatch, caplog):
    """A writer that does not take the lock moves @champion while the gate scores the champion: the gate sees it
    on the re-read, compares the candidate with the new champion, and records that comparison."""
    client = MlflowClient()
    v_old, v_new, v_cand = (register_again(client, in_store["result"]) for _ in range(3))
    client.set_registered_model_alias(NAME, "champion", v_old)
    scored = []
    metrics = registry.EvalSet.metrics

    def scoring(self, model_uri):
        scored.append(model_uri)
        if model_uri == f"models:/{NAME}/{v_old}":  # meanwhile, someone else moves the alias
            MlflowClient().set_registered_model_alias(NAME, "champion", v_new)
        return metrics(self, model_uri)

    monkeypatch.setattr(registry.EvalSet, "metrics", scoring)
    with caplog.at_level(logging.WARNING, "training.registry"):
        d = registry.promote(f"models:/{NAME}/{v_cand}", NAME, METRIC, 0.0, "data/challenge/*.jsonl")
    assert scored == [f"models:/{NAME}/{v}" for v in (v_cand, v_old, v_new)]
    assert f"moved from v{v_old} to v{v_new}" in caplog.text
    assert d.promoted and f"champion v{v_new}" in d.reason  # the same model: a tie, not worse
    mv = client.get_model_version(NAME, v_cand)
    assert mv.tags["promotion.champion_version"] == v_new
    assert json.loads(mv.description.split("\n\n", 1)[1])["rounds"] == 2
    assert str(client.get_model_version_by_alias(NAME, "champion").version) == v_cand


def test_a_held_promotion_lock_fails_promote_with_the_holder_and_the_command(in_store, monkeypatch, capsys):
    client = MlflowClient()
    version = register_again(client, in_store["result"])
    monkeypatch.setattr(registry_locks, "LOCK_WAIT_S", 0.5)  # where promotion_lock reads it
    db = concurrency.sqlite_path(in_store["uri"])
    before = client.get_model_version(NAME, version).tags
    with concurrency.file_lock(concurrency.lock_path(db, f"promote-{NAME}"), 5, "this test"):
        code = tpc(["promote", "--candidate", f"models:/{NAME}/{version}", "--config", "configs/default.yaml",
                    *sets(TINY)])
    err = capsys.readouterr().err
    assert code == 4
    assert f"the promotion of {NAME}: the lock {db}.promote-{NAME}.lock is still held by another process (pid " \
           f"{os.getpid()}" in err
    command = err.split("Run it again with:\n", 1)[1].strip()
    assert client.get_model_version(NAME, version).tags == before  # nothing decided, nothing recorded
    assert tpc(shlex.split(command)[1:]) in (0, 3)  # the printed command finishes the job
    assert "promotion.decision" in client.get_model_version(NAME, version).tags


def test_a_failed_gate_after_registration_leaves_the_run_finished_and_says_how_to_finish(in_store, monkeypatch,
                                                                                      capsys):
    def locked(*args, **kwargs):
        raise MlflowException("(sqlite3.OperationalError) database is locked",
                              error_code="TEMPORARILY_UNAVAILABLE") from sqlite3.OperationalError("database is locked")

    promote = registry.promote
    monkeypatch.setattr(registry, "promote", locked)
    code = tpc(["train", "configs/default.yaml", *sets(TINY + ["register.export_dir=null"])])
    captured = capsys.readouterr()
    assert code == 4
    result = train_result(captured.out)
    version, run_id = result["registered_version"], result["run_id"]
    client = MlflowClient()
    assert client.get_run(run_id).info.status == "FINISHED"
    assert str(client.get_model_version_by_alias(NAME, "candidate").version) == str(version)
    assert f"version {version} of {NAME} is registered (run {run_id} FINISHED), but the promotion gate did not " \
           f"complete: the SQLite store {concurrency.sqlite_path(in_store['uri'])} stayed locked by other writers" \
           in captured.err
    assert "training finished but" not in captured.err and "failed_runs" not in captured.err
    command = captured.err.split("Finish it with:\n", 1)[1].strip().splitlines()[0]
    assert command.startswith(f"tpc promote --candidate models:/{NAME}/{version} --config configs/default.yaml ")
    monkeypatch.setattr(registry, "promote", promote)
    assert tpc(shlex.split(command)[1:]) in (0, 3)
    assert client.get_model_version(NAME, str(version)).tags["promotion.decision"] in ("promoted", "refused")


def test_an_old_store_is_backed_up_and_upgraded_before_any_run(tmp_path, monkeypatch):
    """A store written by an older MLflow (here: the current schema taken one migration back) is upgraded under the
    lock, with a consistent copy of the old file kept beside it."""
    import sqlalchemy
    from alembic import command
    from mlflow.store.db import utils as db_utils

    from training import tracking

    uri = f"sqlite:///{tmp_path / 'mlflow.db'}"
    monkeypatch.delenv("MLFLOW_TRACKING_URI", raising=False)  # it would win over `uri`
    tracking.setup(uri, "old")
    engine = sqlalchemy.create_engine(uri)
    head = db_utils._get_schema_version(engine)
    config = db_utils._get_alembic_config(uri)
    with engine.begin() as connection:
        config.attributes["connection"] = connection
        command.downgrade(config, "-1")
    old = db_utils._get_schema_version(engine)
    assert old != head
    tracking.setup(uri, "old")
    assert db_utils._get_schema_version(engine) == head
    engine.dispose()
    backup = tmp_path / f"mlflow.db.bak-{old}"
    with sqlite3.connect(backup) as con:
        assert con.execute("SELECT version_num FROM alembic_version").fetchone()[0] == old
        assert con.execute("SELECT name FROM experiments WHERE name = 'old'").fetchone()
