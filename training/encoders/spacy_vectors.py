"""`spacy_vectors`: a spaCy package's word vectors (default `fr_core_news_md`, 300-d), averaged per passage.

Only the tokenizer runs: the tagger, parser, NER and the rest are excluded at load, they are most of spaCy's
time and the static vectors do not depend on them. Tokens without a vector (checked as written, then lowercased)
are left out of the mean; a passage with none gets the zero vector.
"""

from __future__ import annotations

import numpy as np

from training.encoders import missing

DEFAULT_PACKAGE = "fr_core_news_md"


class SpacyVectors:
    def __init__(self, path: str | None = None, batch_size: int = 256):
        try:
            import spacy
        except ImportError as exc:
            raise missing("spacy_vectors", "spaCy", exc) from None
        name = path or DEFAULT_PACKAGE
        try:
            # Only the vocabulary and the tokenizer are needed; excluded components are not even loaded.
            self.nlp = spacy.load(name, exclude=["tok2vec", "morphologizer", "parser", "senter", "attribute_ruler",
                                                 "lemmatizer", "ner", "tagger", "transformer"])
        except OSError as exc:
            if name == DEFAULT_PACKAGE:
                raise missing("spacy_vectors", f"the spaCy package {name}", exc) from None
            raise FileNotFoundError(f"model.encoder_path: spaCy cannot load {name!r}: {exc}") from None
        vectors = self.nlp.vocab.vectors
        if vectors.shape[0] == 0:
            raise ValueError(f"model.encoder_path: the spaCy package {name!r} has no word vectors")
        self.vectors = vectors
        self.table = np.asarray(vectors.data, dtype=np.float32)
        self.dim = int(self.table.shape[1])
        self.batch_size = batch_size
        self.id = f"spacy_vectors:{self.nlp.meta.get('lang')}_{self.nlp.meta.get('name')}-{self.nlp.meta.get('version')}"

    def encode(self, texts: list[str]) -> np.ndarray:
        out = np.zeros((len(texts), self.dim), dtype=np.float32)
        find = self.vectors.find
        for i, doc in enumerate(self.nlp.tokenizer.pipe(list(texts), batch_size=self.batch_size)):
            if not len(doc):
                continue
            rows = find(keys=np.array([t.orth for t in doc], dtype=np.uint64))
            missing_rows = rows < 0
            if missing_rows.any():
                lower = find(keys=np.array([t.lower for t in doc], dtype=np.uint64))
                rows = np.where(missing_rows, lower, rows)
            rows = rows[rows >= 0]
            if len(rows):
                v = self.table[rows].mean(0)
                norm = np.linalg.norm(v)
                out[i] = v / norm if norm > 0 else v
        return out
