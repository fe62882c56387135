"""Promotion: compare a candidate with the champion on a frozen evaluation set; move the alias or refuse."""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import random
import socket
import time
from dataclasses import dataclass

from training import TOPICS
from training.concurrency import ConcurrencyError

log = logging.getLogger("training.registry")


@dataclass
class Decision:
    promoted: bool
    reason: str
    candidate: dict
    champion: dict | None
    exported_to: str | None = None


def frozen_corpus(pattern: str):
    from training.data import load_files

    return load_files([pattern], key="promotion.eval_data") if glob.glob(pattern) else None


@dataclass
class EvalSet:
    """What the gate scores both models on: labelled passage files, or a split of the real articles."""
    name: str
    data: object  # a Corpus, or a list of RealArticle
    digest: str
    n: int

    def metrics(self, model_uri: str) -> dict:
        from training.modelref import load

        model = load(model_uri, "model")
        if self.name.startswith("real:"):
            from training.real_eval import real_metrics

            return real_metrics(model.predict, self.data, f"real_{self.name[5:]}", TOPICS)
        from training.evaluate import evaluate_model

        return evaluate_model(model, self.data, TOPICS, prefix="frozen")


def eval_set(eval_data: str, real_labels: str | None = None, data_dir: str | None = None) -> EvalSet:
    """`real:SPLIT` (articles of data.real) or a glob of labelled passage files."""
    if eval_data.startswith("real:"):
        import hashlib

        from training.real import SPLITS, load_real

        split = eval_data[5:]
        if split not in SPLITS or not real_labels:
            raise ValueError(f"promotion.eval_data: {eval_data!r} needs data.real and a split in {SPLITS}")
        arts = load_real(real_labels, data_dir, splits=(split,))
        h = hashlib.sha256(json.dumps([[a.id, sorted(a.labels.items())] for a in arts]).encode())
        return EvalSet(eval_data, arts, h.hexdigest()[:16], len(arts))
    corpus = frozen_corpus(eval_data)
    if corpus is None:
        raise FileNotFoundError(f"promotion.eval_data: no file matches {eval_data!r}")
    return EvalSet(eval_data, corpus, corpus.digest(), len(corpus))


