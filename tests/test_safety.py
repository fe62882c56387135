"""Safety: model files never run code the project did not declare; configs never write outside the working
directory; every config error names the key, where it was set and what is accepted."""

import importlib
import inspect
import json
import os
import shutil
import zipfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import scipy.sparse
import skops.io as sio
from sklearn.base import BaseEstimator
from sklearn.feature_extraction.text import HashingVectorizer
from sklearn.preprocessing import FunctionTransformer

from training import models as families
from training.aggregate import ArticleAggregator, article_features
from training.bundle import Bundle
from training.config import ConfigError, load_config
from training.data import load_files
from training.lexicon import load_lexicon
from training.models import TRUSTED_TYPES, UntrustedModelError, load_skops

REPO = Path(__file__).resolve().parents[1]
LABELS = ("mediation", "arms_trade", "sanctions", "deployment")


class NotDeclared(BaseEstimator):
    """A harmless class that is simply not in TRUSTED_TYPES."""

    def __init__(self, x=1):
        self.x = x


def _dump(obj, tmp_path, name="m.skops") -> Path:
    path = tmp_path / name
    sio.dump(obj, path)
    return path


@pytest.mark.parametrize("obj,asked", [
    (NotDeclared(), "test_safety.NotDeclared"),
    (FunctionTransformer(func=os.system), "posix.system"),
    (HashingVectorizer(preprocessor=eval), "builtins.eval"),
    # Allowed by the former whole-module allowance `scipy.sparse.*`: a file write at transform time.
    (FunctionTransformer(func=scipy.sparse.save_npz, kw_args={"file": "/tmp/owned.npz"}),
     "scipy.sparse._matrix_io.save_npz"),
    (FunctionTransformer(func=shutil.rmtree), "shutil.rmtree"),
], ids=["undeclared-class", "os.system", "eval", "scipy.sparse.save_npz", "shutil.rmtree"])
def test_model_file_asking_for_untrusted_types_is_refused(tmp_path, obj, asked):
    path = _dump(obj, tmp_path)
    with pytest.raises(UntrustedModelError) as err:
        load_skops(path)
    message = str(err.value)
    assert message.startswith(f"{path}: refusing to load a model file that asks for types this project does not trust")
    assert asked in message and "training.models.TRUSTED_TYPES" in message


def test_corrupt_model_file_is_refused_clearly(tmp_path):
    path = tmp_path / "m.skops"
    path.write_bytes(b"\x80\x04\x95 not a zip, perhaps a pickle")
    with pytest.raises(UntrustedModelError, match=r"m\.skops: not a readable skops model file"):
        load_skops(path)


@pytest.fixture(scope="module")
def tiny_bundle(tmp_path_factory):
    """A small fitted bundle (tf-idf topic + stance with the lexicon, and the learned aggregator), saved."""
    corpus = load_files(["data/written/*.jsonl"], root=REPO)
    corpus = corpus.subset(range(0, len(corpus), 10))
    lexicon = load_lexicon(REPO / "configs" / "lexicon.yaml")
    cfg = load_config(REPO / "configs" / "default.yaml", ["model.hash_bits=12", "model.char_ngrams=[2,3]"])
    Y = corpus.topic_matrix(LABELS)
    topic = families.build("topic", cfg.model, lexicon, 0, LABELS).fit(corpus.texts, Y)
    texts, topics, stances, _ = corpus.stance_pairs()
    stance = families.build("stance", cfg.model, lexicon, 0, LABELS)
    stance.fit(np.array([texts, topics], dtype=object).T.reshape(-1, 2), np.asarray(stances))
    rng = np.random.default_rng(0)
    arts = [rng.choice(len(corpus), 6) for _ in range(80)]
    P = topic.predict_proba(corpus.texts)
    feats = np.stack([article_features(P[a], np.full(4, 0.5), None) for a in arts])
    aggregator = ArticleAggregator(labels=LABELS).fit(feats, np.stack([Y[a].max(0) for a in arts]))
    bundle = Bundle(topic, stance, LABELS, [0.5] * 4, aggregator, lexicon, {"note": "test"})
    return bundle, bundle.save(tmp_path_factory.mktemp("bundle") / "bundle")


def test_legit_bundle_asks_only_for_declared_types_and_loads(tiny_bundle):
    bundle, directory = tiny_bundle
    for f in directory.rglob("*.skops"):
        assert set(sio.get_untrusted_types(file=f)) <= set(TRUSTED_TYPES), f
    loaded = Bundle.load(directory)
    frame = pd.DataFrame({"text": ["La Turquie refuse de livrer des drones à l'Ukraine.", "Match nul à Istanbul."]})
    pd.testing.assert_frame_equal(loaded.predict_frame(frame), bundle.predict_frame(frame))


