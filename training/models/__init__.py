"""Model families behind one interface, and their safe (pickle-free) persistence.

Each family module declares one `FAMILY` record (training.models.base.Family): its config section, a multi-label
topic classifier (`fit(texts, Y)`, `predict_proba(texts) -> (n, n_labels)`) and a stance classifier over
(passage, topic) pairs (`fit([[text, topic], ...], stances)`, `predict_proba -> (n, 3)` in STANCES order), the
types its model files may hold, its file format and its pip requirements. Everything that lists families (the
config union and tags, TRUSTED_TYPES, `build`, save/load, `requirements_for`, the search) reads FAMILIES.
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

from training.aggregate import ArticleAggregator
from training.errors import TPCError
from training.models.base import Family, qualname

# A new family: one module declaring FAMILY, and one line here.
_FAMILY_MODULES = (
    "training.models.tfidf",
    "training.models.embedding",
    "training.models.transformer",
)
FAMILIES: dict[str, Family] = {f.name: f for f in (importlib.import_module(m).FAMILY for m in _FAMILY_MODULES)}


# The only types a skops model file of this project may ask for beyond skops' defaults. Anything else in a
# model file is refused at load time: a model file never gets to run code the project did not declare.
TRUSTED_TYPES = list(dict.fromkeys([t for f in FAMILIES.values() for t in f.trusted] + [qualname(ArticleAggregator)]))


class UntrustedModelError(TPCError, RuntimeError):
    pass


def family(name: str) -> Family:
    if name not in FAMILIES:
        raise ValueError(f"model.family: {name!r} is not one of {sorted(FAMILIES)}")
    return FAMILIES[name]


def build(task: str, model_cfg, lexicon: dict | None, seed: int, labels):
    """An unfitted estimator for `task` ("topic" or "stance") from a model config section."""
    params = model_cfg.model_dump()
    cls = family(params.pop("family")).estimator(task)
    use_lexicon = params.pop("use_lexicon", False)
    if task == "topic":  # settings of the stance model that share the family's config section
        params.pop("scope_features", None)
        params.pop("structure", None)
    return cls(**params, lexicon=lexicon if use_lexicon else None, random_state=seed, labels=tuple(labels))


def _family_of(estimator) -> Family | None:
    return next((f for f in FAMILIES.values() if type(estimator) in (f.topic, f.stance)), None)


def save(estimator, directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    fam = _family_of(estimator)
    meta = {"class": qualname(type(estimator)), "format": fam.format if fam else "skops"}
    if fam is not None and fam.save is not None:
        fam.save(estimator, directory)
    else:
        dump_skops(estimator, directory / "model.skops")
    (directory / "meta.json").write_text(json.dumps(meta, indent=1))


def load(directory: str | Path):
    directory = Path(directory)
    meta = json.loads((directory / "meta.json").read_text())
    loaders = {f.format: f.load for f in FAMILIES.values() if f.load is not None}
    if meta["format"] in loaders:
        return loaders[meta["format"]](directory)
    return load_skops(directory / "model.skops")


def dump_skops(obj, path: Path) -> None:
    import skops.io as sio

    sio.dump(obj, path)


def load_skops(path: Path):
    """Load a skops file, refusing any type outside skops' defaults and TRUSTED_TYPES.

    Nothing else is allowed: dumping every family's fitted estimators (tf-idf and embedding, with and without the
    lexicon, character n-grams or tf-idf block, flat and hierarchical stance) and the aggregator asks for exactly
    TRUSTED_TYPES beyond skops' defaults. Whole-module allowances (e.g. `scipy.sparse.*`) would let a model file
    name callables such as `scipy.sparse.save_npz` as a FunctionTransformer's `func`: a file write at predict time.
    """
    import zipfile

    import skops.io as sio

    try:
        asked = sio.get_untrusted_types(file=path)
    except (OSError, zipfile.BadZipFile, KeyError, ValueError) as exc:
        raise UntrustedModelError(f"{path}: not a readable skops model file ({type(exc).__name__}: {exc}); "
                                  "refusing to load what cannot be checked") from None
    untrusted = sorted(t for t in asked if t not in TRUSTED_TYPES)
    if untrusted:
        raise UntrustedModelError(
            f"{path}: refusing to load a model file that asks for types this project does not trust: {untrusted}. "
            "Only skops' default types and training.models.TRUSTED_TYPES are allowed; retrain the model with this "
            "project (a new model family declares its own classes in its FAMILY record)."
        )
    return sio.load(path, trusted=asked)


def requirements_for(config: dict) -> list[str]:
    """Pinned extra pip requirements a logged model needs for the families of its two tasks (`config`: a dumped
    TrainConfig); the core requirements come from training.tracking.pip_requirements."""
    sections = [config.get("model") or {}, config.get("stance_model") or config.get("model") or {}]
    extra = [r for s in sections if s.get("family") in FAMILIES for r in FAMILIES[s["family"]].requirements(s)]
    return list(dict.fromkeys(extra))
