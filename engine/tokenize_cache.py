"""Tokenisation done once: texts become token ids cached on disk under
`cache_dir()/tokens`, keyed by (texts, tokenizer, max length), so no training or
evaluation step ever calls the tokenizer. Also where tokenizers come from: a hub
name or folder, a WordPiece `vocab.txt`, or WordPiece trained on the corpus when
none is given (so a from-scratch run needs no internet and no `../shared`)."""
from __future__ import annotations

import hashlib
import json
import logging
import os
import tempfile
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import torch

from engine.errors import InputError
from engine.paths import cache_dir

log = logging.getLogger(__name__)

CACHE_VERSION = "2"  # 2: texts cut to CHARS_PER_TOKEN * max_length characters first
TOKENIZE_CHUNK = 4096
# A text is cut to this many characters per kept token before it is tokenised: the
# tokenizer reads every character of a text even when it keeps 180 tokens, so one
# 100 MB line took 400 s and 13.5 GB. A WordPiece token spans about 4 to 6 characters
# of English or 1 of Chinese; only a text whose first tokens average more than 16
# characters each (long runs of spaces or symbols, words past 100 characters that
# become one [UNK]) can lose tokens it would have kept.
CHARS_PER_TOKEN = 16
TRAIN_CHARS = CHARS_PER_TOKEN * 512  # per text, for training a WordPiece vocabulary (BERT's 512 positions)


@dataclass
class TokenizedTexts:
    """Token ids of many texts, ragged: text i is `ids[offsets[i]:offsets[i+1]]`,
    special tokens included and truncated to the cache's max length."""

    ids: np.ndarray  # (total_tokens,) int32
    offsets: np.ndarray  # (n_texts + 1,) int64
    pad_id: int

    def __len__(self) -> int:
        return len(self.offsets) - 1

    def lengths(self, rows: np.ndarray | None = None) -> np.ndarray:
        lengths = np.diff(self.offsets)
        return lengths if rows is None else lengths[rows]

    def batch(self, rows: np.ndarray, pad_to: int | None = None) -> tuple[torch.Tensor, torch.Tensor]:
        """Input ids and attention mask of `rows`, padded to the longest of them, or
        to `pad_to` tokens (fixed shapes, so a compiled model never recompiles)."""
        lengths = self.lengths(rows)
        width = pad_to or max(int(lengths.max(initial=1)), 1)
        input_ids = np.full((len(rows), width), self.pad_id, dtype=np.int64)
        for i, row in enumerate(rows):
            input_ids[i, : lengths[i]] = self.ids[self.offsets[row] : self.offsets[row + 1]]
        attention_mask = np.arange(input_ids.shape[1])[None, :] < lengths[:, None]  # (batch, length)
        return torch.from_numpy(input_ids), torch.from_numpy(attention_mask.astype(np.int64))

    @staticmethod
    def concat(parts: list["TokenizedTexts"]) -> "TokenizedTexts":
        ids = np.concatenate([p.ids for p in parts])
        starts = np.cumsum([0] + [p.offsets[-1] for p in parts[:-1]])
        offsets = np.concatenate([parts[0].offsets[:1]] + [p.offsets[1:] + s for p, s in zip(parts, starts)])
        return TokenizedTexts(ids, offsets, parts[0].pad_id)


def texts_fingerprint(texts: list[str]) -> str:
    digest = hashlib.sha256()
    for text in texts:
        digest.update(text.encode("utf-8"))
        digest.update(b"\0")
    return digest.hexdigest()[:20]


def tokenizer_fingerprint(tokenizer) -> str:
    """Hash of the tokenizer's definition, without the truncation and padding state
    that calling it leaves behind."""
    definition = json.loads(tokenizer.backend_tokenizer.to_str())
    definition.pop("truncation", None)
    definition.pop("padding", None)
    return hashlib.sha256(json.dumps(definition, sort_keys=True).encode("utf-8")).hexdigest()[:20]


def tokenize_cached(texts: list[str], tokenizer, max_length: int) -> TokenizedTexts:
    """Token ids of `texts`, read from the cache or computed once and written there
    (atomically: parallel runs may both compute, neither sees half a file)."""
    key = f"{texts_fingerprint(texts)}-{tokenizer_fingerprint(tokenizer)}-{max_length}-v{CACHE_VERSION}"
    path = cache_dir() / "tokens" / f"{key}.npz"
    if path.is_file():
        with np.load(path) as stored:
            return TokenizedTexts(stored["ids"], stored["offsets"], int(stored["pad_id"]))
    tokenized = _tokenize(texts, tokenizer, max_length)
    path.parent.mkdir(parents=True, exist_ok=True)
    with tempfile.NamedTemporaryFile(dir=path.parent, suffix=".npz", delete=False) as handle:
        np.savez(handle, ids=tokenized.ids, offsets=tokenized.offsets, pad_id=tokenized.pad_id)
    os.replace(handle.name, path)
    return tokenized


