"""The search space of a sweep: parsing `search.space`, checking it against the config, and turning a trial's
sampled values into a config (`trial_raw`, `_validate`)."""

from __future__ import annotations

import copy
import difflib
import json
import math
from dataclasses import dataclass
from typing import Any

from pydantic import ValidationError

from training.config import FAMILY_TAGS, ConfigError, TrainConfig, _section_class, set_dotted

KINDS = ("float", "log", "int", "int_log")
SYNTAX = ('[low, high], [low, high, "float"|"log"|"int"|"int_log"] or [[choice, ...], "categorical"]')
# Keys a trial may not change: the sweep's own settings, and where its runs go (trials share the parent's experiment).
FIXED = ("search", "tracking_uri", "experiment")
# Keys that do not change a trial's score: left out of the study's identity so that changing them resumes it.
NOT_SCORED = ("tracking_uri", "register", "promotion", "name")


@dataclass(frozen=True)
class Dimension:
    key: str
    kind: str  # one of KINDS or "categorical"
    low: float | None = None
    high: float | None = None
    choices: tuple = ()

    def samples(self) -> list:
        """Values that bound the dimension: each must make a valid config."""
        return list(self.choices) if self.kind == "categorical" else [self.low, self.high]

    def suggest(self, trial) -> Any:
        if self.kind == "categorical":
            # Optuna stores only scalars as choices: a list value such as [2, 5] travels as its JSON text.
            return json.loads(trial.suggest_categorical(self.key, [json.dumps(c) for c in self.choices]))
        if self.kind in ("int", "int_log"):
            return trial.suggest_int(self.key, int(self.low), int(self.high), log=self.kind == "int_log")
        return trial.suggest_float(self.key, float(self.low), float(self.high), log=self.kind == "log")


def _number(x) -> bool:
    return isinstance(x, (int, float)) and not isinstance(x, bool) and math.isfinite(x)


def parse_space(space: dict[str, list]) -> list[Dimension]:
    """The `search.space` entries as dimensions; a malformed entry is a ConfigError naming `search.space.KEY`."""
    if not space:
        raise ConfigError(f"search.space: empty; give at least one `KEY: {SYNTAX}`, e.g. model.C: [0.5, 8, \"log\"]")
    dims = []
    for key, spec in space.items():
        where = f"search.space.{key}"
        if key.split(".")[0] in FIXED:
            raise ConfigError(f"{where}: `{key}` cannot be searched (trials keep {', '.join(FIXED)} fixed)")
        if not isinstance(spec, list):
            raise ConfigError(f"{where}: expected {SYNTAX}; got {spec!r}")
        if len(spec) == 2 and spec[1] == "categorical":
            if not isinstance(spec[0], list) or not spec[0]:
                raise ConfigError(f"{where}: categorical needs a non-empty list of choices first; got {spec[0]!r}")
            texts = [json.dumps(c) for c in spec[0]]
            if len(set(texts)) != len(texts):
                raise ConfigError(f"{where}: repeated choices in {spec[0]!r}")
            dims.append(Dimension(key, "categorical", choices=tuple(spec[0])))
            continue
        if len(spec) not in (2, 3) or not (_number(spec[0]) and _number(spec[1])):
            raise ConfigError(f"{where}: expected {SYNTAX}; got {spec!r}")
        low, high, kind = spec[0], spec[1], spec[2] if len(spec) == 3 else "float"
        if kind not in KINDS:
            raise ConfigError(f"{where}: unknown kind {kind!r}; use one of {', '.join(map(repr, KINDS))} "
                              f"or [[choice, ...], \"categorical\"]")
        if not low < high:
            raise ConfigError(f"{where}: low ({low}) must be below high ({high})")
        if kind.endswith("log") and low <= 0:
            raise ConfigError(f"{where}: a log scale needs low > 0; got {low}")
        if kind.startswith("int") and not (float(low).is_integer() and float(high).is_integer()):
            raise ConfigError(f"{where}: an int range needs whole bounds; got [{low}, {high}]")
        dims.append(Dimension(key, kind, low, high))
    return dims


def set_key(raw: dict, key: str, value: Any) -> dict:
    """A copy of the raw config with dotted `key` set (as `--set key=value` would)."""
    out = copy.deepcopy(raw)
    set_dotted(out, key.split("."), copy.deepcopy(value), f"search.space.{key}")
    return out


def trial_raw(raw: dict, values: dict[str, Any]) -> dict:
    for key, value in values.items():
        raw = set_key(raw, key, value)
    return raw


def _validate(raw: dict, where: str, value: Any) -> TrainConfig:
    try:
        return TrainConfig.model_validate(raw)
    except ValidationError as exc:
        problems = []
        for err in exc.errors():
            keys = [str(p) for p in err["loc"] if p not in FAMILY_TAGS]
            if err["type"] == "extra_forbidden":
                cls = _section_class(tuple(err["loc"]))
                accepted = list(cls.model_fields) if cls else []
                close = difflib.get_close_matches(keys[-1], accepted, n=1, cutoff=0.6)
                hint = f"; did you mean `{'.'.join(keys[:-1] + close)}`?" if close else ""
                problems.append(f"`{'.'.join(keys)}` is not a config key{hint} (accepted here: {', '.join(accepted)})")
            else:
                problems.append(f"`{'.'.join(keys)}`: {err['msg']}")
        raise ConfigError(f"{where}: with value {value!r}: " + "; ".join(problems)) from None


def check_space(raw: dict, dims: list[Dimension]) -> None:
    """Fail before any trial when a space key is not a config key or a bound is not a valid value for it."""
    for dim in dims:
        for value in dim.samples():
            _validate(set_key(raw, dim.key, value), f"search.space.{dim.key}", value)


def starting_params(cfg: TrainConfig, dims: list[Dimension]) -> tuple[dict, list[str]]:
    """The base config's own values of the searched keys, as Optuna params (trial 0 of a sweep), and the keys whose
    base value cannot be one (a categorical value that is not among the choices: Optuna samples those)."""
    dumped = cfg.model_dump(mode="json")
    params, outside = {}, []
    for dim in dims:
        node: Any = dumped
        for part in dim.key.split("."):
            node = node.get(part) if isinstance(node, dict) else None
        if dim.kind == "categorical":
            if json.dumps(node) in [json.dumps(c) for c in dim.choices]:
                params[dim.key] = json.dumps(node)
            else:
                outside.append(f"{dim.key}={node!r}")
        elif _number(node):
            params[dim.key] = int(node) if dim.kind.startswith("int") else float(node)
        else:
            outside.append(f"{dim.key}={node!r}")
    return params, outside


def metric_names(labels) -> list[str]:
    """The metrics a trial reports (the cv_* and threshold_* metrics of a run)."""
    import numpy as np

    from training import STANCES
    from training.evaluate import stance_metrics, topic_metrics

    Y = np.zeros((1, len(labels)), dtype=int)
    names = list(topic_metrics(Y, Y, labels, "cv_topic")) + [f"threshold_{t}" for t in labels]
    return names + list(stance_metrics([STANCES[0]], [STANCES[0]], "cv_stance"))
