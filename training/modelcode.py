"""Which code a logged model predicts with.

Every version is logged with a copy of the package (`code/training/` in the model, MLflow's `code_paths`). `tpc
score` runs the installed package, so a version is only scored as it was validated when the installed predict path
is the one it was logged with. `code_drift` names the files of that path that differ; the scorer refuses such a
version (naming it and the files) unless the user accepts the installed code explicitly.
"""

from __future__ import annotations

import hashlib
from pathlib import Path

PACKAGE_DIR = Path(__file__).resolve().parent
# The modules a loaded model imports to predict (the rest of the package trains, logs and scores files).
PREDICT_PATH = ("__init__.py", "bundle.py", "aggregate.py", "articles.py", "errors.py", "lexicon.py", "pyfunc.py",
                "models/*.py", "encoders/*.py", "scoring/__init__.py", "scoring/schema.py")


def _digests(root: Path) -> dict[str, str]:
    out = {}
    for pattern in PREDICT_PATH:
        for path in sorted(root.glob(pattern)):
            out[path.relative_to(root).as_posix()] = hashlib.sha256(path.read_bytes()).hexdigest()
    return out


def logged_package(model_dir: str | Path) -> Path | None:
    """The copy of the package logged with the model, if it has one (models logged by this project do)."""
    root = Path(model_dir) / "code" / "training"
    return root if root.is_dir() else None


def code_drift(model_dir: str | Path, installed: Path = PACKAGE_DIR) -> list[str]:
    """The predict-path files (as `training/...`) that differ between the model's logged code and the installed
    package: changed, added or removed. Empty when they match or the model carries no code."""
    logged = logged_package(model_dir)
    if logged is None:
        return []
    a, b = _digests(logged), _digests(installed)
    return [f"training/{name}" for name in sorted(set(a) | set(b)) if a.get(name) != b.get(name)]
