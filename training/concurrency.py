"""Many `tpc` processes on one MLflow store: file locks beside a local SQLite store, the store created and migrated
once under such a lock, bounded retries of the store calls that concurrent writers make fail, and one sentence
naming the real cause of a failure.

What goes wrong without this (measured, benchmarks/README.md#concurrent-training-runs-on-one-store): MLflow
creates the SQLite schema in every process that opens a fresh store (`duplicate column name: step`), and several of
its writes check and then insert (`UNIQUE constraint failed` on dataset inputs and registry aliases), so concurrent
runs fail on each other; a writer that waits on SQLite's lock longer than MLflow's 20 s busy timeout gets
`database is locked`."""

from __future__ import annotations

import contextlib
import fcntl
import inspect
import logging
import os
import random
import socket
import sqlite3
import threading
import time
from pathlib import Path
from urllib.parse import unquote

from training.errors import TPCError

log = logging.getLogger("training.concurrency")

# A second attempt clears these: SQLite's write lock held past the busy timeout, or one of MLflow's
# check-then-insert writes losing to a concurrent writer of the same row (the retry finds the row and updates it).
LOCKED_ATTEMPTS, LOCKED_BACKOFF_S, LOCKED_MAX_SLEEP_S = 6, 1.0, 30.0
CONFLICT_ATTEMPTS = 4
# Opening a store whose schema another program was building at the same moment: tries, and how long its schema must
# stay unchanged before we take over (a whole migration of a new store takes about 3 s here, each step far less).
SCHEMA_ATTEMPTS, SCHEMA_QUIET_S = 3, 2.0


class ConcurrencyError(TPCError, RuntimeError):
    """Another writer kept us from finishing (a lock held too long, an alias that kept moving); the message says
    which and who."""


class LockTimeout(ConcurrencyError):
    """A lock (file or registry) stayed held by another process for longer than we wait."""


