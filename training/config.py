"""One validated config: YAML with `extends`, `--set key=value` overrides, pydantic schemas (unknown keys rejected)."""

from __future__ import annotations

import copy
import difflib
import hashlib
import json
import os
import shlex
import warnings
from pathlib import Path
from typing import Annotated, Any, Literal, Union, get_args

import yaml
from pydantic import BaseModel, Field, ValidationError, field_validator

from training import MODEL_NAME, TOPICS
from training.errors import ConfigError  # noqa: F401  (raised here; importers take it from here too)
from training.models import FAMILIES
from training.models.base import StrictConfig as _Strict


# The model families' sections come from their FAMILY records: a new family needs no change here.
FAMILY_TAGS = {name: fam.config for name, fam in FAMILIES.items()}
ModelConfig = Annotated[Union[tuple(FAMILY_TAGS.values())], Field(discriminator="family")]


class DataConfig(_Strict):
    train: list[str] = ["data/written/*.jsonl"]
    seeds_gold: str | None = "data/seeds_gold.jsonl"
    seeds_dir: str = "seeds"
    # the registered model's data: the training passages (written + real train split), or those and the seeds
    fit_final_on: Literal["train", "train+seeds"] = "train"
    # labelled real articles (OrangeSum ids + passage digests; train/dev/test splits); null: written text only
    real: str | None = "data/real/labels.jsonl"
    # false: train on written text only (the written-only reference), still measured on the real dev/test splits
    train_on_real: bool = True
    # where ../shared-style data lives (orangesum/articles.jsonl.gz); TPC_DATA_DIR wins; null: ../shared/data
    data_dir: str | None = None


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

    @field_validator("export_dir")
    @classmethod
    def _export_dir_inside_working_tree(cls, value: str | None) -> str | None:
        # The export replaces the target folder (rmtree): it must be a sub-folder of the working directory.
        if value is None:
            return value
        cwd = Path.cwd().resolve()
        target = (cwd / value).resolve()
        if ".." in Path(value).parts or target == cwd or cwd not in target.parents:
            raise ValueError(f"must be a sub-folder of the working directory {cwd}, without `..` segments, "
                             "e.g. models/turkey-policy, or null for no export")
        return value


class PromotionConfig(_Strict):
    metric: str = "real_dev_article_topic_macro_f1"
    margin: float = Field(0.0, ge=0)
    # `real:dev`: the real dev articles of data.real (never trained on); or a glob of labelled passage files,
    # e.g. data/challenge/*.jsonl (metric frozen_topic_macro_f1)
    eval_data: str = "real:dev"


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
    # Processes for the run's model fits (training.fits): 0 one per available core, 1 all in the tpc process.
    fit_jobs: int = Field(0, ge=0)
    data: DataConfig = DataConfig()
    splits: SplitsConfig = SplitsConfig()
    model: ModelConfig = FAMILY_TAGS["tfidf_linear"]()
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


def set_dotted(node: dict, parts: list[str], value, where: str) -> None:
    """Set `value` at the dotted path `parts` of a raw config, creating missing sections; `where` names the
    setting in the error when a part of the path is a value."""
    for part in parts[:-1]:
        if node.get(part) is None:
            node[part] = {}
        if not isinstance(node[part], dict):
            raise ConfigError(f"{where}: {part!r} is a value, not a section")
        node = node[part]
    node[parts[-1]] = value


def apply_overrides(raw: dict, overrides: list[str]) -> dict:
    raw = copy.deepcopy(raw)
    for item in overrides:
        parts, value = parse_override(item)
        set_dotted(raw, parts, value, f"--set {item!r}")
    return raw


def _section_class(loc: tuple) -> type[BaseModel] | None:
    """The schema that holds the last key of `loc` (family tags in `loc` pick the model family's schema)."""
    cls: type[BaseModel] | None = TrainConfig
    for part in loc[:-1]:
        if part in FAMILY_TAGS:
            cls = FAMILY_TAGS[part]
            continue
        field = cls.model_fields.get(str(part)) if cls else None
        if field is None:
            return None
        nested = [a for a in (field.annotation, *get_args(field.annotation))
                  if isinstance(a, type) and issubclass(a, BaseModel)]
        cls = nested[0] if nested else None  # a union of families: the next loc item is the family tag
    return cls


def _yaml_line(path: Path, keys: list[str]) -> int | None:
    """Line (1-based) where `keys` is set in one YAML file itself (not in what it extends), or None."""
    try:
        node = yaml.compose(path.read_text(encoding="utf-8"))
    except (OSError, yaml.YAMLError):
        return None
    line = None
    for k in keys:
        if not isinstance(node, yaml.MappingNode):
            return None
        match = [(kn, vn) for kn, vn in node.value if str(kn.value) == k]
        if not match:
            return None
        line, node = match[-1][0].start_mark.line + 1, match[-1][1]
    return line


