"""`transformer`: a pretrained encoder (CamemBERT, XLM-R, any checkpoint `AutoModelForSequenceClassification`
loads) fine-tuned for topic (multi-label) and stance ((passage, topic) pairs, 3 classes).

A plain PyTorch loop rather than `transformers.Trainer`: the pipeline already owns the MLflow run, the folds and the
thresholds, so all that is needed is fit / predict_proba, per-epoch metrics logged into the active run, and the
weights saved as safetensors with their tokenizer. torch and transformers are imported only when a model is used,
so the rest of the project works without them (they live in the `transformers` extra).
"""

from __future__ import annotations

import json
import logging
import math
import time
import uuid
from pathlib import Path
from typing import Literal

import numpy as np
from pydantic import Field
from sklearn.metrics import f1_score

from training import STANCES, TOPICS
from training.models.base import Family, StanceClassifier, StrictConfig, TopicClassifier
from training.models.transformer_runtime import load_pretrained, log_epoch, quiet, requirements, resolve_device

log = logging.getLogger(__name__)

SPEC_FILE = "transformer.json"  # beside `model/` (weights + tokenizer); models.save writes meta.json there too
WEIGHTS_DIR = "model"

# The second segment of a stance input: the topic said in the language of the passages, so the encoder's
# pretrained knowledge of these words helps condition the passage on the topic.
TOPIC_PHRASES = {
    "mediation": "médiation diplomatique de la Turquie",
    "arms_trade": "ventes d'armes et industrie de défense turque",
    "sanctions": "sanctions et embargos",
    "deployment": "déploiement de troupes turques",
}

