"""`sentence_transformers`: any sentence-transformers model in a local directory (never fetched from the Hub)."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np

from training.encoders import missing


def directory_fingerprint(path: Path) -> str:
    """Names, sizes and modification times of the model's files: a changed model gets a new cache key without
    hashing gigabytes of weights."""
    h = hashlib.sha256()
    for f in sorted(p for p in path.rglob("*") if p.is_file()):
        st = f.stat()
        h.update(f"{f.relative_to(path)}\0{st.st_size}\0{st.st_mtime_ns}\n".encode())
    return h.hexdigest()[:16]


class LocalSentenceTransformer:
    def __init__(self, path: str | None = None, batch_size: int = 32, device: str = "cpu"):
        if not path:
            raise ValueError("model.encoder_path: the sentence_transformers encoder needs a local model directory "
                             "(e.g. --set model.encoder_path=/models/my-sbert)")
        directory = Path(path).expanduser()
        if not directory.is_dir():
            raise FileNotFoundError(f"model.encoder_path: {directory} is not a directory (a sentence-transformers "
                                    "model saved with SentenceTransformer.save)")
        try:
            from sentence_transformers import SentenceTransformer
        except ImportError as exc:
            raise missing("sentence_transformers", "sentence-transformers", exc) from None
        os.environ.setdefault("HF_HUB_OFFLINE", "1")
        self.model = SentenceTransformer(str(directory.resolve()), device=device, local_files_only=True)
        self.dim = int(self.model.get_sentence_embedding_dimension())
        self.batch_size = batch_size
        self.id = f"sentence_transformers:{directory.resolve()}:{directory_fingerprint(directory)}"

    def encode(self, texts: list[str]) -> np.ndarray:
        if not texts:
            return np.zeros((0, self.dim), dtype=np.float32)
        return np.asarray(self.model.encode(list(texts), batch_size=self.batch_size, normalize_embeddings=True,
                                            convert_to_numpy=True, show_progress_bar=False), dtype=np.float32)
