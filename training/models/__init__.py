"""Model families behind one interface, and their safe (pickle-free) persistence.

Each family gives two scikit-learn-style estimators: a multi-label topic classifier (`fit(texts, Y)`,
`predict_proba(texts) -> (n, n_topics)`) and a stance classifier over (passage, topic) pairs
(`fit([[text, topic], ...], stances)`, `predict_proba -> (n, 3)` in STANCES order).
"""

from __future__ import annotations

import importlib
import json
from pathlib import Path

FAMILIES = {
    "tfidf_linear": ("training.models.tfidf", "TfidfLinearTopic", "TfidfLinearStance"),
    "embedding_linear": ("training.models.embedding", "EmbeddingLinearTopic", "EmbeddingLinearStance"),
    "transformer": ("training.models.transformer", "TransformerTopic", "TransformerStance"),
}

# The only types a skops model file of this project may ask for beyond skops' defaults. Anything else in a
# model file is refused at load time: a model file never gets to run code the project did not declare.
TRUSTED_TYPES = [
    "training.models.tfidf.TfidfLinearTopic",
    "training.models.tfidf.TfidfLinearStance",
    "training.models.embedding.EmbeddingLinearTopic",
    "training.models.embedding.EmbeddingLinearStance",
    "training.lexicon.LexiconFeatures",
    "training.models.tfidf.SeenColumns",
    "training.aggregate.ArticleAggregator",
]


class UntrustedModelError(RuntimeError):
    pass


def _family_class(family: str, task: str):
    if family not in FAMILIES:
        raise ValueError(f"model.family: {family!r} is not one of {sorted(FAMILIES)}")
    module, topic_cls, stance_cls = FAMILIES[family]
    return getattr(importlib.import_module(module), topic_cls if task == "topic" else stance_cls)


def build(task: str, model_cfg, lexicon: dict | None, seed: int, labels):
    """An unfitted estimator for `task` ("topic" or "stance") from a model config section."""
    params = model_cfg.model_dump()
    family = params.pop("family")
    use_lexicon = params.pop("use_lexicon", False)
    if task == "topic":  # settings of the stance model that share the family's config section
        params.pop("scope_features", None)
        params.pop("structure", None)
    cls = _family_class(family, task)
    params["lexicon"] = lexicon if use_lexicon else None
    if family != "transformer":
        params["random_state"] = seed
    else:
        params["seed"] = seed
    params["labels" if task == "topic" else "topics"] = tuple(labels)
    return cls(**params)


def save(estimator, directory: str | Path) -> None:
    directory = Path(directory)
    directory.mkdir(parents=True, exist_ok=True)
    cls = type(estimator)
    meta = {"class": f"{cls.__module__}.{cls.__qualname__}"}
    if hasattr(estimator, "save_pretrained_dir"):  # transformer family: safetensors + tokenizer
        estimator.save_pretrained_dir(directory)
        meta["format"] = "transformers"
    else:
        dump_skops(estimator, directory / "model.skops")
        meta["format"] = "skops"
    (directory / "meta.json").write_text(json.dumps(meta, indent=1))


def load(directory: str | Path):
    directory = Path(directory)
    meta = json.loads((directory / "meta.json").read_text())
    if meta["format"] == "transformers":
        from training.models.transformer import load_pretrained_dir

        return load_pretrained_dir(directory)
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
            "project (a new model family must add its own classes to TRUSTED_TYPES)."
        )
    return sio.load(path, trusted=asked)


def requirements_for(config: dict) -> list[str]:
    """Pinned extra pip requirements a logged model needs for the families of its two tasks (`config`: a dumped
    TrainConfig); the core requirements come from training.tracking.pip_requirements."""
    sections = [config.get("model") or {}, config.get("stance_model") or config.get("model") or {}]
    extra: list[str] = []
    for section in sections:
        family = section.get("family")
        if family == "transformer":
            from training.models.transformer import requirements

            extra += requirements()
        elif family == "embedding_linear":
            from training.models.embedding import requirements

            extra += requirements(section)
    return list(dict.fromkeys(extra))