class _TransformerClassifier:
    """Fine-tuning and inference shared by both tasks, and the settings they share."""

    task = ""
    _fitted_attr = "model_"

    def __init__(self, labels=TOPICS, model_name_or_path="camembert-base", max_length=256, epochs=3.0,
                 batch_size=16, learning_rate=3e-5, warmup_ratio=0.1, weight_decay=0.01, device="auto",
                 validation_fraction=0.15, lexicon=None, random_state=13):
        self.labels = labels
        self.model_name_or_path = model_name_or_path
        self.max_length = max_length
        self.epochs = epochs
        self.batch_size = batch_size
        self.learning_rate = learning_rate
        self.warmup_ratio = warmup_ratio
        self.weight_decay = weight_decay
        self.device = device
        self.validation_fraction = validation_fraction
        self.lexicon = lexicon  # accepted for the family interface; the encoder reads the text itself
        self.random_state = random_state

    # -- what a subclass defines ----------------------------------------------------------------------------
    def _head_kwargs(self) -> dict:
        raise NotImplementedError

    def _segments(self, X) -> tuple[list[str], list[str] | None]:
        raise NotImplementedError

    def _targets(self, X, y) -> np.ndarray:
        raise NotImplementedError

    def _val_metrics(self, logits: np.ndarray, targets: np.ndarray) -> dict[str, float]:
        raise NotImplementedError

    # -- shared machinery -----------------------------------------------------------------------------------
    def _encode(self, first: list[str], second: list[str] | None) -> list[dict]:
        from datasets import Dataset

        columns = {"a": list(first)} if second is None else {"a": list(first), "b": list(second)}
        tokenizer = self.tokenizer_
        # Only the passage is ever cut: the topic segment is what the stance is asked about.
        options = {"truncation": True if second is None else "only_first",
                   "max_length": min(self.max_length, tokenizer.model_max_length)}

        def tokenize(batch):
            return tokenizer(batch["a"], batch["b"] if "b" in batch else None, **options)

        # A given fingerprint spares `datasets` from hashing the function and everything it references (the
        # largest cost of a tokenization in a profile); nothing is cached, the dataset lives in memory only.
        ds = Dataset.from_dict(columns).map(tokenize, batched=True, remove_columns=list(columns),
                                            new_fingerprint=uuid.uuid4().hex)
        return ds.to_list()

    def _collate(self, rows: list[dict], device):
        from transformers import DataCollatorWithPadding

        return DataCollatorWithPadding(self.tokenizer_, return_tensors="pt")(rows).to(device)

    def _split(self, keys: list[str], rng) -> tuple[np.ndarray, np.ndarray]:
        """(train, validation) row indices; rows with the same key (the same passage) stay on one side."""
        n = len(keys)
        n_val = int(round(n * self.validation_fraction))
        if n_val < 2 or n - n_val < 2:
            return np.arange(n), np.arange(0)
        uniq = list(dict.fromkeys(keys))
        rng.shuffle(uniq)
        val_keys, count = set(), 0
        counts: dict[str, int] = {}
        for k in keys:
            counts[k] = counts.get(k, 0) + 1
        for k in uniq:
            if count >= n_val:
                break
            val_keys.add(k)
            count += counts[k]
        is_val = np.array([k in val_keys for k in keys])
        return np.flatnonzero(~is_val), np.flatnonzero(is_val)

    def _forward_logits(self, rows: list[dict], device, batch_size: int) -> np.ndarray:
        import torch

        out = np.zeros((len(rows), self.model_.config.num_labels), dtype=np.float32)
        # Batches of similar length pad less; results go back to input order.
        order = np.argsort([len(r["input_ids"]) for r in rows], kind="stable")
        self.model_.eval()
        with torch.inference_mode():
            for start in range(0, len(rows), batch_size):
                idx = order[start:start + batch_size]
                batch = self._collate([rows[i] for i in idx], device)
                out[idx] = self.model_(**batch).logits.float().cpu().numpy()
        return out

    def _optimizer(self, total_steps: int):
        import torch
        from transformers import get_linear_schedule_with_warmup

        decay = [p for p in self.model_.parameters() if p.ndim >= 2]  # no decay on biases and norm weights
        no_decay = [p for p in self.model_.parameters() if p.ndim < 2]
        optimizer = torch.optim.AdamW([{"params": decay, "weight_decay": self.weight_decay},
                                       {"params": no_decay, "weight_decay": 0.0}], lr=self.learning_rate)
        return optimizer, get_linear_schedule_with_warmup(optimizer, int(self.warmup_ratio * total_steps),
                                                          total_steps)

    def fit(self, X, y):
        import torch
        from transformers import set_seed

        first, second = self._segments(X)
        if not first:
            raise ValueError(f"{type(self).__name__}.fit: no training rows")
        targets = self._targets(X, y)
        device = resolve_device(self.device, training=True)
        set_seed(self.random_state)
        with quiet():
            self.tokenizer_, self.model_ = load_pretrained(self.model_name_or_path, **self._head_kwargs())
            rows = self._encode(first, second)
        self.model_.to(device)
        rng = np.random.default_rng(self.random_state)
        train_idx, val_idx = self._split(first, rng)

        steps_per_epoch = math.ceil(len(train_idx) / self.batch_size)
        total_steps = max(1, math.ceil(self.epochs * steps_per_epoch))
        optimizer, scheduler = self._optimizer(total_steps)
        label_dtype = torch.float32 if targets.dtype.kind == "f" else torch.long

        self.history_, step = [], 0
        for epoch in range(1, math.ceil(total_steps / steps_per_epoch) + 1):
            t0 = time.perf_counter()
            losses, step = self._epoch(rows, targets, rng.permutation(train_idx), device, (optimizer, scheduler),
                                       step, total_steps, label_dtype)
            metrics = {"train_loss": float(np.mean(losses)), "seconds": time.perf_counter() - t0}
            if len(val_idx):
                logits = self._forward_logits([rows[i] for i in val_idx], device, self._predict_batch())
                metrics.update(self._val_metrics(logits, targets[val_idx]))
            self.history_.append({"epoch": epoch, **metrics})
            log.info("transformer %s epoch %d: %s", self.task, epoch, metrics)
            log_epoch(self.task, metrics)
        self.model_.eval()
        self.n_train_, self.n_val_ = int(len(train_idx)), int(len(val_idx))
        return self

    def _epoch(self, rows, targets, order, device, schedule, step: int, total_steps: int, label_dtype):
        """One pass over `order` in batches, stopping at `total_steps`; (the batch losses, the step reached)."""
        import torch

        optimizer, scheduler = schedule
        losses = []
        self.model_.train()
        for start in range(0, len(order), self.batch_size):
            if step >= total_steps:
                break
            idx = order[start:start + self.batch_size]
            batch = self._collate([rows[i] for i in idx], device)
            batch["labels"] = torch.as_tensor(targets[idx], dtype=label_dtype, device=device)
            loss = self.model_(**batch).loss
            loss.backward()
            torch.nn.utils.clip_grad_norm_(self.model_.parameters(), 1.0)
            optimizer.step()
            scheduler.step()
            optimizer.zero_grad()
            losses.append(float(loss.detach()))
            step += 1
        return losses, step

    def _predict_batch(self) -> int:
        return max(2 * self.batch_size, 32)  # no gradients kept at inference: larger batches fit

    def _logits(self, X) -> np.ndarray:
        first, second = self._segments(X)
        if not first:
            return np.zeros((0, self.model_.config.num_labels), dtype=np.float32)
        device = resolve_device(self.device, training=False)
        if self.model_.device != device:
            self.model_.to(device)
        with quiet():
            rows = self._encode(first, second)
        return self._forward_logits(rows, device, self._predict_batch())

    # -- persistence: safetensors weights + tokenizer + the estimator's params as JSON (no pickle) -------------
    def save_pretrained_dir(self, directory: str | Path) -> None:
        import torch
        import transformers

        directory = Path(directory)
        directory.mkdir(parents=True, exist_ok=True)
        with quiet():
            self.model_.save_pretrained(directory / WEIGHTS_DIR)
            self.tokenizer_.save_pretrained(directory / WEIGHTS_DIR)
        params = {k: str(v) if isinstance(v, Path) else v for k, v in self.get_params().items()}
        thresholds = getattr(self, "thresholds_", None)
        spec = {"class": type(self).__name__, "params": params, "history": self.history_,
                "n_train": self.n_train_, "n_val": self.n_val_,
                "thresholds": thresholds if thresholds is None else thresholds.tolist(),
                "versions": {"torch": torch.__version__, "transformers": transformers.__version__}}
        (directory / SPEC_FILE).write_text(json.dumps(spec, ensure_ascii=False, indent=1), encoding="utf-8")