def cut_texts(texts: list[str], max_chars: int, purpose: str) -> list[str]:
    """`texts` with each cut to `max_chars` characters; says once how many were cut."""
    long = sum(len(text) > max_chars for text in texts)
    if not long:
        return texts
    longest = max(len(text) for text in texts)
    log.warning("%d of %d texts are longer than %d characters (longest %d): cut to %d before %s",
                long, len(texts), max_chars, longest, max_chars, purpose)
    return [text[:max_chars] for text in texts]


def _tokenize(texts: list[str], tokenizer, max_length: int) -> TokenizedTexts:
    from tqdm import tqdm

    texts = cut_texts(texts, CHARS_PER_TOKEN * max_length, f"keeping {max_length} tokens of each")
    pieces: list[np.ndarray] = []
    for start in tqdm(range(0, len(texts), TOKENIZE_CHUNK), desc="tokenising", disable=len(texts) < 50_000):
        encoded = tokenizer(
            texts[start : start + TOKENIZE_CHUNK], truncation=True, max_length=max_length,
            return_attention_mask=False, return_token_type_ids=False,
        )["input_ids"]
        pieces.extend(np.asarray(ids, dtype=np.int32) for ids in encoded)
    offsets = np.zeros(len(pieces) + 1, dtype=np.int64)
    np.cumsum([len(p) for p in pieces], out=offsets[1:])
    ids = np.concatenate(pieces) if pieces else np.zeros(0, dtype=np.int32)
    return TokenizedTexts(ids, offsets, int(tokenizer.pad_token_id or 0))


# ---------------------------------------------------------------- tokenizers


def load_tokenizer(spec: str):
    """A tokenizer from a WordPiece vocab file (`.txt`, lower-cased BERT rules), a
    local folder or a hub name."""
    from transformers import AutoTokenizer

    path = Path(spec).expanduser()
    if path.is_file():
        return tokenizer_from_vocab(path)
    try:
        return AutoTokenizer.from_pretrained(str(path) if path.is_dir() else spec)
    except OSError as err:
        raise InputError(
            f"tokenizer '{spec}' not found: not a vocab file, not a folder, and not in the local hub cache "
            f"({err.__class__.__name__}); download it first or pass a local path"
        ) from None


def tokenizer_from_vocab(vocab_file: Path, lowercase: bool = True):
    """A BERT WordPiece tokenizer from a `vocab.txt`. (transformers 5 ignores a
    `vocab_file=` argument to the constructor and builds a 5-token vocabulary; the
    vocabulary has to be passed as a dict.)"""
    from transformers import BertTokenizerFast
    from transformers.models.bert.tokenization_bert import load_vocab

    try:
        vocab = load_vocab(str(vocab_file))
    except UnicodeDecodeError:
        raise InputError(f"{vocab_file}: not a UTF-8 WordPiece vocabulary (one token a line)") from None
    missing = [t for t in ("[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]") if t not in vocab]
    if missing:
        raise InputError(f"{vocab_file}: vocabulary lacks the special tokens {missing}")
    return BertTokenizerFast(vocab=vocab, do_lower_case=lowercase)


def trained_wordpiece(corpus: list[str], vocab_size: int):
    """WordPiece trained on `corpus` with BERT's normaliser (lower case, CJK characters
    split), cached under `cache_dir()/tokenizers` by corpus and vocabulary size."""
    from transformers import AutoTokenizer

    folder = cache_dir() / "tokenizers" / f"wordpiece-{texts_fingerprint(corpus)}-{vocab_size}"
    if (folder / "tokenizer.json").is_file():
        return AutoTokenizer.from_pretrained(str(folder))
    tokenizer = _train_wordpiece(corpus, vocab_size)
    folder.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(dir=folder.parent))
    tokenizer.save_pretrained(str(staging))
    try:
        os.replace(staging, folder)
    except OSError:  # another run saved the same tokenizer first
        log.info("tokenizer %s already saved by another run", folder.name)
    return tokenizer


def _train_wordpiece(corpus: list[str], vocab_size: int):
    from tokenizers import Tokenizer, models, normalizers, pre_tokenizers, trainers
    from transformers import BertTokenizerFast

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    backend = Tokenizer(models.WordPiece(unk_token="[UNK]"))
    backend.normalizer = normalizers.BertNormalizer(lowercase=True, handle_chinese_chars=True)
    backend.pre_tokenizer = pre_tokenizers.BertPreTokenizer()
    trainer = trainers.WordPieceTrainer(vocab_size=vocab_size, special_tokens=specials, show_progress=False)
    backend.train_from_iterator(cut_texts(corpus, TRAIN_CHARS, "training the vocabulary"), trainer=trainer)
    log.info("trained a WordPiece vocabulary of %d tokens on %d passages", backend.get_vocab_size(), len(corpus))
    if backend.get_vocab_size() > vocab_size:
        log.warning("asked for a vocabulary of %d tokens, got %d: the special tokens and every character of the "
                    "corpus come first", vocab_size, backend.get_vocab_size())
    return BertTokenizerFast(vocab=backend.get_vocab(), do_lower_case=True)
