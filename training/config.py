"""One validated config: YAML with `extends`, `--set key=value` overrides, pydantic schemas (unknown keys rejected)."""

from __future__ import annotations

import copy
import json
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal, Union

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError

from training import MODEL_NAME, TOPICS


class ConfigError(ValueError):
    """A config that cannot be used; the message names the file, the key and the fix."""


class _Strict(BaseModel):
    model_config = ConfigDict(extra="forbid", protected_namespaces=())


class TfidfLinearConfig(_Strict):
    family: Literal["tfidf_linear"] = "tfidf_linear"
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] | None = (2, 5)
    hash_bits: int = Field(18, ge=10, le=24)  # 2**hash_bits hashed n-gram features per analyzer
    min_df: int = Field(1, ge=1)  # keep n-grams seen in at least this many training passages
    sublinear_tf: bool = True
    C: float = Field(4.0, gt=0)
    class_weight: Literal["balanced"] | None = "balanced"
    max_iter: int = 2000
    use_lexicon: bool = True


class EmbeddingLinearConfig(_Strict):
    family: Literal["embedding_linear"] = "embedding_linear"
    encoder: Literal["spacy_vectors", "use_multilingual", "sentence_transformers"] = "use_multilingual"
    encoder_path: str | None = None  # spaCy package name or local sentence-transformers directory
    with_tfidf: bool = True
    word_ngrams: tuple[int, int] = (1, 2)
    char_ngrams: tuple[int, int] | None = None
    C: float = Field(4.0, gt=0)
    class_weight: Literal["balanced"] | None = "balanced"
    max_iter: int = 2000
    cache_dir: str | None = ".cache/embeddings"
    use_lexicon: bool = True


class TransformerConfig(_Strict):
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


ModelConfig = Annotated[
    Union[TfidfLinearConfig, EmbeddingLinearConfig, TransformerConfig], Field(discriminator="family")
]


class DataConfig(_Strict):
    train: list[str] = ["data/written/*.jsonl"]
    seeds_gold: str | None = "data/seeds_gold.jsonl"
    seeds_dir: str = "seeds"
    fit_final_on: Literal["train", "train+seeds"] = "train+seeds"


class SplitsConfig(_Strict):
    kind: Literal["grouped_stratified", "temporal"] = "grouped_stratified"
    n_folds: int = Field(5, ge=2)
    near_duplicate_jaccard: float = Field(0.5, gt=0, le=1)
    date_field: str = "date"


class TopicConfig(_Strict):
    labels: list[str] = list(TOPICS)
    threshold_metric: Literal["f1"] = "f1"
    min_threshold: float = Field(0.05, ge=0, le=1)


class ArticleConfig(_Strict):
    aggregator: Literal["max", "learned"] = "learned"
    composite_articles: int = Field(400, ge=0)
    min_passages: int = 5
    max_passages: int = 40


class LexiconConfig(_Strict):
    path: str | None = "configs/lexicon.yaml"


class RegisterConfig(_Strict):
    enabled: bool = True
    name: str = MODEL_NAME
    alias: Literal["champion", "candidate"] = "candidate"
    promote: bool = True
    export_dir: str | None = "models/turkey-policy"


class PromotionConfig(_Strict):
    metric: str = "frozen_topic_macro_f1"
    margin: float = Field(0.0, ge=0)
    eval_data: str = "data/challenge/*.jsonl"  # held-out written passages, never trained on


class SearchConfig(_Strict):
    trials: int = Field(10, ge=1)
    metric: str = "cv_topic_macro_f1"
    direction: Literal["maximize", "minimize"] = "maximize"
    space: dict[str, list[Any]] = {}
    storage: str | None = None  # Optuna storage URL; default: a SQLite file beside the MLflow store
    study_name: str | None = None


warnings.filterwarnings("ignore", message='Field name "register"', category=UserWarning)


