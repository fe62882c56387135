"""Promotions of one registered model, one at a time: a file lock beside a local SQLite store, or a lock the
registry itself provides (a registered model `NAME.promotion-lock`) for a store shared over `mlflow server`."""

from __future__ import annotations

import contextlib
import logging
import random
import time

from training.concurrency import ConcurrencyError

log = logging.getLogger("training.registry")


class PromotionError(ConcurrencyError):
    """The gate could not finish (another promotion held the lock too long, the alias kept moving); @champion was
    not moved. The caller adds the command that finishes the job."""


LOCK_SUFFIX = ".promotion-lock"  # a registered model of this name exists while a promotion of NAME runs
LOCK_WAIT_S = 600.0  # how long a promotion waits for another one of the same model
LOCK_LEASE_S = 900.0  # a registry lock older than this was left by a dead process and is broken


def alias_version(client, name: str, alias: str) -> str | None:
    from mlflow.exceptions import MlflowException

    try:
        return str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException as exc:
        if exc.error_code in ("RESOURCE_DOES_NOT_EXIST", "INVALID_PARAMETER_VALUE", "NOT_FOUND"):
            return None
        raise


@contextlib.contextmanager
def registry_lock(client, name: str, holder: str, wait_s: float = LOCK_WAIT_S, lease_s: float = LOCK_LEASE_S):
    """A lock the store itself provides, for stores shared over `mlflow server`: the registered model
    `NAME.promotion-lock`, whose name is unique in every MLflow backend (SQLite, PostgreSQL, MySQL), so exactly one
    `create_registered_model` succeeds. Retried with backoff up to `wait_s`; deleted when the block ends. A lock older
    than `lease_s` (its holder died) is broken."""
    import uuid

    from mlflow.exceptions import MlflowException

    lock, token = f"{name}{LOCK_SUFFIX}", uuid.uuid4().hex
    deadline, delay = time.monotonic() + wait_s, 0.2
    while True:
        try:
            client.create_registered_model(
                lock, tags={"tpc.lock": "promotion", "tpc.lock.token": token, "tpc.lock.holder": holder,
                            "tpc.lock.acquired_at": f"{time.time():.3f}"},
                description=f"Held while `tpc promote` gates a version of {name}; deleted when it ends. Delete it "
                            f"by hand only if no promotion of {name} is running.")
            break
        except MlflowException as exc:
            if exc.error_code != "RESOURCE_ALREADY_EXISTS":
                raise
        try:
            held = client.get_registered_model(lock)
        except MlflowException:
            continue  # released meanwhile: try again at once
        acquired = float(held.tags.get("tpc.lock.acquired_at", "0") or 0)
        if time.time() - acquired > lease_s:
            log.warning("breaking the promotion lock %s held by %s since %.0f s (lease %.0f s)", lock,
                        held.tags.get("tpc.lock.holder"), time.time() - acquired, lease_s)
            _delete_lock(client, lock, held.tags.get("tpc.lock.token"))
            continue
        if time.monotonic() >= deadline:
            raise PromotionError(
                f"another promotion of {name} holds the registry lock {lock} ({held.tags.get('tpc.lock.holder')}, "
                f"{time.time() - acquired:.0f} s ago) after waiting {wait_s:.0f} s")
        time.sleep(delay * (0.5 + random.random()))
        delay = min(delay * 2, 5.0)
    try:
        yield lock
    finally:
        _delete_lock(client, lock, token)


def _delete_lock(client, lock: str, token: str | None) -> None:
    from mlflow.exceptions import MlflowException

    try:
        if client.get_registered_model(lock).tags.get("tpc.lock.token") == token:
            client.delete_registered_model(lock)
    except MlflowException as exc:
        if exc.error_code != "RESOURCE_DOES_NOT_EXIST":
            log.warning("could not release the promotion lock %s (%s); it expires after %.0f s", lock, exc,
                        LOCK_LEASE_S)


@contextlib.contextmanager
def promotion_lock(client, name: str, holder: str):
    """Serializes promotions of one registered model: a file lock beside a local SQLite store (dropped by the
    kernel if the process dies), the registry lock for any other store."""
    from mlflow import get_registry_uri

    from training import concurrency

    db = concurrency.sqlite_path(get_registry_uri())
    if db is None:
        with registry_lock(client, name, holder):
            yield
        return
    safe = "".join(c if c.isalnum() or c in "-_." else "_" for c in name)
    try:
        with concurrency.file_lock(concurrency.lock_path(db, f"promote-{safe}"), LOCK_WAIT_S,
                                   f"the promotion of {name}"):
            yield
    except concurrency.LockTimeout as exc:
        raise PromotionError(str(exc)) from None