class TransformerTopic(_TransformerClassifier, TopicClassifier):
    """Multi-label topic classifier: one sigmoid output per topic over the fine-tuned encoder."""

    task = "topic"


    def _head_kwargs(self) -> dict:
        labels = list(self.labels)
        return {"num_labels": len(labels), "problem_type": "multi_label_classification",
                "id2label": dict(enumerate(labels)), "label2id": {t: i for i, t in enumerate(labels)}}

    def _segments(self, X):
        return [str(t) for t in X], None

    def _targets(self, X, Y) -> np.ndarray:
        Y = np.asarray(Y, dtype=np.float32)
        if Y.ndim != 2 or Y.shape != (len(X), len(self.labels)):
            raise ValueError(f"TransformerTopic.fit: Y must have shape ({len(X)}, {len(self.labels)}) "
                             f"(rows x labels {list(self.labels)}), got {Y.shape}")
        return Y

    def _val_metrics(self, logits, targets):
        import torch

        loss = torch.nn.functional.binary_cross_entropy_with_logits(torch.from_numpy(logits),
                                                                    torch.from_numpy(targets))
        pred = (logits >= 0).astype(int)  # sigmoid >= 0.5; the pipeline tunes real thresholds out of fold
        return {"val_loss": float(loss),
                "val_macro_f1": float(f1_score(targets.astype(int), pred, average="macro", zero_division=0))}

    def _predict_proba(self, X) -> np.ndarray:
        return 1.0 / (1.0 + np.exp(-self._logits(X).astype(np.float64)))


