"""Promotion: compare a candidate with the champion on a frozen evaluation set; move the alias or refuse."""

from __future__ import annotations

import glob
import json
from dataclasses import dataclass

from training import TOPICS


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


def promote(candidate_uri: str, name: str, metric: str, margin: float, eval_data: str, alias: str = "champion",
            real_labels: str | None = "data/real/labels.jsonl", data_dir: str | None = None,
            export_dir: str | None = None) -> Decision:
    """Move `alias` to the candidate only if it is not worse than the current holder by more than `margin`.

    Both models are scored on the same frozen set here (not read from their runs), so a champion trained under
    other conditions is still compared on equal terms. The comparison goes into the version's description and
    tags whichever way it goes. When @champion moves (or stays on the candidate), the model is exported to
    `export_dir` (`register.export_dir`), so the exported folder always holds the champion."""
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
    cand = corpus.metrics(f"models:/{name}/{version}")
    if metric not in cand:
        raise KeyError(f"promotion.metric: {metric!r} is not measured; choose one of {sorted(cand)}")
    try:
        champ_version = str(client.get_model_version_by_alias(name, alias).version)
    except MlflowException:
        champ_version = None
    champ = None
    if champ_version is None:
        promoted, reason = True, f"no current @{alias}: version {version} becomes {alias}"
    elif str(champ_version) == str(version):
        promoted, reason, champ = True, f"version {version} already holds @{alias}", cand
    else:
        stage(f"gate: scoring champion v{champ_version} on {eval_data}")
        champ = corpus.metrics(f"models:/{name}/{champ_version}")
        delta = cand[metric] - champ[metric]
        promoted = delta >= -margin
        verdict = "not worse than" if promoted else "worse than"
        reason = (f"candidate v{version} {metric}={cand[metric]:.4f} is {verdict} champion v{champ_version} "
                  f"{metric}={champ[metric]:.4f} (delta {delta:+.4f}, allowed margin {margin})")
    summary = {"metric": metric, "eval_data": eval_data, "eval_digest": corpus.digest, "n": corpus.n,
               "margin": margin, "candidate_version": str(version), "candidate": cand.get(metric),
               "champion": None if champ is None else champ.get(metric), "champion_version": champ_version,
               "promoted": promoted, "reason": reason}
    client.update_model_version(name, version, description=f"Promotion gate: {reason}\n\n{json.dumps(summary, indent=1)}")
    client.set_model_version_tag(name, version, "promotion.decision", "promoted" if promoted else "refused")
    client.set_model_version_tag(name, version, "promotion.reason", reason[:5000])
    client.set_model_version_tag(name, version, "promotion.eval_digest", corpus.digest)
    client.set_model_version_tag(name, version, f"promotion.{metric}", f"{cand[metric]:.6f}")
    if champ is not None and champ_version is not None:
        client.set_model_version_tag(name, version, "promotion.champion_version", str(champ_version))
        client.set_model_version_tag(name, version, f"promotion.champion_{metric}", f"{champ[metric]:.6f}")
    exported = None
    if promoted:
        client.set_registered_model_alias(name, alias, version)
        if export_dir and alias == "champion":
            stage(f"exporting the champion (v{version}) to {export_dir}")
            export(f"models:/{name}/{version}", export_dir)
            exported = export_dir
    return Decision(promoted, reason, cand, champ, exported)


def register_and_promote(model_uri: str, cfg, run_id: str) -> dict:
    """Register a new version, tag it `candidate` (or `champion`), and with `register.promote` pass the gate."""
    import mlflow

    from training import tracking

    from training.progress import stage

    stage(f"registering a new version of {cfg.register.name}")
    version = tracking.register(model_uri, cfg.register.name, tags={"run_id": run_id, "family": cfg.model.family})
    tracking.set_alias(cfg.register.name, cfg.register.alias, version.version)
    out = {"registered_version": int(version.version), "alias": cfg.register.alias}
    if cfg.register.alias == "candidate" and cfg.register.promote:
        decision = promote(f"models:/{cfg.register.name}/{version.version}", cfg.register.name,
                           cfg.promotion.metric, cfg.promotion.margin, cfg.promotion.eval_data,
                           real_labels=cfg.data.real, data_dir=cfg.data.data_dir, export_dir=cfg.register.export_dir)
        out.update({"promoted": decision.promoted, "promotion_reason": decision.reason})
        if decision.exported_to:
            out["exported_to"] = decision.exported_to
        mlflow.set_tag("promotion", decision.reason)
    elif cfg.register.export_dir and cfg.register.alias == "champion":
        export(f"models:/{cfg.register.name}/{version.version}", cfg.register.export_dir)
        out["exported_to"] = cfg.register.export_dir
    return out


def export(model_uri: str, directory: str) -> None:
    """Copy a registered model to a plain MLflow model directory, for consumers without a registry."""
    import shutil
    from pathlib import Path

    import mlflow

    target = Path(directory)
    tmp = target.with_name(target.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    mlflow.artifacts.download_artifacts(artifact_uri=model_uri, dst_path=str(tmp))
    shutil.rmtree(target, ignore_errors=True)
    tmp.rename(target)
