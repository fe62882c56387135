"""A tiny BERT (2 layers, hidden 64) with a WordPiece vocabulary trained on the project's own passages.

It stands in for CamemBERT in offline tests: same loading path (`AutoTokenizer` / `AutoModelForSequenceClassification`
from a local directory), same save format (safetensors + tokenizer.json), a few hundred kilobytes, no network.
"""

from __future__ import annotations

import glob
import json
from pathlib import Path

SPECIAL_TOKENS = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]


def project_texts(repo: str | Path) -> list[str]:
    """The `text` of every written passage under data/written/ (the corpus the classifiers are trained on)."""
    texts = []
    for path in sorted(glob.glob(str(Path(repo) / "data" / "written" / "*.jsonl"))):
        with open(path, encoding="utf-8") as fh:
            texts.extend(json.loads(line)["text"] for line in fh if line.strip())
    if not texts:
        raise FileNotFoundError(f"no passages under {repo}/data/written/*.jsonl to train the tiny tokenizer on")
    return texts


def build_tiny_bert(out_dir: str | Path, texts: list[str], vocab_size: int = 3000, max_positions: int = 128,
                    seed: int = 0) -> Path:
    """Train a WordPiece tokenizer on `texts`, initialise a 2-layer BERT with it, save both to `out_dir`."""
    import torch
    from tokenizers import Tokenizer, decoders, models, normalizers, pre_tokenizers, processors, trainers
    from transformers import BertConfig, BertModel, PreTrainedTokenizerFast

    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)

    tok = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    # Accents kept: in French they separate words (é/e), and CamemBERT keeps them too.
    tok.normalizer = normalizers.BertNormalizer(lowercase=True, strip_accents=False, clean_text=True)
    tok.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    tok.decoder = decoders.WordPiece()
    tok.train_from_iterator(texts, trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=SPECIAL_TOKENS,
                                                             show_progress=False))
    cls_id, sep_id = tok.token_to_id("[CLS]"), tok.token_to_id("[SEP]")
    # Pairs (passage, topic) must come out as [CLS] A [SEP] B [SEP] with segment ids, as a BERT tokenizer does.
    tok.post_processor = processors.TemplateProcessing(
        single="[CLS] $A [SEP]", pair="[CLS] $A [SEP] $B:1 [SEP]:1",
        special_tokens=[("[CLS]", cls_id), ("[SEP]", sep_id)],
    )
    fast = PreTrainedTokenizerFast(tokenizer_object=tok, unk_token="[UNK]", pad_token="[PAD]", cls_token="[CLS]",
                                   sep_token="[SEP]", mask_token="[MASK]", model_max_length=max_positions,
                                   model_input_names=["input_ids", "token_type_ids", "attention_mask"])
    fast.save_pretrained(out_dir)

    torch.manual_seed(seed)
    config = BertConfig(vocab_size=tok.get_vocab_size(), hidden_size=64, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=128, max_position_embeddings=max_positions, pad_token_id=0)
    BertModel(config).save_pretrained(out_dir)
    return out_dir
