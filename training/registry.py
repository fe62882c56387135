"""Promotion: compare a candidate with the champion on a frozen evaluation set; move the alias or refuse."""

from __future__ import annotations

import contextlib
import glob
import json
import logging
import os
import socket
from dataclasses import dataclass

from training.registry_locks import (LOCK_SUFFIX, LOCK_WAIT_S, PromotionError, alias_version,  # noqa: F401
                                     promotion_lock, registry_lock)

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
        from training.modelref import labels_of, load

        model = load(model_uri, "model")
        labels = labels_of(model)
        if self.name.startswith("real:"):
            from training.real_eval import real_metrics

            return real_metrics(model.predict, self.data, f"real_{self.name[5:]}", labels)
        from training.evaluate import evaluate_model

        return evaluate_model(model, self.data, labels, prefix="frozen")


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


@dataclass
class _Gate:
    """One comparison: the candidate's metrics, and the scores of every champion compared with so far."""
    client: object
    corpus: EvalSet
    name: str
    version: str
    alias: str
    metric: str
    margin: float
    cand: dict
    scores: dict

    def compare(self, champ_version: str | None) -> tuple[bool, str, dict | None]:
        from training.progress import stage

        v, metric, cand = self.version, self.metric, self.cand
        if champ_version is None:
            return True, f"no current @{self.alias}: version {v} becomes {self.alias}", None
        if champ_version == str(v):
            return True, f"version {v} already holds @{self.alias}", cand
        if champ_version not in self.scores:
            stage(f"gate: scoring champion v{champ_version} on {self.corpus.name}")
            self.scores[champ_version] = self.corpus.metrics(f"models:/{self.name}/{champ_version}")
        champ = self.scores[champ_version]
        delta = cand[metric] - champ[metric]
        promoted = delta >= -self.margin
        verdict = "not worse than" if promoted else "worse than"
        return promoted, (f"candidate v{v} {metric}={cand[metric]:.4f} is {verdict} champion v{champ_version} "
                          f"{metric}={champ[metric]:.4f} (delta {delta:+.4f}, allowed margin {self.margin})"), champ

    def settle(self) -> tuple[bool, str, dict | None, str | None, int]:
        """Compare with the holder of the alias until it stays put during a comparison (a compare-and-set)."""
        for round_ in range(1, MAX_ROUNDS + 1):
            champ_version = alias_version(self.client, self.name, self.alias)
            promoted, reason, champ = self.compare(champ_version)
            now = alias_version(self.client, self.name, self.alias)  # still the version compared with?
            if now == champ_version:
                return promoted, reason, champ, champ_version, round_
            log.warning("@%s of %s moved from v%s to v%s during the comparison of v%s; comparing again", self.alias,
                        self.name, champ_version, now, self.version)
        raise PromotionError(f"@{self.alias} of {self.name} moved {MAX_ROUNDS} times while version {self.version} "
                             "was being compared (a writer that does not take the promotion lock is moving it); "
                             "nothing was changed")

    def record(self, promoted: bool, reason: str, champ: dict | None, champ_version: str | None, rounds: int):
        """The decision on the candidate (description and tags) whichever way it went, then the alias: a failure
        before the alias moves leaves it where it was."""
        metric, cand, corpus, v = self.metric, self.cand, self.corpus, self.version
        summary = {"metric": metric, "eval_data": corpus.name, "eval_digest": corpus.digest, "n": corpus.n,
                   "margin": self.margin, "candidate_version": str(v), "candidate": cand.get(metric),
                   "champion": None if champ is None else champ.get(metric), "champion_version": champ_version,
                   "promoted": promoted, "reason": reason, "rounds": rounds}
        self.client.update_model_version(self.name, v,
                                         description=f"Promotion gate: {reason}\n\n{json.dumps(summary, indent=1)}")
        tags = {"promotion.decision": "promoted" if promoted else "refused", "promotion.reason": reason[:5000],
                "promotion.eval_digest": corpus.digest, f"promotion.{metric}": f"{cand[metric]:.6f}"}
        if champ is not None and champ_version is not None:
            tags.update({"promotion.champion_version": str(champ_version),
                         f"promotion.champion_{metric}": f"{champ[metric]:.6f}"})
        for key, value in tags.items():
            self.client.set_model_version_tag(self.name, v, key, value)
        if promoted and champ_version != str(v):
            self.client.set_registered_model_alias(self.name, self.alias, v)


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

    from training.progress import stage

    client = MlflowClient()
    name, version = candidate_version(candidate_uri, name)
    try:
        client.get_model_version(name, version)
    except MlflowException:
        raise ValueError(f"--candidate {candidate_uri}: version {version} of {name} is not registered") from None
    corpus = eval_set(eval_data, real_labels, data_dir)
    stage(f"gate: scoring candidate {name} v{version} on {eval_data} ({corpus.n} items)")
    cand = corpus.metrics(f"models:/{name}/{version}")  # outside the lock: it does not depend on the champion
    if metric not in cand:
        raise KeyError(f"promotion.metric: {metric!r} is not measured; choose one of {sorted(cand)}")
    gate = _Gate(client, corpus, name, version, alias, metric, margin, cand, {})
    with promotion_lock(client, name, f"v{version} by pid {os.getpid()} on {socket.gethostname()}"):
        promoted, reason, champ, champ_version, rounds = gate.settle()
        gate.record(promoted, reason, champ, champ_version, rounds)
    exported = None
    if promoted and export_dir and alias == "champion":
        stage(f"exporting the champion to {export_dir}")
        export_champion(name, export_dir)
        exported = export_dir
    return Decision(promoted, reason, cand, champ, exported)