def test_bundle_with_a_swapped_model_file_is_refused(tiny_bundle, tmp_path):
    _, directory = tiny_bundle
    copy = shutil.copytree(directory, tmp_path / "bundle")
    sio.dump(FunctionTransformer(func=os.system, kw_args={"command": "touch /tmp/owned"}),
             copy / "topic" / "model.skops")
    with pytest.raises(UntrustedModelError, match=r"topic/model\.skops: refusing .*'posix\.system'"):
        Bundle.load(copy)


def test_tampered_type_name_in_a_legit_file_is_refused(tiny_bundle, tmp_path):
    """Editing the schema of a real model file to name another class is caught before anything is built."""
    _, directory = tiny_bundle
    source = directory / "aggregator.skops"
    target = tmp_path / "aggregator.skops"
    with zipfile.ZipFile(source) as zin, zipfile.ZipFile(target, "w") as zout:
        for item in zin.infolist():
            data = zin.read(item.filename)
            if item.filename == "schema.json":
                schema = json.loads(data)
                assert schema["__class__"] == "ArticleAggregator"
                schema["__module__"], schema["__class__"] = "subprocess", "Popen"
                data = json.dumps(schema).encode()
            zout.writestr(item, data)
    with pytest.raises(UntrustedModelError, match=r"'subprocess\.Popen'"):
        load_skops(target)


def test_trusted_types_are_project_classes():
    """The allow-list holds only estimator classes defined in this package, never functions or foreign modules."""
    for name in TRUSTED_TYPES:
        module, _, attr = name.rpartition(".")
        assert module.startswith("training."), name
        obj = getattr(importlib.import_module(module), attr)
        assert inspect.isclass(obj) and obj.__module__ == module, name


@pytest.mark.parametrize("sets", [
    ["model.char_ngrams=null", "model.use_lexicon=false"],
    ["model.structure=hierarchical", "model.scope_features=true"],
    ["model.structure=flat", "model.scope_features=false"],
], ids=["no-lexicon-no-char", "hierarchical-scope", "flat-no-scope"])
def test_every_tfidf_variant_asks_only_for_declared_types(tmp_path, sets):
    corpus = load_files(["data/written/*.jsonl"], root=REPO)
    corpus = corpus.subset(range(0, len(corpus), 20))
    lexicon = load_lexicon(REPO / "configs" / "lexicon.yaml")
    cfg = load_config(REPO / "configs" / "default.yaml", ["model.hash_bits=12"] + sets)
    topic = families.build("topic", cfg.model, lexicon, 0, LABELS).fit(corpus.texts, corpus.topic_matrix(LABELS))
    texts, topics, stances, _ = corpus.stance_pairs()
    stance = families.build("stance", cfg.model, lexicon, 0, LABELS)
    stance.fit(np.array([texts, topics], dtype=object).T.reshape(-1, 2), np.asarray(stances))
    for name, est in (("topic", topic), ("stance", stance)):
        families.save(est, tmp_path / name)
        assert set(sio.get_untrusted_types(file=tmp_path / name / "model.skops")) <= set(TRUSTED_TYPES)
        families.load(tmp_path / name)


def test_logged_model_has_no_pickle(trained):
    """The exported MLflow model (as consumers get it) holds skops/JSON/code only: no pickle anywhere."""
    exported = trained["dir"] / "models" / "turkey-policy"
    files = [f for f in exported.rglob("*") if f.is_file()]
    assert files
    assert [f for f in files if f.suffix in (".pkl", ".pickle", ".joblib", ".pt", ".bin")] == []
    for f in files:  # pickle streams start with PROTO (0x80) and a protocol number
        head = f.read_bytes()[:2]
        assert not (len(head) == 2 and head[0] == 0x80 and head[1] <= 5), f
    skops_files = [f for f in files if f.suffix == ".skops"]
    assert skops_files
    for f in skops_files:
        assert set(sio.get_untrusted_types(file=f)) <= set(TRUSTED_TYPES), f
    bundle_dir = next(p.parent for p in exported.rglob("bundle.json"))
    Bundle.load(bundle_dir)


