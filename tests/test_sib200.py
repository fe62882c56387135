"""benchmarks/sib200.py on a tiny fake SIB-200 directory (no shared data, no encoder): dev mode, hyperparameters
chosen by repeated CV over train+dev and refitted, and the late fusion whose weights are chosen on the
out-of-fold probabilities."""

from __future__ import annotations

import json

import numpy as np
import pytest

from benchmarks import sib200

CONFIG = str(sib200.REPO / "configs" / "sib200.yaml")  # tfidf_linear: no encoder to load
WORDS = {"sport": "match équipe but joueur stade", "santé": "hôpital médecin maladie vaccin soin",
         "voyage": "avion hôtel plage valise billet"}


def fake_sib(root, n_train=8, n_dev=3, n_test=3):
    rng = np.random.default_rng(0)
    root.mkdir()
    for split, n in (("train", n_train), ("dev", n_dev), ("test", n_test)):
        rows = []
        for label, words in WORDS.items():
            for _ in range(n):
                picked = rng.choice(words.split(), size=3, replace=False)
                rows.append({"text": f"Le {picked[0]} et le {picked[1]}, puis un {picked[2]}.", "label": label})
        (root / f"{split}.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    return root


def rows_of(path):
    return [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines()]


def test_grid_settings_are_every_combination():
    assert sib200.grid_settings(["model.C=1,4", "model.embedding_weight=1,2"]) == [
        ["model.C=1", "model.embedding_weight=1"], ["model.C=1", "model.embedding_weight=2"],
        ["model.C=4", "model.embedding_weight=1"], ["model.C=4", "model.embedding_weight=2"]]
    with pytest.raises(SystemExit, match="KEY=V1"):
        sib200.grid_settings(["model.C"])


def test_fusion_weights_are_chosen_on_out_of_fold_accuracy():
    gold = np.array([0, 1, 0, 1])
    # member a is right (barely) on the first two items only, b confidently right on the last two only
    a = np.array([[[0.6, 0.4], [0.4, 0.6], [0.4, 0.6], [0.6, 0.4]]])
    b = np.array([[[0.5, 0.5], [0.5, 0.5], [0.9, 0.1], [0.1, 0.9]]])
    noise = np.full_like(a, 0.5)
    assert sib200.cv_accuracy(a, gold)[0] == 50.0
    weights, acc = sib200.pick_fusion_weights([a, b], gold, [0, 0.5, 1])
    assert acc == 100.0 and weights == [1.0, 0.5]
    weights, acc = sib200.pick_fusion_weights([a, noise], gold, [0, 0.5, 1])
    assert acc == 50.0 and weights == [1.0, 0.0]  # a member that adds nothing gets no weight


def test_dev_mode_fits_on_train_and_reports_dev_and_test(tmp_path, capsys):
    data = fake_sib(tmp_path / "sib")
    assert sib200.main([CONFIG, "--data", str(data), "--json", str(tmp_path / "rows.jsonl")]) == 0
    (row,) = rows_of(tmp_path / "rows.jsonl")
    assert row["dev_accuracy"] == row["test_accuracy"] == 100.0
    assert "dev acc" in capsys.readouterr().out


def test_cv_mode_selects_on_train_dev_refits_and_fuses(tmp_path, capsys):
    data = fake_sib(tmp_path / "sib")
    out = tmp_path / "rows.jsonl"
    assert sib200.main([CONFIG, CONFIG, "--set", "model.char_ngrams=null", "--data", str(data), "--select", "cv",
                        "--grid", "model.C=0.01,4", "--folds", "3", "--repeats", "2", "--fuse",
                        "--fuse-weights", "0,1", "--json", str(out)]) == 0
    first, second, fusion = rows_of(out)
    assert list(first["cv"]) == ["model.C=0.01", "model.C=4"]
    best = max(first["cv"], key=first["cv"].get)  # the first best setting
    assert first["selected"] == [best] and first["cv_accuracy"] == round(first["cv"][best], 1) == 100.0
    assert first["test_accuracy"] == 100.0 and "dev_accuracy" not in first
    assert fusion["weights"] == [1.0, 0.0] and fusion["test_accuracy"] == 100.0  # ties: the simpler fusion
    assert fusion["members"] == [CONFIG, CONFIG]
    text = capsys.readouterr().out
    assert "cv acc" in text and "3 x stratified" not in text and "2 x stratified 3-fold" in text


def test_cv_mode_never_looks_at_test_labels(tmp_path):
    """Test labels rotated to wrong topics: the choice (made on train+dev) is unchanged, test accuracy drops to 0."""
    data = fake_sib(tmp_path / "sib")
    rows = rows_of(data / "test.jsonl")
    topics = sorted(WORDS)
    for r in rows:
        r["label"] = topics[(topics.index(r["label"]) + 1) % len(topics)]
    (data / "test.jsonl").write_text("".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows))
    out = tmp_path / "rows.jsonl"
    sib200.main([CONFIG, "--set", "model.char_ngrams=null", "--data", str(data), "--select", "cv",
                 "--grid", "model.C=0.01,4", "--folds", "3", "--repeats", "1", "--json", str(out)])
    (row,) = rows_of(out)
    assert row["cv_accuracy"] == 100.0 and row["test_accuracy"] == 0.0


def test_cv_splits_cover_train_dev_once_per_repeat():
    idx = np.repeat(np.arange(3), 5)
    splits = sib200.cv_splits(idx, 5, 2, seed=0)
    assert len(splits) == 10
    for r in range(2):
        held = np.concatenate([b for _, b in splits[5 * r:5 * r + 5]])
        assert sorted(held) == list(range(15))


def test_fuse_needs_cv_and_two_configs(tmp_path):
    with pytest.raises(SystemExit):
        sib200.main([CONFIG, CONFIG, "--fuse", "--data", str(tmp_path)])
    with pytest.raises(SystemExit):
        sib200.main([CONFIG, "--select", "cv", "--fuse", "--data", str(tmp_path)])
