"""Tokenizers for the LM study, and the tensor-only token cache they feed.

Two kinds, both built with HF ``tokenizers`` and trained on the TRAIN documents only:

- ``bpe``: byte-level BPE (GPT-2 style ByteLevel pre-tokenizer and decoder), so every
  string encodes without unknowns and ``decode(encode(text)) == text``.
- ``whitespace``: a word-level baseline (Whitespace pre-tokenizer: runs of word characters
  and runs of punctuation); the vocabulary is the most frequent words, anything else is
  ``<unk>``. Decoding joins words with spaces, so it is lossy.

``vocab_size`` counts everything, special tokens included. Training is deterministic
without a seed: the BPE trainer breaks count ties by the smaller pair of ids, and ids come
from the specials, then the alphabet sorted by code point, then merges in order; the
word-level trainer sorts by (-count, word). Same docs and vocab_size therefore give a
byte-identical tokenizer.json (checked in the tests, also across processes by hand).

A corpus is encoded as one 1-D stream, each document followed by ``<|eod|>``, stored in the
narrowest signed dtype that holds every id (torch has no general uint16) and widened to
int64 on load.
"""

from __future__ import annotations

from pathlib import Path

import torch
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

KINDS = ("bpe", "whitespace")
EOD = "<|eod|>"
UNK = "<unk>"
_ENCODE_CHUNK = 1024  # documents per encode_batch call: bounds the Python-list peak


def train_tokenizer(kind: str, docs: list[str], vocab_size: int) -> Tokenizer:
    """Train a ``kind`` tokenizer with ``vocab_size`` ids in all (specials included)."""
    floor = {"bpe": 256 + 1, "whitespace": 2 + 1}.get(kind)  # bytes + eod; specials + 1 word
    if floor is None:
        raise ValueError(f"unknown tokenizer kind {kind!r}; allowed: {', '.join(KINDS)}")
    if vocab_size < floor:
        raise ValueError(f"vocab_size {vocab_size} is below the minimum {floor} for {kind!r}")
    if kind == "bpe":
        tok = Tokenizer(models.BPE())
        tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
        tok.decoder = decoders.ByteLevel()
        trainer = trainers.BpeTrainer(
            vocab_size=vocab_size,
            special_tokens=[EOD],
            initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),  # all 256 bytes, seen or not
            show_progress=False,
        )
    else:
        tok = Tokenizer(models.WordLevel(unk_token=UNK))
        tok.pre_tokenizer = pre_tokenizers.Whitespace()
        trainer = trainers.WordLevelTrainer(vocab_size=vocab_size, special_tokens=[UNK, EOD], show_progress=False)
    tok.train_from_iterator(docs, trainer)
    return tok


def vocab_size(tok: Tokenizer) -> int:
    """Number of ids the tokenizer can emit (added special tokens included)."""
    return tok.get_vocab_size(with_added_tokens=True)


def token_dtype(n_ids: int) -> torch.dtype:
    """Narrowest signed dtype that holds ids 0..n_ids-1."""
    if n_ids <= 2**15:
        return torch.int16
    if n_ids <= 2**31:
        return torch.int32
    return torch.int64


def encode_corpus(tok: Tokenizer, docs: list[str]) -> torch.Tensor:
    """All documents as one 1-D id stream, each followed by <|eod|>, in the narrowest dtype."""
    eod = tok.token_to_id(EOD)
    if eod is None:
        raise ValueError(f"tokenizer has no {EOD} token")
    dtype = token_dtype(vocab_size(tok))
    parts: list[torch.Tensor] = []
    for start in range(0, len(docs), _ENCODE_CHUNK):
        batch = tok.encode_batch_fast(docs[start : start + _ENCODE_CHUNK], add_special_tokens=False)
        ids = [i for enc in batch for i in (*enc.ids, eod)]
        parts.append(torch.tensor(ids, dtype=dtype))
    return torch.cat(parts) if parts else torch.empty(0, dtype=dtype)


def save_tokens(path: str | Path, tokens: torch.Tensor) -> None:
    """Write a 1-D id tensor as a dict of tensors (loadable with weights_only=True)."""
    if tokens.dim() != 1:
        raise ValueError(f"tokens must be 1-D, got shape {tuple(tokens.shape)}")
    torch.save({"tokens": tokens.contiguous()}, path)


def load_tokens(path: str | Path) -> torch.Tensor:
    """Read ids written by :func:`save_tokens`, widened to int64."""
    return torch.load(path, weights_only=True)["tokens"].long()


def save_tokenizer(tok: Tokenizer, path: str | Path) -> None:
    """Write tokenizer.json."""
    tok.save(str(path))


def load_tokenizer(path: str | Path) -> Tokenizer:
    """Read a tokenizer.json written by :func:`save_tokenizer`."""
    return Tokenizer.from_file(str(path))
