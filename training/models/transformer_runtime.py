"""What the transformer family needs from torch and transformers at run time, imported only when a model is
used: pinned requirements, the device, quiet loading, and per-epoch metrics into the active MLflow run."""

from __future__ import annotations

import contextlib

from training.models.base import pinned

_EPOCH_STEPS: dict[tuple[str, str], int] = {}  # (run id, task) -> epochs logged so far in that run


def requirements() -> list[str]:
    """Pinned pip requirements a logged model needs to load and run this family. torch's version serves CPU and
    CUDA machines alike (docs/transformers.md says how to pick a build)."""
    return pinned(("torch", "transformers", "tokenizers", "safetensors"))


def resolve_device(requested: str, training: bool = True):
    """`auto` takes a CUDA GPU when torch sees one, else the CPU. An explicit `cuda` without a GPU is an error
    when training (the config asked for it); a saved model scores on the CPU then, since a GPU is never required."""
    import torch

    if requested == "cpu":
        return torch.device("cpu")
    if torch.cuda.is_available():
        return torch.device("cuda")
    if requested == "cuda" and training:
        from training.config import ConfigError

        raise ConfigError(
            f"model.device: 'cuda' was asked for but torch {torch.__version__} sees no CUDA GPU; "
            "set model.device=auto (GPU when present, else CPU) or cpu"
        )
    return torch.device("cpu")


@contextlib.contextmanager
def quiet():
    """Silence transformers/datasets progress bars and the 'newly initialized head' report while fitting:
    the head is new by design here, and bars would flood the pipeline's log for every fold."""
    import datasets
    from transformers.utils import logging as tlog

    bars_on, ds_bars_on, verbosity = tlog.is_progress_bar_enabled(), not datasets.are_progress_bars_disabled(), \
        tlog.get_verbosity()
    tlog.disable_progress_bar()
    datasets.disable_progress_bars()
    tlog.set_verbosity_error()
    try:
        yield
    finally:
        tlog.set_verbosity(verbosity)
        if bars_on:
            tlog.enable_progress_bar()
        if ds_bars_on:
            datasets.enable_progress_bars()


def load_pretrained(path: str, **model_kwargs):
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    try:
        tokenizer = AutoTokenizer.from_pretrained(path)
        model = AutoModelForSequenceClassification.from_pretrained(path, **model_kwargs)
    except (OSError, ValueError) as exc:
        from training.config import ConfigError

        raise ConfigError(
            f"model.model_name_or_path: cannot load {path!r} ({type(exc).__name__}: {str(exc).splitlines()[0]}). "
            "Give a local directory holding config.json, the weights and the tokenizer, or a Hub id on a machine "
            "that reaches huggingface.co (docs/transformers.md)."
        ) from None
    return tokenizer, model


def log_epoch(task: str, metrics: dict[str, float]) -> None:
    """Per-epoch metrics into the pipeline's active MLflow run (never a run of our own). Steps count on across
    the fits of one run (CV folds, held-out model, final model): each fit is one segment of `epochs` steps."""
    import mlflow

    run = mlflow.active_run()
    if run is None:
        return
    key = (run.info.run_id, task)
    _EPOCH_STEPS[key] = _EPOCH_STEPS.get(key, 0) + 1
    mlflow.log_metrics({f"transformer_{task}_epoch_{k}": float(v) for k, v in metrics.items()},
                       step=_EPOCH_STEPS[key])