def _origin(keys: list[str], path: Path | None, overrides: list[str]) -> str:
    """Where a key's value came from: the last `--set` that touched it, else the file (or parent) setting it."""
    for item in reversed(overrides):
        set_keys = item.split("=", 1)[0].strip().split(".")
        n = min(len(set_keys), len(keys))
        if set_keys[:n] == keys[:n]:
            return f"--set {item}"
    if path is None:
        return "<defaults>"

    def search(p: Path, seen: tuple) -> str | None:
        p = p.resolve()
        if p in seen or not p.is_file():
            return None
        line = _yaml_line(p, keys)
        if line is not None:
            return f"{p}:{line}"
        try:
            parents = (yaml.safe_load(p.read_text(encoding="utf-8")) or {}).get("extends") or []
        except (OSError, yaml.YAMLError, AttributeError):
            return None
        for parent in reversed([parents] if isinstance(parents, str) else parents):
            found = search(p.parent / parent, seen + (p,))
            if found:
                return found
        return None

    found = search(Path(path), ())
    if found:
        return found
    # Not set anywhere (a missing key): point at the deepest enclosing section of the file itself.
    line = next(filter(None, (_yaml_line(Path(path), keys[:d]) for d in range(len(keys) - 1, 0, -1))), None)
    return f"{Path(path).resolve()}:{line}" if line else str(path)


def _family_of(value: Any) -> Any:
    return value.get("family") if isinstance(value, dict) else value


def _explain(exc: ValidationError, source: str, path: Path | None = None, overrides: list[str] = ()) -> str:
    """One line per problem: where it was set (file:line or the --set item), the key, and what is accepted."""
    lines = [f"{source}: invalid config"]
    for err in exc.errors():
        loc = tuple(err["loc"])
        keys = [str(p) for p in loc if p not in FAMILY_TAGS]
        key = ".".join(keys)
        where = _origin(keys, path, list(overrides))
        got = f" (got {err.get('input')!r})" if err["type"] != "missing" else ""
        if err["type"] == "extra_forbidden":
            cls = _section_class(loc)
            accepted = list(cls.model_fields) if cls else []
            close = difflib.get_close_matches(keys[-1], accepted, n=1, cutoff=0.6)
            hint = f"; did you mean `{'.'.join(keys[:-1] + close)}`?" if close else ""
            lines.append(f"  - {where}: unknown key `{key}`{hint} (accepted here: {', '.join(accepted)})")
        elif err["type"] in ("union_tag_invalid", "union_tag_not_found"):
            families = ", ".join(map(repr, FAMILY_TAGS))
            if err["type"] == "union_tag_not_found":  # a model section without `family`
                lines.append(f"  - {where}: `{key}` needs a `family`: one of {families}")
            else:
                lines.append(f"  - {_origin(keys + ['family'], path, list(overrides))}: `{key}.family` must be one "
                             f"of {families} (got {_family_of(err.get('input'))!r})")
        elif err["type"] == "literal_error":
            lines.append(f"  - {where}: `{key}` must be {err['ctx']['expected']}{got}")
        else:
            lines.append(f"  - {where}: `{key}`: {err['msg']}{got}")
    return "\n".join(lines)


def env_overrides() -> list[str]:
    """`--set` items from the environment variable TPC_SET (shell syntax: `TPC_SET='splits.n_folds=2
    model.char_ngrams=null'`), applied after the file and before the command line's own --set items."""
    value = os.environ.get("TPC_SET", "")
    try:
        return shlex.split(value)
    except ValueError as exc:
        raise ConfigError(f"TPC_SET={value!r}: {exc}; write it as --set items separated by spaces, quoted as in a "
                          "shell, e.g. TPC_SET='splits.n_folds=2 model.char_ngrams=null'") from None


def resolve(path: str | Path | None = None, overrides: list[str] | None = None) -> dict:
    """The fully resolved raw config: file (with `extends`) + TPC_SET + overrides, not yet validated."""
    raw = _read_yaml(Path(path)) if path else {}
    return apply_overrides(raw, env_overrides() + list(overrides or []))


def load_config(path: str | Path | None = None, overrides: list[str] | None = None) -> TrainConfig:
    raw = resolve(path, overrides)
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        raise ConfigError(_explain(exc, str(path or "<defaults>"), Path(path) if path else None,
                                   env_overrides() + list(overrides or []))) from None


def stance_model_config(cfg: TrainConfig):
    return cfg.stance_model or cfg.model


def flatten(cfg: TrainConfig, max_len: int = 500) -> dict[str, str]:
    """Flat `a.b.c -> value` params for MLflow. A value longer than `max_len` (well under MLflow's 6000-character
    limit: longer params are unreadable in its comparison views) is cut and marked with a digest of the whole value,
    so two configs that differ only past the cut still log different params; config/resolved.yaml keeps it whole."""
    out: dict[str, str] = {}

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}.{k}" if prefix else k, v)
            return
        text = json.dumps(value, ensure_ascii=False) if isinstance(value, (list, tuple)) else str(value)
        if len(text) > max_len:
            mark = f"...[truncated sha256:{hashlib.sha256(text.encode()).hexdigest()[:12]}]"
            text = text[: max_len - len(mark)] + mark
        out[prefix] = text

    walk("", cfg.model_dump(mode="json"))
    return out


def to_yaml(cfg: TrainConfig) -> str:
    return yaml.safe_dump(cfg.model_dump(mode="json"), sort_keys=False, allow_unicode=True)