class TransformerStance(_TransformerClassifier, StanceClassifier):
    """Turkey's stance toward a topic: the passage and the topic (as a French phrase) encoded as a text pair,
    3-way softmax in STANCES order."""

    task = "stance"

    def _head_kwargs(self) -> dict:
        return {"num_labels": len(STANCES), "problem_type": "single_label_classification",
                "id2label": dict(enumerate(STANCES)), "label2id": {s: i for i, s in enumerate(STANCES)}}

    def _segments(self, X):
        X = np.asarray(X, dtype=object).reshape(-1, 2)
        unknown = sorted({str(t) for t in X[:, 1]} - set(self.labels))
        if unknown:
            raise ValueError(f"TransformerStance: topic(s) {unknown} not in {list(self.labels)}")
        return [str(t) for t in X[:, 0]], [TOPIC_PHRASES.get(t, str(t).replace("_", " ")) for t in X[:, 1]]

    def _targets(self, X, y) -> np.ndarray:
        y = [str(v) for v in np.asarray(y, dtype=object).ravel()]
        bad = sorted(set(y) - set(STANCES))
        if bad:
            raise ValueError(f"TransformerStance.fit: stance label(s) {bad} not in {list(STANCES)}")
        if len(y) != len(np.asarray(X, dtype=object).reshape(-1, 2)):
            raise ValueError(f"TransformerStance.fit: {len(y)} labels for {len(X)} (passage, topic) rows")
        return np.array([STANCES.index(v) for v in y], dtype=np.int64)

    def _val_metrics(self, logits, targets):
        import torch

        loss = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(targets))
        pred = logits.argmax(1)
        return {"val_loss": float(loss), "val_accuracy": float((pred == targets).mean()),
                "val_macro_f1": float(f1_score(targets, pred, labels=range(len(STANCES)), average="macro",
                                               zero_division=0))}

    def _predict_proba(self, X) -> np.ndarray:
        z = self._logits(X).astype(np.float64)
        z -= z.max(1, keepdims=True) if len(z) else 0
        e = np.exp(z)
        return e / e.sum(1, keepdims=True)


CLASSES = {"TransformerTopic": TransformerTopic, "TransformerStance": TransformerStance}


def load_pretrained_dir(directory: str | Path):
    """The estimator saved by `save_pretrained_dir`: params from JSON, weights from safetensors, never the network."""
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    directory = Path(directory)
    spec_path = directory / SPEC_FILE
    if not spec_path.is_file():
        raise FileNotFoundError(f"{spec_path}: not a saved transformer model (no {SPEC_FILE})")
    spec = json.loads(spec_path.read_text(encoding="utf-8"))
    if spec.get("class") not in CLASSES:
        raise ValueError(f"{spec_path}: `class` must be one of {sorted(CLASSES)}, got {spec.get('class')!r}")
    params = dict(spec["params"])
    # Files saved before `labels=` and `random_state=` were the one names used `topics=` and `seed=`.
    for old, new in (("topics", "labels"), ("seed", "random_state")):
        if old in params:
            params.setdefault(new, params.pop(old))
    params["labels"] = tuple(params.get("labels", TOPICS))
    est = CLASSES[spec["class"]](**params)
    if spec.get("thresholds") is not None:
        est.set_thresholds(spec["thresholds"])
    weights = directory / WEIGHTS_DIR
    with quiet():
        est.tokenizer_ = AutoTokenizer.from_pretrained(weights, local_files_only=True)
        est.model_, info = AutoModelForSequenceClassification.from_pretrained(
            weights, local_files_only=True, use_safetensors=True, output_loading_info=True)
    # A saved model must restore every weight; a silently re-initialised layer would score at random.
    missing = list(info.get("missing_keys") or []) + list(info.get("mismatched_keys") or [])
    if missing:
        raise ValueError(f"{weights}: saved weights lack {missing[:5]}; the model directory is incomplete")
    expected = len(est.labels) if isinstance(est, TransformerTopic) else len(STANCES)
    if est.model_.config.num_labels != expected:
        raise ValueError(f"{weights}: head has {est.model_.config.num_labels} outputs, expected {expected}")
    est.model_.eval()
    est.history_ = spec.get("history", [])
    est.n_train_, est.n_val_ = spec.get("n_train", 0), spec.get("n_val", 0)
    return est


class TransformerConfig(StrictConfig):
    family: Literal["transformer"] = "transformer"
    model_name_or_path: str = "camembert-base"
    max_length: int = Field(256, gt=8)
    epochs: float = Field(3.0, gt=0)
    batch_size: int = Field(16, gt=0)
    learning_rate: float = Field(3e-5, gt=0)
    warmup_ratio: float = Field(0.1, ge=0, lt=1)
    weight_decay: float = Field(0.01, ge=0)
    device: Literal["auto", "cpu", "cuda"] = "auto"
    validation_fraction: float = Field(0.15, gt=0, lt=0.5)


# Nothing of this family goes through skops: weights are safetensors, the rest JSON.
FAMILY = Family("transformer", TransformerConfig, TransformerTopic, TransformerStance,
                requirements=lambda section: requirements(), format="transformers",
                save=_TransformerClassifier.save_pretrained_dir, load=load_pretrained_dir)