class TrainConfig(_Strict):
    name: str = "default"
    seed: int = 13
    tracking_uri: str | None = None
    experiment: str = MODEL_NAME
    data: DataConfig = DataConfig()
    splits: SplitsConfig = SplitsConfig()
    model: ModelConfig = TfidfLinearConfig()
    stance_model: ModelConfig | None = None  # None: the same family and settings as `model`
    topic: TopicConfig = TopicConfig()
    article: ArticleConfig = ArticleConfig()
    lexicon: LexiconConfig = LexiconConfig()
    register: RegisterConfig = RegisterConfig()
    promotion: PromotionConfig = PromotionConfig()
    search: SearchConfig | None = None


def _merge(base: dict, over: dict) -> dict:
    out = copy.deepcopy(base)
    for key, value in over.items():
        switches_family = isinstance(value, dict) and value.get("family") not in (None, (out.get(key) or {}).get("family"))
        if isinstance(value, dict) and isinstance(out.get(key), dict) and not switches_family:
            out[key] = _merge(out[key], value)
        else:
            out[key] = copy.deepcopy(value)
    return out


def _read_yaml(path: Path, seen: tuple[Path, ...] = ()) -> dict:
    path = path.resolve()
    if path in seen:
        raise ConfigError(f"{path}: `extends` cycle: {' -> '.join(map(str, seen + (path,)))}")
    if not path.is_file():
        raise ConfigError(f"config file not found: {path}")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8")) or {}
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: invalid YAML: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"{path}: the top level must be a mapping of keys, got {type(raw).__name__}")
    parent = raw.pop("extends", None)
    if parent is None:
        return raw
    parents = [parent] if isinstance(parent, str) else parent
    merged: dict = {}
    for p in parents:
        merged = _merge(merged, _read_yaml((path.parent / p), seen + (path,)))
    return _merge(merged, raw)


def parse_override(item: str) -> tuple[list[str], Any]:
    if "=" not in item:
        raise ConfigError(f"--set {item!r}: expected KEY=VALUE, e.g. --set model.C=3")
    key, value = item.split("=", 1)
    parts = key.strip().split(".")
    if not all(parts):
        raise ConfigError(f"--set {item!r}: empty key segment in {key!r}")
    return parts, yaml.safe_load(value) if value.strip() else None


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    raw = copy.deepcopy(raw)
    for item in overrides:
        parts, value = parse_override(item)
        node = raw
        for part in parts[:-1]:
            if node.get(part) is None:
                node[part] = {}
            if not isinstance(node[part], dict):
                raise ConfigError(f"--set {item!r}: {part!r} is a value, not a section")
            node = node[part]
        node[parts[-1]] = value
    return raw


def _explain(exc: ValidationError, source: str) -> str:
    lines = [f"{source}: invalid config"]
    for err in exc.errors():
        key = ".".join(str(p) for p in err["loc"] if not str(p).startswith(("TfidfLinear", "EmbeddingLinear", "Transformer")))
        key = ".".join(p for p in key.split(".") if p not in ("tfidf_linear", "embedding_linear", "transformer"))
        if err["type"] == "extra_forbidden":
            lines.append(f"  - unknown key `{key}`: remove it or check its spelling")
        elif err["type"] == "union_tag_invalid":
            lines.append(f"  - `{key}.family`: {err['msg']}")
        elif err["type"] == "literal_error":
            lines.append(f"  - `{key}`: {err['msg']} (got {err.get('input')!r})")
        else:
            lines.append(f"  - `{key}`: {err['msg']} (got {err.get('input')!r})")
    return "\n".join(lines)


def resolve(path: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """The fully resolved raw config: file (with `extends`) + overrides, not yet validated."""
    raw = _read_yaml(Path(path)) if path else {}
    return apply_overrides(raw, overrides or [])


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    raw = resolve(path, overrides)
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, str(path or "<defaults>"))) from None


def stance_model_config(cfg: TrainConfig):
    return cfg.stance_model or cfg.model


def flatten(cfg: TrainConfig, max_len: int = 500) -> dict[str, str]:
    """Flat `a.b.c -> value` params for MLflow; values longer than its limit are cut with a marker."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
            return
        text = json.dumps(value, ensure_ascii=False) if isinstance(value, (list, tuple)) else str(value)
        out[prefix] = text if len(text) <= max_len else text[: max_len - 14] + "...[truncated]"

    walk("", cfg.model_dump(mode="json"))
    return out


def to_yaml(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
