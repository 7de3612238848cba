"""Tokenizers: lossless byte-level BPE, word-level with <unk>, deterministic training,
narrow token dtypes and the tensor-only token cache."""

from pydoc_data.topics import topics

import pyarrow as pa
import pyarrow.parquet as pq
import pytest
import torch

from pipeline.spec import Context, Params, Upstream
from stages.common import tokenize
from studies.data import tokenizer as tk

DOCS = [topics[k] for k in sorted(topics)[:12]]  # a small slice keeps BPE training < 0.1 s


@pytest.fixture(scope="module")
def bpe():
    return tk.train_tokenizer("bpe", DOCS, vocab_size=512)


def test_bpe_round_trips_text_including_unseen_characters(bpe):
    text = DOCS[0][:2000] + "\n  tabs\tand ünïcödé ✓ 日本語 <end>\n"
    assert bpe.decode(bpe.encode(text).ids) == text


def test_bpe_vocab_size_is_respected(bpe):
    assert tk.vocab_size(bpe) == 512
    assert bpe.token_to_id(tk.EOD) is not None


def test_bpe_training_is_byte_identical_for_the_same_input():
    a = tk.train_tokenizer("bpe", DOCS, vocab_size=400).to_str()
    b = tk.train_tokenizer("bpe", DOCS, vocab_size=400).to_str()
    assert a == b


def test_whitespace_maps_unknown_words_to_unk():
    tok = tk.train_tokenizer("whitespace", ["the cat sat", "the cat ran", "the dog"], 5)
    assert tk.vocab_size(tok) == 5  # <unk>, <|eod|>, then the, cat, and one of sat/ran/dog
    assert tok.encode("the cat").tokens == ["the", "cat"]
    assert tok.encode("the zebra").tokens == ["the", tk.UNK]


def test_whitespace_training_is_byte_identical_for_the_same_input():
    a = tk.train_tokenizer("whitespace", DOCS, vocab_size=300).to_str()
    assert a == tk.train_tokenizer("whitespace", DOCS, vocab_size=300).to_str()


def test_unknown_kind_and_too_small_vocab_are_rejected():
    with pytest.raises(ValueError, match="bpe, whitespace"):
        tk.train_tokenizer("sentencepiece", DOCS, 512)
    with pytest.raises(ValueError, match="minimum 257"):
        tk.train_tokenizer("bpe", DOCS, 100)


def test_encode_corpus_ends_each_document_with_eod(bpe):
    ids = tk.encode_corpus(bpe, DOCS[:3])
    eod = bpe.token_to_id(tk.EOD)
    assert ids.dim() == 1 and ids.dtype == torch.int16
    ends = (ids == eod).nonzero().flatten().tolist()
    assert len(ends) == 3 and ends[-1] == len(ids) - 1
    first = ids[: ends[0]].tolist()
    assert bpe.decode(first) == DOCS[0]


@pytest.mark.parametrize(
    "n_ids, dtype",
    [(512, torch.int16), (32768, torch.int16), (32769, torch.int32), (2**31 + 1, torch.int64)],
)
def test_token_dtype_is_the_narrowest_that_holds_every_id(n_ids, dtype):
    assert tk.token_dtype(n_ids) == dtype
    if dtype != torch.int64:
        assert torch.iinfo(dtype).max >= n_ids - 1


def test_tokens_save_load_round_trip_widens_to_int64(tmp_path, bpe):
    ids = tk.encode_corpus(bpe, DOCS[:2])
    tk.save_tokens(tmp_path / "tokens.pt", ids)
    loaded = tk.load_tokens(tmp_path / "tokens.pt")
    assert loaded.dtype == torch.int64
    assert torch.equal(loaded, ids.long())


def test_tokenizer_save_load_round_trip(tmp_path, bpe):
    tk.save_tokenizer(bpe, tmp_path / "tokenizer.json")
    again = tk.load_tokenizer(tmp_path / "tokenizer.json")
    assert again.to_str() == bpe.to_str()
    assert again.encode(DOCS[1]).ids == bpe.encode(DOCS[1]).ids


def test_tokenize_stage_learns_from_train_only_and_caches_every_split(tmp_path):
    """Words that occur only in val or test get no id of their own (they are <unk>), although
    they are the most frequent words of the corpus; each split gets its token file."""
    download = tmp_path / "download"
    download.mkdir()
    texts = {"train": ["alpha beta gamma"] * 3, "val": ["valword " * 50], "test": ["testword " * 50]}
    for split, docs in texts.items():
        pq.write_table(pa.table({"text": docs}), download / f"{split}.parquet")
    (tmp_path / "out").mkdir()
    params = Params({"tokenizer": "whitespace", "vocab_size": 50}, "tokenize")
    ctx = Context(params, tmp_path / "out", (Upstream("download", "d", download, ()),), "ska_lm")
    metrics = tokenize.run(ctx)
    tok = tk.load_tokenizer(ctx.out / "tokenizer.json")
    assert {"alpha", "beta", "gamma"} <= set(tok.get_vocab())
    assert tok.token_to_id("valword") is None and tok.token_to_id("testword") is None
    unk, eod = tok.token_to_id(tk.UNK), tok.token_to_id(tk.EOD)
    for split in ("val", "test"):
        ids = tk.load_tokens(ctx.out / f"{split}.tokens.pt")
        assert ids.tolist() == [unk] * 50 + [eod] and metrics[f"{split}_tokens"] == 51
    assert metrics["train_tokens"] == 3 * 4
