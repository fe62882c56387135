"""What every model family shares: its registry record, the strict config base, and the scikit-learn contract of
its two estimators (a multi-label topic classifier and a (passage, topic) stance classifier)."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

import numpy as np
from pydantic import BaseModel, ConfigDict
from sklearn.base import BaseEstimator, ClassifierMixin
from sklearn.utils.validation import check_is_fitted

from training import STANCES


class StrictConfig(BaseModel):
    """A config section that rejects unknown keys (a typo must never silently fall back to a default)."""

    model_config = ConfigDict(extra="forbid", protected_namespaces=())


@dataclass(frozen=True)
class Family:
    """One model family, as training.models.FAMILIES lists it.

    `config` is the pydantic section whose `family` literal is `name`; `trusted` the skops types its fitted
    estimators may hold beyond skops' defaults; `save(estimator, directory)` / `load(directory)` write and read
    the files of `format`, the name models.save records in meta.json (None: one skops file, loaded only with
    TRUSTED_TYPES); `requirements(model section dict)` the pinned extra pip requirements; `parallel_fits` whether
    its fits may run at once in worker processes (training.fits: off for a family whose fits fill a shared cache
    or use every core themselves)."""

    name: str
    config: type[BaseModel]
    topic: type
    stance: type
    trusted: tuple[str, ...] = ()
    requirements: Callable[[dict], list[str]] = lambda section: []
    format: str = "skops"
    save: Callable | None = None
    load: Callable | None = None
    parallel_fits: bool = False

    def estimator(self, task: str) -> type:
        return self.topic if task == "topic" else self.stance


def pinned(packages) -> list[str]:
    """`name==version` of each installed package (a local label such as torch's `+cpu` dropped: it names a build
    index, not a PyPI release); a package not installed here is listed unpinned."""
    import importlib.metadata as md

    reqs = []
    for name in packages:
        try:
            reqs.append(f"{name}=={md.version(name).split('+')[0]}")
        except md.PackageNotFoundError:
            reqs.append(name)
    return reqs


def qualname(cls: type) -> str:
    return f"{cls.__module__}.{cls.__qualname__}"


class _ProjectClassifier(ClassifierMixin, BaseEstimator):
    """A subclass computes `_predict_proba` and names `_fitted_attr`; predicting before fit is a NotFittedError."""

    # The attribute that exists once fitted, in files saved by every earlier version of the project as well
    # (classes_ and thresholds_ are newer, so they cannot be the test).
    _fitted_attr = ""

    def __sklearn_is_fitted__(self) -> bool:
        return hasattr(self, self._fitted_attr)

    def predict_proba(self, X) -> np.ndarray:
        check_is_fitted(self)
        return self._predict_proba(X)

    def __setstate__(self, state):
        # Files saved before `labels=` was the one name hold the stance's topics as `topics`.
        state = dict(state)
        if "topics" in state:
            state.setdefault("labels", state.pop("topics"))
        state.pop("classes_", None)  # a property now, derived from the labels
        super().__setstate__(state)


class TopicClassifier(_ProjectClassifier):
    """Multi-label: `fit(texts, Y)` with Y (n, len(labels)) of 0/1, `predict_proba -> (n, len(labels))` in `labels`
    order. `predict` applies `thresholds_` (the tuned per-label thresholds, set by `set_thresholds`; 0.5 before)."""

    @property
    def classes_(self) -> np.ndarray:
        check_is_fitted(self)
        return np.asarray(self.labels)

    def set_thresholds(self, thresholds) -> "TopicClassifier":
        self.thresholds_ = np.asarray(thresholds, dtype=float)
        return self

    def predict(self, X) -> np.ndarray:
        return (self.predict_proba(X) >= getattr(self, "thresholds_", 0.5)).astype(int)

    def __sklearn_tags__(self):
        tags = super().__sklearn_tags__()
        tags.classifier_tags.multi_label = True
        tags.target_tags.multi_output = True
        return tags


class StanceClassifier(_ProjectClassifier):
    """`fit([[text, topic], ...], stances)`, `predict_proba -> (n, 3)` whose columns are `classes_` (STANCES order)
    whatever classes a fit saw."""

    @property
    def classes_(self) -> np.ndarray:
        check_is_fitted(self)
        return np.asarray(STANCES)

    def predict(self, X) -> np.ndarray:
        return self.classes_[self.predict_proba(X).argmax(1)]
