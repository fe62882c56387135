"""A registered version is scored only by the predict code it was logged with, or refused with what differs."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

from training.modelcode import PACKAGE_DIR, code_drift


def _package_copy(dst: Path) -> Path:
    shutil.copytree(PACKAGE_DIR, dst / "training", ignore=shutil.ignore_patterns("__pycache__"))
    return dst / "training"


def test_code_drift_names_changed_added_and_removed_predict_files(tmp_path):
    model = tmp_path / "model"
    logged = _package_copy(model / "code")
    assert code_drift(model) == []
    (logged / "bundle.py").write_text((logged / "bundle.py").read_text() + "\n# changed\n")
    (logged / "models" / "extra_family.py").write_text("X = 1\n")
    (logged / "lexicon.py").unlink()
    (logged / "cli.py").write_text("# not on the predict path\n")
    assert code_drift(model) == ["training/bundle.py", "training/lexicon.py", "training/models/extra_family.py"]
    assert code_drift(tmp_path / "no-code-logged") == []


def _score(package_root: Path, project: Path, model: Path, out: Path, *extra: str) -> subprocess.CompletedProcess:
    env = {**os.environ, "PYTHONPATH": str(package_root)}  # this copy of the package is the installed one
    return subprocess.run([sys.executable, "-m", "training.cli", "score", "seeds", "-o", str(out), "--model",
                           str(model), *extra], cwd=project, env=env, capture_output=True, text=True, timeout=600)


def test_a_version_scored_after_its_predict_code_changed_is_refused_with_the_difference(trained, tmp_path):
    project = trained["dir"]
    model = project / "models" / "turkey-policy"  # the exported champion: the version the fixture logged
    installed = _package_copy(tmp_path / "site")
    same = _score(installed.parent, project, model, tmp_path / "same.jsonl")
    assert same.returncode == 0, same.stderr[-2000:]
    bundle = installed / "bundle.py"
    bundle.write_text(bundle.read_text() + "\n# a change to the predict path after the version was logged\n")
    refused = _score(installed.parent, project, model, tmp_path / "refused.jsonl")
    assert refused.returncode == 2, refused.stderr[-2000:]
    message = refused.stderr.strip().splitlines()[-1]
    assert message.startswith(f"tpc: error: --model {model}: ") and "training/bundle.py differ" in message
    assert "--allow-code-drift" in message and "Traceback" not in refused.stderr
    assert not (tmp_path / "refused.jsonl").exists()
    allowed = _score(installed.parent, project, model, tmp_path / "allowed.jsonl", "--allow-code-drift")
    assert allowed.returncode == 0, allowed.stderr[-2000:]
    assert (tmp_path / "allowed.jsonl").read_bytes() == (tmp_path / "same.jsonl").read_bytes()
