"""A run's fits in worker processes: the same models and scores as in one process, errors and order kept, and
families that must not fit side by side kept in one process."""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np
import pytest

from training import TOPICS
from training.config import SplitsConfig, load_config
from training.data import load_files
from training.fits import FitJob, FitPool, parallel_family
from training.models.embedding import EmbeddingLinearConfig
from training.models.tfidf import TfidfLinearConfig
from training.models.transformer import TransformerConfig
from training.splits import make_folds

REPO = Path(__file__).resolve().parents[1]
SMALL_TFIDF = TfidfLinearConfig(char_ngrams=None)


def _memos_active() -> tuple[bool, bool]:
    from training.lexicon import _COUNT_MEMO
    from training.models.tfidf import _HASH_MEMO

    return _HASH_MEMO.get() is not None, _COUNT_MEMO.get() is not None


def _fail(message: str):
    raise ValueError(message)


@pytest.fixture(scope="module")
def written():
    corpus = load_files([str(REPO / "data/written/*.jsonl")])
    return corpus, corpus.topic_matrix(TOPICS)


def test_jobs_run_in_other_processes_that_share_hashing_within_a_run():
    with FitPool(2) as pool:
        pids = {pool.submit(os.getpid).result() for _ in range(4)}
        assert os.getpid() not in pids and 1 <= len(pids) <= 2
        assert pool.submit(_memos_active).result() == (True, True)
    assert _memos_active() == (False, False)  # this process's scoring memos stay per call


def test_a_script_without_a_main_guard_can_run_fits_in_processes(tmp_path):
    """Workers do not re-run the calling script (multiprocessing's spawn would, and fail in a script that trains at
    its top level, as a quick experiment script does)."""
    import subprocess
    import sys

    script = tmp_path / "experiment.py"
    script.write_text("import os\nfrom training.fits import FitPool\nprint('started', flush=True)\n"
                      "with FitPool(2) as pool:\n    pids = {pool.submit(os.getpid).result() for _ in range(4)}\n"
                      "print(os.getpid() not in pids)\n", encoding="utf-8")
    done = subprocess.run([sys.executable, str(script)], capture_output=True, text=True, timeout=120, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == ["started", "True"]  # the script ran once, its jobs elsewhere


def test_one_job_runs_here_when_asked_and_in_the_order_asked():
    ran = []
    with FitPool(1) as pool:
        first, second = pool.submit(ran.append, "first"), pool.submit(ran.append, "second")
        assert ran == []  # nothing runs before its result is wanted: a serial run keeps its stage order
        second.result()
        first.result()
        first.result()
    assert ran == ["second", "first"]


@pytest.mark.parametrize("jobs", [1, 2])
def test_a_failed_job_raises_its_own_error(jobs):
    with FitPool(jobs) as pool:
        handle = pool.submit(_fail, "fold 2 could not be fit")
        with pytest.raises(ValueError, match="fold 2 could not be fit"):
            handle.result()


def test_fits_in_processes_equal_fits_here(written):
    """The out-of-fold scores and a fitted model from worker processes are those of the same fits in one process
    (up to rounding: a worker has one BLAS thread)."""
    corpus, Y = written
    folds = make_folds(corpus, SplitsConfig(n_folds=3), seed=0, labels=TOPICS)
    texts = corpus.texts

    def run(jobs):
        with FitPool(jobs) as pool:
            pending = [pool.submit(FitJob("topic", SMALL_TFIDF, None, 0, TOPICS, [texts[i] for i in tr], Y[tr],
                                          [texts[i] for i in te])) for tr, te in folds]
            model = pool.submit(FitJob("topic", SMALL_TFIDF, None, 0, TOPICS, texts, Y))
            P = np.zeros(Y.shape)
            for (_, te), job in zip(folds, pending):
                P[te] = job.result()
            return P, model.result().predict_proba(texts[:50])

    (P1, M1), (P2, M2) = run(1), run(2)
    np.testing.assert_allclose(P2, P1, rtol=0, atol=1e-9)
    np.testing.assert_allclose(M2, M1, rtol=0, atol=1e-9)
    assert ((P2 >= 0.5) == (P1 >= 0.5)).all()


def test_only_families_that_allow_it_fit_side_by_side(tmp_path):
    assert parallel_family(TfidfLinearConfig())
    # An encoder fills its embedding cache, a transformer uses every core: side by side they would repeat or fight.
    assert not parallel_family(EmbeddingLinearConfig())
    assert not parallel_family(TransformerConfig(model_name_or_path=str(tmp_path)))
    assert not parallel_family(TfidfLinearConfig(), EmbeddingLinearConfig())


def test_the_pool_of_a_run_follows_jobs_and_its_families(tmp_path):
    from training.stages import fit_pool

    cfg = load_config(str(REPO / "configs/default.yaml"))
    assert cfg.fit_jobs == 0 and fit_pool(cfg).jobs == len(os.sched_getaffinity(0))
    assert fit_pool(cfg.model_copy(update={"fit_jobs": 3})).jobs == 3
    assert fit_pool(cfg.model_copy(update={"fit_jobs": 1})).jobs == 1
    encoder = cfg.model_copy(update={"fit_jobs": 3, "stance_model": EmbeddingLinearConfig()})
    assert fit_pool(encoder).jobs == 1