def available_cores() -> int:
    """The cores this process may run on (its CPU affinity where the OS has one), at least 1."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # macOS, Windows
        return max(1, os.cpu_count() or 1)


def sqlite_path(uri: str | None) -> Path | None:
    """The database file of a `sqlite:///` URI (None for anything else, and for an in-memory database)."""
    if not uri or not uri.startswith("sqlite:///"):
        return None
    path = unquote(uri[len("sqlite:///"):].split("?", 1)[0])
    if not path or path == ":memory:":
        return None
    return Path(path).resolve()


def _holder_text() -> str:
    return f"pid {os.getpid()} on {socket.gethostname()} since {time.strftime('%Y-%m-%d %H:%M:%S')}"


@contextlib.contextmanager
def file_lock(path: Path, timeout: float, what: str):
    """An exclusive lock on `path` (created if needed) for `what`; released when the block ends or the process
    dies (the kernel drops a dead process's flock). Waits up to `timeout` seconds, then raises LockTimeout naming
    the holder written in the file."""
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o644)
    try:
        deadline = time.monotonic() + timeout
        delay = 0.05
        while True:
            try:
                fcntl.flock(fd, fcntl.LOCK_EX | fcntl.LOCK_NB)
                break
            except BlockingIOError:
                if time.monotonic() >= deadline:
                    holder = Path(path).read_text(errors="replace").strip() or "unknown"
                    raise LockTimeout(f"{what}: the lock {path} is still held by another process ({holder}) after "
                                      f"{timeout:.0f} s") from None
                time.sleep(delay * (0.5 + random.random()))
                delay = min(delay * 2, 1.0)
        os.ftruncate(fd, 0)
        os.pwrite(fd, (_holder_text() + "\n").encode(), 0)
        try:
            yield path
        finally:
            with contextlib.suppress(OSError):
                os.ftruncate(fd, 0)
            fcntl.flock(fd, fcntl.LOCK_UN)
    finally:
        os.close(fd)


# -- what went wrong ---------------------------------------------------------------------------------------------

def _chain(exc: BaseException):
    seen = set()
    while exc is not None and id(exc) not in seen:
        seen.add(id(exc))
        yield exc
        exc = exc.__cause__ or exc.__context__


def retry_kind(exc: BaseException) -> str | None:
    """'locked' (SQLite's write lock), 'conflict' (a unique row written by a concurrent writer) or None."""
    if getattr(exc, "error_code", None) in ("RESOURCE_ALREADY_EXISTS", "RESOURCE_DOES_NOT_EXIST",
                                             "INVALID_PARAMETER_VALUE"):
        return None  # MLflow has already said what the unique row means (register_model relies on it)
    for e in _chain(exc):
        if isinstance(e, sqlite3.OperationalError) and ("locked" in str(e) or "busy" in str(e)):
            return "locked"
        if isinstance(e, sqlite3.IntegrityError) and "UNIQUE constraint failed" in str(e):
            return "conflict"
    text = str(exc)
    if "database is locked" in text:
        return "locked"
    if "UNIQUE constraint failed" in text or "duplicate key value violates unique constraint" in text:
        return "conflict"
    return None


def describe(exc: BaseException, uri: str | None = None) -> str:
    """One sentence naming the cause of a tracking failure: a lock, a conflict, the server down, or the error."""
    kind = retry_kind(exc)
    first = str(exc).strip().splitlines()[0][:300] if str(exc).strip() else type(exc).__name__
    if isinstance(exc, ConcurrencyError):
        return str(exc)
    if kind == "locked":
        where = sqlite_path(uri) or "the SQLite store"
        return (f"the SQLite store {where} stayed locked by other writers through {LOCKED_ATTEMPTS} attempts "
                f"({first}); fewer concurrent runs, or an `mlflow server` with a PostgreSQL backend "
                "(docs/experiments.md#6-concurrent-runs), avoid this")
    if kind == "conflict":
        return (f"a concurrent writer changed the same registry or run entry {CONFLICT_ATTEMPTS} times in a row "
                f"({first})")
    for e in _chain(exc):
        name = type(e).__name__
        if name in ("ConnectionError", "ConnectionRefusedError", "MaxRetryError", "NewConnectionError",
                    "RemoteDisconnected", "ReadTimeout", "ConnectTimeout") or "Max retries exceeded" in str(e):
            return f"the tracking server {uri or ''} stopped answering ({name}: {str(e).splitlines()[0][:200]})"
    return f"{type(exc).__name__}: {first}"


# -- retries around MLflow's SQLAlchemy stores -------------------------------------------------------------------

_depth = threading.local()


def _with_retries(fn):
    def wrapper(self, *args, **kwargs):
        # Only the outermost store call retries: a store method calling another one retries once, as a whole.
        if getattr(_depth, "n", 0):
            return fn(self, *args, **kwargs)
        attempt = 0
        while True:
            attempt += 1
            _depth.n = 1
            try:
                return fn(self, *args, **kwargs)
            except Exception as exc:
                kind = retry_kind(exc)
                limit = LOCKED_ATTEMPTS if kind == "locked" else CONFLICT_ATTEMPTS
                if kind is None or attempt >= limit:
                    if kind is not None:
                        exc.add_note(f"tpc: {fn.__name__} failed {attempt} times on '{kind}' and was not retried "
                                     "further")
                    raise
                base = LOCKED_BACKOFF_S if kind == "locked" else 0.1
                sleep = min(base * 2 ** (attempt - 1), LOCKED_MAX_SLEEP_S) * (0.5 + random.random())
                log.warning("MLflow store: %s failed (%s: %s); retry %d/%d in %.1f s", fn.__name__, kind,
                            str(exc).splitlines()[0][:160], attempt, limit - 1, sleep)
                time.sleep(sleep)
            finally:
                _depth.n = 0

    wrapper.__name__, wrapper.__qualname__, wrapper.__doc__ = fn.__name__, fn.__qualname__, fn.__doc__
    wrapper.__wrapped__ = fn
    return wrapper


_RETRYING: dict[type, type] = {}


def retrying_class(cls: type) -> type:
    """A subclass of an MLflow store class whose public methods retry 'locked' and 'conflict' failures. Safe to
    retry: a failed store call has rolled its whole transaction back."""
    if cls in _RETRYING or getattr(cls, "_tpc_retrying", False):
        return _RETRYING.get(cls, cls)
    namespace = {"_tpc_retrying": True}
    for name, member in inspect.getmembers(cls):
        raw = inspect.getattr_static(cls, name)
        if (name.startswith("_") or isinstance(raw, (staticmethod, classmethod, property))
                or not inspect.isfunction(member) or inspect.isgeneratorfunction(member)):
            continue
        namespace[name] = _with_retries(member)
    _RETRYING[cls] = type(f"Retrying{cls.__name__}", (cls,), namespace)
    return _RETRYING[cls]


def install_retries() -> bool:
    """Build every `sqlite:` tracking and registry store of this process as a retrying one. Uses MLflow's store
    registries (mlflow.tracking._*); False, and plain stores, if this MLflow has them elsewhere."""
    try:
        from mlflow.tracking._model_registry import utils as registry_utils
        from mlflow.tracking._tracking_service import utils as tracking_utils

        registries = [tracking_utils._tracking_store_registry, registry_utils._get_store_registry()]
    except (ImportError, AttributeError) as exc:  # pragma: no cover - another MLflow layout
        log.warning("cannot install retries around MLflow's SQLite store (%s); concurrent writers may fail", exc)
        return False
    for registry in registries:
        builder = registry._registry.get("sqlite")
        if builder is None or getattr(builder, "_tpc_retrying", False):
            continue

        def build(*args, _builder=builder, **kwargs):
            store = _builder(*args, **kwargs)
            store.__class__ = retrying_class(type(store))
            return store

        build._tpc_retrying = True
        build.__module__ = builder.__module__  # MLflow tells its own schemes from plugins by the module
        registry.register("sqlite", build)
        type(registry)._get_store_with_resolved_uri.cache_clear()  # stores built before are rebuilt retrying
    return True


# -- the local store, created once -------------------------------------------------------------------------------

def lock_path(db: Path, purpose: str = "") -> Path:
    """The lock file beside a SQLite database: `mlflow.db.lock`, `mlflow.db.promote-NAME.lock`, ..."""
    return db.with_name(f"{db.name}{'.' + purpose if purpose else ''}.lock")


def _migrate_if_needed(uri: str, db: Path) -> None:
    """An existing store written by an older MLflow is backed up beside itself, then upgraded."""
    import sqlalchemy
    from mlflow.store.db import utils as db_utils

    if not db.exists() or db.stat().st_size == 0:
        return
    engine = sqlalchemy.create_engine(uri)
    try:
        current, head = db_utils._get_schema_version(engine), db_utils._get_latest_schema_revision()
        if current is None or current == head:
            return  # new (the store's own initialisation builds it) or up to date
        backup = db.with_name(f"{db.name}.bak-{current}")
        with contextlib.closing(sqlite3.connect(db)) as src, contextlib.closing(sqlite3.connect(backup)) as dst:
            src.backup(dst)  # a consistent copy, whatever the journal holds
        log.warning("MLflow store %s has schema %s, this MLflow needs %s: upgrading (backup: %s)", db, current, head,
                    backup)
        db_utils._upgrade_db(engine)
    finally:
        engine.dispose()


def _open_store(uri: str, db: Path):
    from mlflow import MlflowClient

    _migrate_if_needed(uri, db)
    client = MlflowClient(uri, uri)
    client._tracking_client.store  # builds the schema when the file is new
    client._get_registry_client().store
    return client


def _wait_while_schema_moves(uri: str, quiet_s: float, within_s: float) -> None:
    """Return once the store's schema (its revision and tables) has not changed for `quiet_s`, or after `within_s`:
    another program building it has then finished or given up."""
    import sqlalchemy
    from mlflow.store.db import utils as db_utils

    engine = sqlalchemy.create_engine(uri)
    deadline, seen, since = time.monotonic() + within_s, None, time.monotonic()
    try:
        while time.monotonic() < deadline:
            try:
                tables = tuple(sorted(sqlalchemy.inspect(engine).get_table_names()))
                state = (db_utils._get_schema_version(engine), tables)
            except sqlalchemy.exc.OperationalError:  # the other program holds the write lock: still moving
                state = object()
            if state != seen:
                seen, since = state, time.monotonic()
            elif time.monotonic() - since >= quiet_s:
                return
            time.sleep(0.2)
    finally:
        engine.dispose()


def _drop_batch_scratch_tables(db: Path) -> None:
    """Alembic migrates a SQLite table by copying it into `_alembic_tmp_NAME`; a migration that died mid-copy leaves
    that table behind, and every later migration of NAME fails on it."""
    with contextlib.closing(sqlite3.connect(db, timeout=60)) as con:
        names = [row[0] for row in con.execute(
            "SELECT name FROM sqlite_master WHERE type = 'table' AND name GLOB '_alembic_tmp_*'")]
        for name in names:
            con.execute(f'DROP TABLE "{name}"')
        con.commit()
    if names:
        log.warning("MLflow store %s: dropped %s, left by a migration that did not finish", db, ", ".join(names))


def prepare_sqlite_store(uri: str, experiment: str | None, timeout: float = 300.0, settle_s: float = 60.0) -> None:
    """Create (or migrate) the store at `uri`, switch it to WAL journaling and create `experiment`, all under the
    file lock beside it, so that processes starting together never build the schema twice. A program that builds
    the schema without the lock at the same moment makes one of the two migrations fail: the store is then opened
    again once its schema has stopped changing (waiting at most `settle_s`)."""
    db = sqlite_path(uri)
    if db is None:
        return
    with file_lock(lock_path(db), timeout, f"creating the MLflow store {db}"):
        for attempt in range(1, SCHEMA_ATTEMPTS + 1):
            try:
                client = _open_store(uri, db)
                break
            except Exception as exc:
                # A program that does not take this lock (an `mlflow ui`, a script's MlflowClient) built or upgraded
                # the schema at the same moment and one of the two migrations lost: once it has finished or given
                # up, open (or finish migrating) what it left.
                if attempt == SCHEMA_ATTEMPTS:
                    raise
                log.warning("MLflow store %s: building its schema failed (%s: %s), perhaps against another program "
                            "building it at the same time; trying again once the schema stops changing", db,
                            type(exc).__name__, (str(exc).splitlines() or [""])[0][:200])
                _wait_while_schema_moves(uri, quiet_s=SCHEMA_QUIET_S, within_s=settle_s)
                _drop_batch_scratch_tables(db)
        try:
            with contextlib.closing(sqlite3.connect(db, timeout=60)) as con:
                # Readers no longer block the writer (and the writer no longer waits for readers): the setting that
                # lets several runs log at once. It is stored in the file; `-wal` and `-shm` files appear beside it.
                con.execute("PRAGMA journal_mode=WAL")
        except sqlite3.OperationalError as exc:  # another program holds the file open: keep its journal mode
            log.warning("MLflow store %s: could not switch to WAL journaling (%s)", db, exc)
        if experiment and client.get_experiment_by_name(experiment) is None:
            from mlflow.exceptions import MlflowException

            try:
                client.create_experiment(experiment)
            except MlflowException as exc:  # created meanwhile by a writer that does not take this lock
                if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                    raise