# -- configs: paths and messages ----------------------------------------------------------------------------------
@pytest.fixture
def in_tmp(tmp_path, monkeypatch):
    shutil.copytree(REPO / "configs", tmp_path / "configs")
    monkeypatch.chdir(tmp_path)
    return tmp_path


@pytest.mark.parametrize("value", ["../elsewhere", "models/../../x", "/etc", "/tmp/x", ".", "''"])
def test_export_dir_outside_the_working_directory_is_refused(in_tmp, value):
    with pytest.raises(ConfigError) as err:
        load_config("configs/default.yaml", [f"register.export_dir={value}"])
    message = str(err.value)
    assert message.startswith("configs/default.yaml: invalid config")
    assert f"--set register.export_dir={value}: `register.export_dir`" in message
    assert f"must be a sub-folder of the working directory {in_tmp.resolve()}" in message


def test_export_dir_in_a_config_file_is_checked_too(in_tmp):
    (in_tmp / "configs" / "bad.yaml").write_text("extends: default.yaml\nregister:\n  export_dir: /var/lib/models\n")
    with pytest.raises(ConfigError, match=r"configs/bad\.yaml:3: `register\.export_dir`.*must be a sub-folder"):
        load_config("configs/bad.yaml")


@pytest.mark.parametrize("value", ["models/turkey-policy", "out/m", "null"])
def test_export_dir_inside_is_accepted(in_tmp, value):
    cfg = load_config("configs/default.yaml", [f"register.export_dir={value}"])
    assert cfg.register.export_dir == (None if value == "null" else value)
    assert load_config("configs/default.yaml", [f"register.export_dir={in_tmp / 'models' / 'x'}"])


@pytest.mark.parametrize("override,expected", [
    ("model.C=-1", ["--set model.C=-1", "`model.C`", "greater than 0", "(got -1)"]),
    ("model.C=abc", ["`model.C`", "valid number", "(got 'abc')"]),
    ("article.aggregator=mean", ["`article.aggregator` must be 'max' or 'learned'", "(got 'mean')"]),
    ("splits.kind=random", ["`splits.kind` must be 'grouped_stratified' or 'temporal'", "(got 'random')"]),
    ("register.alias=prod", ["`register.alias` must be 'champion' or 'candidate'", "(got 'prod')"]),
    ("model.family=forest", ["`model.family` must be one of 'tfidf_linear', 'embedding_linear', 'transformer'",
                             "(got 'forest')"]),
    ("model.Cc=3", ["unknown key `model.Cc`", "did you mean `model.C`?", "accepted here:", "word_ngrams"]),
    ("regster.name=x", ["unknown key `regster`", "did you mean `register`?"]),
    ("model.hash_bits=30", ["`model.hash_bits`", "less than or equal to 24"]),
    ("splits.n_folds=1", ["`splits.n_folds`", "greater than or equal to 2"]),
])
def test_config_errors_name_key_source_and_accepted_values(in_tmp, override, expected):
    with pytest.raises(ConfigError) as err:
        load_config("configs/default.yaml", [override])
    message = str(err.value)
    assert message.startswith("configs/default.yaml: invalid config\n  - --set ")
    for part in expected:
        assert part in message, (part, message)


def test_config_error_in_a_file_names_file_and_line(in_tmp):
    (in_tmp / "configs" / "bad.yaml").write_text("extends: default.yaml\narticle:\n  aggregator: mean\n")
    with pytest.raises(ConfigError, match=r"configs/bad\.yaml:3: `article\.aggregator` must be 'max' or 'learned'"):
        load_config("configs/bad.yaml")


@pytest.mark.parametrize("content,expected", [
    ("topics: [a, b\n", "invalid YAML"),
    ("- just\n- a list\n", "the top level must be a mapping"),
    ("topics:\n  mediation: [x]\nextra:\n  y: [z]\n", "unknown section(s) ['extra']; allowed: topics, stance"),
    ("topics: [médiation]\n", "`topics` must map a group name to a list of terms"),
    ("topics:\n  mediation: médiation\n", "`topics.mediation` must be a list of terms"),
])
def test_lexicon_errors_name_file_and_key(tmp_path, content, expected):
    path = tmp_path / "lexicon.yaml"
    path.write_text(content, encoding="utf-8")
    with pytest.raises(ConfigError) as err:
        load_lexicon(path)
    assert str(err.value).startswith(f"{path}: ") and expected in str(err.value)


def test_missing_lexicon_names_the_key():
    with pytest.raises(FileNotFoundError, match=r"lexicon\.path: .*nope\.yaml not found"):
        load_lexicon("nope.yaml")