def candidate_version(candidate_uri: str, default_name: str) -> tuple[str, str]:
    """(name, version) from models:/NAME/N or models:/NAME@ALIAS (an alias is pinned to its version now)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    if not candidate_uri.startswith("models:/"):
        raise ValueError(f"--candidate must be a registry URI such as models:/{default_name}/3; got {candidate_uri}")
    ref = candidate_uri[len("models:/"):].rstrip("/")
    if "@" in ref:
        name, alias = ref.split("@", 1)
        try:
            return name, str(MlflowClient().get_model_version_by_alias(name, alias).version)
        except MlflowException:
            raise ValueError(f"--candidate {candidate_uri}: no version of {name} holds @{alias}") from None
    name, _, version = ref.rpartition("/")
    if not name or not version.isdigit():
        raise ValueError(f"--candidate must name a version, e.g. models:/{default_name}/3; got {candidate_uri}")
    return name, version


class PromotionError(ConcurrencyError):
    """The gate could not finish (another promotion held the lock too long, the alias kept moving); @champion was
    not moved. The caller adds the command that finishes the job."""


LOCK_SUFFIX = ".promotion-lock"  # a registered model of this name exists while a promotion of NAME runs
LOCK_WAIT_S = 600.0  # how long a promotion waits for another one of the same model
LOCK_LEASE_S = 900.0  # a registry lock older than this was left by a dead process and is broken
MAX_ROUNDS = 5  # comparisons against a champion that moved meanwhile, before giving up


def promote_command(name: str, version, config: str | None = None, sets: dict | None = None) -> str:
    """The exact `tpc promote` command that gates `name` version `version` with the given settings."""
    import shlex

    parts = ["tpc", "promote", "--candidate", f"models:/{name}/{version}"]
    if config:
        parts += ["--config", str(config)]
    for key, value in (sets or {}).items():
        text = "null" if value is None else str(value)
        try:
            import yaml

            if yaml.safe_load(text) != value:
                text = json.dumps(value)
        except Exception:
            text = json.dumps(value)
        parts += ["--set", f"{key}={text}"]
    return " ".join(shlex.quote(p) for p in parts)


def _alias_version(client, name: str, alias: str) -> str | None:
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


def promote(candidate_uri: str, name: str, metric: str, margin: float, eval_data: str, alias: str = "champion",
            real_labels: str | None = "data/real/labels.jsonl", data_dir: str | None = None,
            export_dir: str | None = None) -> Decision:
    """Move `alias` to the candidate only if it is not worse than the current holder by more than `margin`.

    Both models are scored on the same frozen set here (not read from their runs), so a champion trained under
    other conditions is still compared on equal terms. The comparison goes into the version's description and
    tags whichever way it goes. When @champion moves (or stays on the candidate), the model is exported to
    `export_dir` (`register.export_dir`), so the exported folder always holds the champion.

    A compare-and-set, serialized per registered model: under the promotion lock, the holder of `alias` is read,
    compared, read again right before the alias moves, and the alias moves only if it is unchanged; otherwise the
    candidate is compared again with the new holder (up to MAX_ROUNDS times)."""
    from mlflow import MlflowClient
    from mlflow.exceptions import MlflowException

    client = MlflowClient()
    name, version = candidate_version(candidate_uri, name)
    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise ValueError(f"--candidate {candidate_uri}: version {version} of {name} is not registered") from None
    from training.progress import stage

    corpus = eval_set(eval_data, real_labels, data_dir)
    stage(f"gate: scoring candidate {name} v{version} on {eval_data} ({corpus.n} items)")
    cand = corpus.metrics(f"models:/{name}/{version}")  # outside the lock: it does not depend on the champion
    if metric not in cand:
        raise KeyError(f"promotion.metric: {metric!r} is not measured; choose one of {sorted(cand)}")
    scores: dict[str, dict] = {}
    holder = f"v{version} by pid {os.getpid()} on {socket.gethostname()}"
    with promotion_lock(client, name, holder):
        for round_ in range(1, MAX_ROUNDS + 1):
            champ_version = _alias_version(client, name, alias)
            champ = None
            if champ_version is None:
                promoted, reason = True, f"no current @{alias}: version {version} becomes {alias}"
            elif champ_version == str(version):
                promoted, reason, champ = True, f"version {version} already holds @{alias}", cand
            else:
                if champ_version not in scores:
                    stage(f"gate: scoring champion v{champ_version} on {eval_data}")
                    scores[champ_version] = corpus.metrics(f"models:/{name}/{champ_version}")
                champ = scores[champ_version]
                delta = cand[metric] - champ[metric]
                promoted = delta >= -margin
                verdict = "not worse than" if promoted else "worse than"
                reason = (f"candidate v{version} {metric}={cand[metric]:.4f} is {verdict} champion v{champ_version} "
                          f"{metric}={champ[metric]:.4f} (delta {delta:+.4f}, allowed margin {margin})")
            now = _alias_version(client, name, alias)  # compare-and-set: is it still the version compared with?
            if now == champ_version:
                break
            log.warning("@%s of %s moved from v%s to v%s during the comparison of v%s; comparing again", alias, name,
                        champ_version, now, version)
        else:
            raise PromotionError(f"@{alias} of {name} moved {MAX_ROUNDS} times while version {version} was being "
                                 "compared (a writer that does not take the promotion lock is moving it); nothing "
                                 "was changed")
        summary = {"metric": metric, "eval_data": eval_data, "eval_digest": corpus.digest, "n": corpus.n,
                   "margin": margin, "candidate_version": str(version), "candidate": cand.get(metric),
                   "champion": None if champ is None else champ.get(metric), "champion_version": champ_version,
                   "promoted": promoted, "reason": reason, "rounds": round_}
        client.update_model_version(name, version,
                                    description=f"Promotion gate: {reason}\n\n{json.dumps(summary, indent=1)}")
        tags = {"promotion.decision": "promoted" if promoted else "refused", "promotion.reason": reason[:5000],
                "promotion.eval_digest": corpus.digest, f"promotion.{metric}": f"{cand[metric]:.6f}"}
        if champ is not None and champ_version is not None:
            tags.update({"promotion.champion_version": str(champ_version),
                         f"promotion.champion_{metric}": f"{champ[metric]:.6f}"})
        for key, value in tags.items():
            client.set_model_version_tag(name, version, key, value)
        if promoted and champ_version != str(version):  # last: a failure before it leaves @alias where it was
            client.set_registered_model_alias(name, alias, version)
    exported = None
    if promoted and export_dir and alias == "champion":
        stage(f"exporting the champion to {export_dir}")
        export_champion(name, export_dir)
        exported = export_dir
    return Decision(promoted, reason, cand, champ, exported)


def register_and_promote(model_uri: str, cfg, run_id: str, config_path: str | None = None) -> dict:
    """Register a new version, give it `candidate` (or `champion`), and with `register.promote` pass the gate.

    Once the version is registered nothing here raises: a step that fails afterwards (the gate, the export) is
    reported in `pending` with its cause and the exact command that finishes it, and the run still ends FINISHED.
    Setting `candidate` (last writer wins between concurrent runs; the gate pins the version) never fails a run."""
    import mlflow

    from training import concurrency, tracking
    from training.progress import stage

    name = cfg.register.name
    stage(f"registering a new version of {name}")
    version = tracking.register(model_uri, name, tags={"run_id": run_id, "family": cfg.model.family})
    v = str(version.version)
    out: dict = {"registered_version": int(v), "alias": cfg.register.alias}
    pending: list[dict] = []
    uri = mlflow.get_tracking_uri()

    def later(step: str, exc: BaseException, command: str) -> None:
        cause = concurrency.describe(exc, uri)
        log.error("version %s of %s is registered, but %s failed: %s", v, name, step, cause)
        pending.append({"step": step, "cause": cause, "command": command})

    gate = promote_command(name, v, config_path, {
        "promotion.metric": cfg.promotion.metric, "promotion.margin": cfg.promotion.margin,
        "promotion.eval_data": cfg.promotion.eval_data, "data.real": cfg.data.real,
        **({"data.data_dir": cfg.data.data_dir} if cfg.data.data_dir else {}),
        **({"tracking_uri": cfg.tracking_uri} if cfg.tracking_uri else {})})
    if cfg.register.alias == "candidate":
        try:
            tracking.set_alias(name, "candidate", v)
        except Exception as exc:  # informational only: the gate below pins the version itself
            log.warning("could not point @candidate of %s at version %s (%s); the gate does not need it", name, v,
                        concurrency.describe(exc, uri))
            out["alias"] = None
        if cfg.register.promote:
            try:
                decision = promote(f"models:/{name}/{v}", name, cfg.promotion.metric, cfg.promotion.margin,
                                   cfg.promotion.eval_data, real_labels=cfg.data.real, data_dir=cfg.data.data_dir)
                out.update({"promoted": decision.promoted, "promotion_reason": decision.reason})
                with contextlib.suppress(Exception):
                    mlflow.set_tag("promotion", decision.reason)
            except Exception as exc:
                later("the promotion gate", exc, gate)
    else:  # register.alias=champion: set without comparing, still serialized with the gates of this model
        try:
            client = mlflow.MlflowClient()
            with promotion_lock(client, name, f"v{v} (register.alias=champion)"):
                client.set_registered_model_alias(name, "champion", v)
                client.set_model_version_tag(name, v, "promotion.decision", "promoted")
                client.set_model_version_tag(name, v, "promotion.reason",
                                             "register.alias=champion: set by the training run without the gate")
        except Exception as exc:
            later("setting @champion", exc, f"python -c \"from mlflow import MlflowClient; MlflowClient()."
                                            f"set_registered_model_alias('{name}', 'champion', '{v}')\"")
    if cfg.register.export_dir and (cfg.register.alias == "champion" or out.get("promoted")):
        try:
            stage(f"exporting the champion to {cfg.register.export_dir}")
            out["exported_version"] = export_champion(name, cfg.register.export_dir)
            out["exported_to"] = cfg.register.export_dir
        except Exception as exc:
            later("exporting the champion", exc, f"python -c \"from training.registry import export_champion; "
                                                 f"export_champion('{name}', '{cfg.register.export_dir}')\"")
    if pending:
        out["pending"] = pending
    return out


def export_champion(name: str, directory: str) -> str:
    """Export whatever holds @champion now (under a lock beside the directory, so concurrent runs that each promoted
    leave the last champion there, whole); returns its version."""
    from pathlib import Path

    from mlflow import MlflowClient

    from training import concurrency

    target = Path(directory).resolve()
    with concurrency.file_lock(target.with_name(target.name + ".lock"), LOCK_WAIT_S, f"exporting {name} to {target}"):
        version = _alias_version(MlflowClient(), name, "champion")
        if version is None:
            raise ValueError(f"{name} has no @champion to export")
        export(f"models:/{name}/{version}", str(target))
    return version


def export(model_uri: str, directory: str) -> None:
    """Copy a registered model to a plain MLflow model directory, for consumers without a registry."""
    import shutil
    import tempfile
    from pathlib import Path

    import mlflow

    target = Path(directory)
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{target.name}.", dir=target.parent))
    try:
        mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(tmp / "model"))
        shutil.rmtree(target, ignore_errors=True)
        (tmp / "model").rename(target)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
