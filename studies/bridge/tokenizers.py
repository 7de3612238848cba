"""The two tiny LMs' tokenizers: deliberately different, so the bridge cannot copy token ids.

Both are HF ``tokenizers`` WordLevel models trained on the train texts only, with the
specials ``[PAD]`` (id 0), ``[UNK]``, ``[BOS]``, ``[EOS]``; a symbol unseen in train encodes
as ``[UNK]``. Decoding is exact for text made of seen symbols, because the scorers read
decoded text (a GSM8K ``#### 15`` must come back as ``15``, not ``1 5``):

- ``char``: one token per character (newlines included), decoded by concatenation.
- ``word``: whitespace + punctuation pre-tokenizer; a space is kept as the ``▁`` prefix of the
  word after it (Metaspace), newlines and punctuation are tokens of their own, and digits are
  split one per token so every number is spelled from ten seen symbols instead of being
  ``[UNK]`` whenever it did not occur in train.
"""

from __future__ import annotations

from tokenizers import Regex, Tokenizer, decoders, models, pre_tokenizers, trainers

KINDS = ("char", "word")
PAD, UNK, BOS, EOS = "[PAD]", "[UNK]", "[BOS]", "[EOS]"
SPECIALS = [PAD, UNK, BOS, EOS]


def build_tokenizer(kind: str, texts: list[str]) -> Tokenizer:
    """Train a ``kind`` tokenizer: the specials plus the symbols of ``texts`` (at most 30 000, most frequent first)."""
    tok = Tokenizer(models.WordLevel(unk_token=UNK))
    if kind == "char":
        tok.pre_tokenizer = pre_tokenizers.Split(Regex(r"[\s\S]"), behavior="isolated")
        tok.decoder = decoders.Fuse()
    elif kind == "word":
        tok.pre_tokenizer = pre_tokenizers.Sequence(
            [
                pre_tokenizers.Split("\n", behavior="isolated"),
                pre_tokenizers.Metaspace(prepend_scheme="never"),
                pre_tokenizers.Punctuation(behavior="isolated"),
                pre_tokenizers.Digits(individual_digits=True),
            ]
        )
        tok.decoder = decoders.Metaspace(prepend_scheme="never")
    else:
        raise ValueError(f"unknown tokenizer kind {kind!r}; allowed: {', '.join(KINDS)}")
    tok.train_from_iterator(texts, trainers.WordLevelTrainer(special_tokens=SPECIALS, show_progress=False))
    return tok
