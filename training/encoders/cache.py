"""Embeddings cached by (encoder id, text digest): in memory for the process, and on disk when a directory is given.

Disk layout: `<cache_dir>/<sha256(encoder id)[:16]>/` holds `encoder.json` (the id, for people) and shards
`<uuid>.npz` of `keys` (text digests) and `vectors`. A shard is written whole to a temporary name and renamed, so
concurrent writers (cross-validation workers, scoring workers) never see a partial file and never overwrite one
another; npz is read with `allow_pickle=False`. A cache that cannot be written (read-only disk) is warned about
and skipped: it only saves time.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import uuid
from collections import OrderedDict
from pathlib import Path

import numpy as np

log = logging.getLogger(__name__)

# Per encoder, at most this many vectors stay in memory (512 float32 each: 2 KB): enough for every passage of
# a training run, bounded for long scoring jobs.
MEMORY_ITEMS = 100_000


def text_digest(text: str) -> str:
    return hashlib.sha256(text.encode("utf-8")).hexdigest()[:32]


class EmbeddingCache:
    _memory: dict[str, "OrderedDict[str, np.ndarray]"] = {}
    _disk_loaded: set[tuple[str, str]] = set()

    def __init__(self, encoder_id: str, cache_dir: str | Path | None = None):
        self.encoder_id = encoder_id
        self.memory = self._memory.setdefault(encoder_id, OrderedDict())
        self.dir = (Path(cache_dir) / hashlib.sha256(encoder_id.encode()).hexdigest()[:16]) if cache_dir else None

    @classmethod
    def for_encoder(cls, encoder_id: str, cache_dir=None) -> "EmbeddingCache":
        return cls(encoder_id, cache_dir)

    @classmethod
    def clear_memory(cls) -> None:
        cls._memory.clear()
        cls._disk_loaded.clear()

    def _load_disk(self) -> None:
        key = (self.encoder_id, str(self.dir.resolve()))
        if key in self._disk_loaded or not self.dir.is_dir():
            return
        for shard in sorted(self.dir.glob("*.npz")):
            try:
                with np.load(shard, allow_pickle=False) as z:
                    for k, v in zip(z["keys"].astype(str), z["vectors"]):
                        self._remember(k, v)
            except (OSError, ValueError, KeyError) as exc:  # a damaged shard costs a re-encode, not the run
                log.warning("embedding cache: skipping unreadable shard %s (%s)", shard, exc)
        self._disk_loaded.add(key)

    def _remember(self, key: str, vector: np.ndarray) -> None:
        self.memory[key] = vector
        self.memory.move_to_end(key)
        while len(self.memory) > MEMORY_ITEMS:
            self.memory.popitem(last=False)

    def get_many(self, digests: list[str]) -> dict[str, np.ndarray]:
        if self.dir is not None and any(d not in self.memory for d in digests):
            self._load_disk()
        return {d: self.memory[d] for d in digests if d in self.memory}

    def put_many(self, vectors: dict[str, np.ndarray]) -> None:
        for k, v in vectors.items():
            self._remember(k, v)
        if self.dir is None or not vectors:
            return
        try:
            self.dir.mkdir(parents=True, exist_ok=True)
            meta = self.dir / "encoder.json"
            if not meta.exists():
                meta.write_text(json.dumps({"encoder": self.encoder_id}))
            name = uuid.uuid4().hex
            tmp = self.dir / f".{name}.tmp.npz"
            np.savez(tmp, keys=np.array(list(vectors), dtype="S32"),
                     vectors=np.stack([np.asarray(v, dtype=np.float32) for v in vectors.values()]))
            os.replace(tmp, self.dir / f"{name}.npz")
        except OSError as exc:
            log.warning("embedding cache: cannot write under %s (%s); continuing without it", self.dir, exc)