class _Pending(list):
    """Steps left undone after a version was registered: each with its cause and the command that finishes it."""

    def __init__(self, name: str, version: str):
        super().__init__()
        import mlflow

        self.name, self.version, self.uri = name, version, mlflow.get_tracking_uri()

    def add(self, step: str, exc: BaseException, command: str) -> None:
        from training import concurrency

        cause = concurrency.describe(exc, self.uri)
        log.error("version %s of %s is registered, but %s failed: %s", self.version, self.name, step, cause)
        self.append({"step": step, "cause": cause, "command": command})


def _gate_command(cfg, v: str, config_path) -> str:
    return promote_command(cfg.register.name, v, config_path, {
        "promotion.metric": cfg.promotion.metric, "promotion.margin": cfg.promotion.margin,
        "promotion.eval_data": cfg.promotion.eval_data, "data.real": cfg.data.real,
        **({"data.data_dir": cfg.data.data_dir} if cfg.data.data_dir else {}),
        **({"tracking_uri": cfg.tracking_uri} if cfg.tracking_uri else {})})


def _as_candidate(cfg, v: str, out: dict, pending: _Pending, config_path) -> None:
    """`candidate` points at the version (informational: the gate pins the version itself), then the gate."""
    import mlflow

    from training import concurrency, tracking

    name = cfg.register.name
    try:
        tracking.set_alias(name, "candidate", v)
    except Exception as exc:
        log.warning("could not point @candidate of %s at version %s (%s); the gate does not need it", name, v,
                    concurrency.describe(exc, pending.uri))
        out["alias"] = None
    if not cfg.register.promote:
        return
    try:
        decision = promote(f"models:/{name}/{v}", name, cfg.promotion.metric, cfg.promotion.margin,
                           cfg.promotion.eval_data, real_labels=cfg.data.real, data_dir=cfg.data.data_dir)
        out.update({"promoted": decision.promoted, "promotion_reason": decision.reason})
        with contextlib.suppress(Exception):
            mlflow.set_tag("promotion", decision.reason)
    except Exception as exc:
        pending.add("the promotion gate", exc, _gate_command(cfg, v, config_path))


def _as_champion(name: str, v: str, pending: _Pending) -> None:
    """register.alias=champion: set without comparing, still serialized with the gates of this model."""
    import mlflow

    try:
        client = mlflow.MlflowClient()
        with promotion_lock(client, name, f"v{v} (register.alias=champion)"):
            client.set_registered_model_alias(name, "champion", v)
            client.set_model_version_tag(name, v, "promotion.decision", "promoted")
            client.set_model_version_tag(name, v, "promotion.reason",
                                         "register.alias=champion: set by the training run without the gate")
    except Exception as exc:
        pending.add("setting @champion", exc, f"python -c \"from mlflow import MlflowClient; MlflowClient()."
                                              f"set_registered_model_alias('{name}', 'champion', '{v}')\"")


def register_and_promote(model_uri: str, cfg, run_id: str, config_path: str | None = None) -> dict:
    """Register a new version, give it `candidate` (or `champion`), and with `register.promote` pass the gate.

    Once the version is registered nothing here raises: a step that fails afterwards (the gate, the export) is
    reported in `pending` with its cause and the exact command that finishes it, and the run still ends FINISHED.
    Setting `candidate` (last writer wins between concurrent runs; the gate pins the version) never fails a run."""
    from training import tracking
    from training.progress import stage

    name, export_dir = cfg.register.name, cfg.register.export_dir
    stage(f"registering a new version of {name}")
    v = str(tracking.register(model_uri, name, tags={"run_id": run_id, "family": cfg.model.family}).version)
    out: dict = {"registered_version": int(v), "alias": cfg.register.alias}
    pending = _Pending(name, v)
    if cfg.register.alias == "candidate":
        _as_candidate(cfg, v, out, pending, config_path)
    else:
        _as_champion(name, v, pending)
    if export_dir and (cfg.register.alias == "champion" or out.get("promoted")):
        try:
            stage(f"exporting the champion to {export_dir}")
            out["exported_version"] = export_champion(name, export_dir)
            out["exported_to"] = export_dir
        except Exception as exc:
            pending.add("exporting the champion", exc, f"python -c \"from training.registry import export_champion; "
                                                       f"export_champion('{name}', '{export_dir}')\"")
    if pending:
        out["pending"] = list(pending)
    return out


def export_champion(name: str, directory: str) -> str:
    """Export whatever holds @champion now (under a lock beside the directory, so concurrent runs that each promoted
    leave the last champion there, whole); returns its version."""
    from pathlib import Path

    from mlflow import MlflowClient

    from training import concurrency

    target = Path(directory).resolve()
    with concurrency.file_lock(target.with_name(target.name + ".lock"), LOCK_WAIT_S, f"exporting {name} to {target}"):
        version = alias_version(MlflowClient(), name, "champion")
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
