"""The command line itself: help for every argument, the TPC_SET overrides, and `tpc train` reporting its stages."""

from __future__ import annotations

import argparse
import re
from pathlib import Path

import pytest

from test_docs import SMALL, small_project
from training.cli import main, parser

REPO = Path(__file__).resolve().parents[1]


def _arguments(p: argparse.ArgumentParser, path: str):
    for action in p._actions:
        if isinstance(action, argparse._SubParsersAction):
            helps = {a.dest: a.help for a in action._choices_actions}
            for name, sub in action.choices.items():
                yield f"{path} {name}", "(the command)", helps.get(name)
                yield from _arguments(sub, f"{path} {name}")
        elif not isinstance(action, argparse._HelpAction):
            yield path, "/".join(action.option_strings) or action.dest, action.help


def test_every_command_and_argument_has_help_text():
    arguments = list(_arguments(parser(), "tpc"))
    assert len(arguments) > 30
    missing = [f"{cmd} {arg}" for cmd, arg, text in arguments if not (text and text.strip())]
    assert not missing, f"no help text: {missing}"


def test_score_help_describes_input_workers_and_chunk_size(capsys):
    with pytest.raises(SystemExit):
        main(["score", "--help"])
    text = " ".join(capsys.readouterr().out.split())
    for expected in ("input a .jsonl/.csv/.parquet file", "--workers N scoring processes",
                     "--chunk-size ROWS rows sent to a worker", "--overwrite replace an existing OUTPUT"):
        assert expected in text, expected


def test_tpc_set_adds_overrides_the_command_line_wins(monkeypatch, capsys):
    monkeypatch.chdir(REPO)
    monkeypatch.setenv("TPC_SET", "splits.n_folds=2 'model.word_ngrams=[1, 3]' model.C=3")
    assert main(["config", "show", "configs/default.yaml", "--set", "model.C=5"]) == 0
    out = capsys.readouterr().out
    assert "n_folds: 2" in out and "word_ngrams:\n  - 1\n  - 3" in out and "C: 5.0" in out
    monkeypatch.setenv("TPC_SET", "splits.n_fold=2")
    assert main(["config", "show", "configs/default.yaml"]) == 2
    assert "unknown key `splits.n_fold`" in capsys.readouterr().err
    monkeypatch.setenv("TPC_SET", "model.C='3")
    assert main(["config", "show", "configs/default.yaml"]) == 2
    assert "TPC_SET=\"model.C='3\"" in capsys.readouterr().err


def test_train_reports_its_stages_on_stderr(tmp_path):
    """A real `tpc train` (its own process: no MLflow state leaks into other tests) on a small copy of the project."""
    import os
    import subprocess
    import sys

    project = small_project(tmp_path)
    env = {k: v for k, v in os.environ.items() if not k.startswith("MLFLOW_")}
    env.update(MLFLOW_TRACKING_URI=f"sqlite:///{project / 'mlflow.db'}", TPC_SET=SMALL)
    done = subprocess.run([sys.executable, "-m", "training.cli", "train", "configs/default.yaml"], cwd=project,
                          env=env, capture_output=True, text=True, timeout=900)
    assert done.returncode == 0, done.stderr[-3000:]
    stages = [re.sub(r"^tpc train \[ *\d+ s\] ", "", line) for line in done.stderr.splitlines()
              if line.startswith("tpc train [")]
    expected = ["loading data", "splitting", "cross-validation: topic fold 1/2", "cross-validation: topic fold 2/2",
                "cross-validation: stance fold 1/2", "cross-validation: stance fold 2/2", "roll-up",
                "held-out fit", "final fit", "logging", "registering", "gate: scoring candidate", "exporting the champion",
                "done in"]
    k = 0
    for stage in stages:
        if k < len(expected) and stage.startswith(expected[k]):
            k += 1
    assert k == len(expected), f"stages seen: {stages}"
    assert '"registered_version": 1' in done.stdout


def test_every_project_error_is_one_paragraph_and_debug_shows_the_traceback(tmp_path, capsys):
    """Any TPCError (here a config, a data file, an asset) is `tpc: error: ...` and exit 2; --debug re-raises it."""
    from training.errors import TPCError

    missing = tmp_path / "missing.yaml"
    assert main(["train", str(missing)]) == 2
    err = capsys.readouterr().err
    assert err == f"tpc: error: config file not found: {missing}\n"
    with pytest.raises(TPCError, match="config file not found"):
        main(["--debug", "train", str(missing)])
    bad = tmp_path / "bad.jsonl"
    bad.write_text('{"id": "a", "text": "x", "topics": ["sieges"]}\n', encoding="utf-8")
    assert main(["evaluate", "models/none", str(bad)]) == 2
    assert capsys.readouterr().err.startswith("tpc: error: ")
