"""Corpora: every source splits train/val/test by content; WikiText parquet loads into articles."""

import random
import string
from pydoc_data.topics import topics

import numpy as np
import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from studies.data import corpora

# Rows as the hub's WikiText parquet holds them: one line per row, "\n"-terminated,
# blank rows "", articles opened by " = Title = ", sections by " = = Section = = ".
_ARTICLE_A = [
    "",
    " = Alpha = \n",
    "",
    " Alpha is first . \n",
    "",
    " = = Use = = \n",
    "",
    " Used . \n",
]
_ARTICLE_B = ["", " = Beta = \n", "", " Beta is @-@ second . \n"]
_ARTICLE_C = ["", " = Gamma = \n", "", " Gamma . \n", "", " = = = Deep = = = \n", " x \n"]


def _write_wikitext(tmp_path, splits: dict[str, list[str]]) -> dict[str, str]:
    files = {}
    for split, rows in splits.items():
        path = tmp_path / f"{split}-00000-of-00001.parquet"
        pq.write_table(pa.table({"text": pa.array(rows, pa.string())}), path)
        files[split] = str(path)
    return files


def _words(n: int, seed: int) -> str:
    """n seeded pseudo-words: text that shares no 64-character run with other seeds'."""
    rng = random.Random(seed)
    return " ".join("".join(rng.choices(string.ascii_lowercase, k=rng.randint(2, 9))) for _ in range(n))


def _in_train_share(splits, name):
    return corpora.overlap_share(splits["train"], splits[name])


def test_shingle_overlap_measures_contained_text():
    """pydoc's ``function`` topic sits inside ``compound``: the measure sees it, and sees none
    of it between unrelated text."""
    assert corpora.overlap_share([topics["compound"]], [topics["function"]]) > 0.95
    assert corpora.overlap_share([_words(300, 1)], [_words(300, 2)]) == 0.0
    text = _words(100, 3)
    assert corpora.overlap_share([text], [text[:200]]) == 1.0
    assert len(corpora.shingle_hashes(text[:70])) == 70 - corpora.SHINGLE + 1
    assert len(corpora.shingle_hashes(text[:10])) == 0


def test_pydoc_val_and_test_shingles_in_train_are_at_most_one_percent():
    for seed in (0, 1, 2):
        splits = corpora.pydoc_corpus(val_fraction=0.1, test_fraction=0.1, seed=seed)
        assert set(splits) == {"train", "val", "test"}
        assert _in_train_share(splits, "val") <= 0.01 and _in_train_share(splits, "test") <= 0.01
        chars = {name: sum(map(len, docs)) for name, docs in splits.items()}
        total = sum(chars.values())
        assert 0.08 * total < chars["val"] <= 0.1 * total and 0.08 * total < chars["test"] <= 0.1 * total


def test_pydoc_keeps_containing_topics_together():
    """``function`` is 99 % inside ``compound`` and ``exceptions`` inside ``execmodel``: each
    pair is one group, so all of both texts (whole, or held-out pieces) is on one side."""
    held_out = set()
    for seed in range(6):
        splits = corpora.pydoc_corpus(val_fraction=0.1, test_fraction=0.1, seed=seed)
        for inner, outer in (("function", "compound"), ("exceptions", "execmodel")):
            sides = [{n for n, docs in splits.items() if any(d in topics[t] for d in docs)} for t in (inner, outer)]
            assert len(sides[0]) == 1 and sides[0] == sides[1], (seed, inner, outer, sides)
            held_out |= sides[0] - {"train"}
    assert held_out  # some seed holds a pair out


def test_pydoc_train_is_whole_topics_and_held_out_text_comes_from_topics():
    splits = corpora.pydoc_corpus(val_fraction=0.1, test_fraction=0.1, seed=0)
    texts = set(topics.values())
    assert all(doc in texts for doc in splits["train"])
    assert all(any(piece in t for t in texts) for piece in splits["val"] + splits["test"])


def test_pydoc_split_is_deterministic_for_a_seed_and_differs_across_seeds():
    a = corpora.pydoc_corpus(val_fraction=0.2, test_fraction=0.1, seed=1)
    assert a == corpora.pydoc_corpus(val_fraction=0.2, test_fraction=0.1, seed=1)
    assert a["val"] != corpora.pydoc_corpus(val_fraction=0.2, test_fraction=0.1, seed=2)["val"]


def test_pydoc_source_file_is_the_topics_module():
    path = corpora.pydoc_source_file()
    assert path.name == "topics.py" and path.is_file()


@pytest.mark.parametrize("val, test", [(1.0, 0.0), (-0.1, 0.1), (0.5, 0.5)])
def test_content_split_rejects_fractions_outside_zero_one(val, test):
    with pytest.raises(ValueError, match="fraction"):
        corpora.content_split({"train": ["a", "b"]}, val_fraction=val, test_fraction=test, seed=0)


def test_planted_contained_document_lands_on_its_containers_side():
    """A document made of the middle of another (its container) goes wherever the container
    goes, for every seed, including the held-out sides."""
    container = _words(400, 100)
    inner = container[500:1500]
    docs = [_words(400, i) for i in range(20)] + [container, inner]
    sides = []
    for seed in range(12):
        splits = corpora.content_split({"train": docs}, val_fraction=0.2, test_fraction=0.2, seed=seed)
        side = [name for name, d in splits.items() if container in d]
        assert len(side) == 1 and inner in splits[side[0]], seed
        sides.append(side[0])
    assert {"train", "val", "test"} <= set(sides)  # the pair does leave train


def test_text_shared_below_the_link_threshold_is_cut_out_of_held_out_documents():
    """A held-out document quoting one paragraph of a training one keeps its own text in pieces
    around the quote; the quote itself leaves the held-out side."""
    quote = _words(40, 50)
    train_doc = _words(300, 51) + " " + quote + " " + _words(300, 52)
    held = _words(200, 53) + " " + quote + " " + _words(200, 54)
    out = corpora.content_split({"train": [train_doc], "val": [held]}, val_fraction=0.0, test_fraction=0.0, seed=0)
    assert out["train"] == [train_doc]
    assert len(out["val"]) == 2 and all(quote not in p and p in held for p in out["val"])
    assert sum(map(len, out["val"])) >= len(held) - len(quote) - 2 * corpora.SHINGLE
    assert _in_train_share(out, "val") == 0.0


def test_uncovered_pieces_cuts_at_every_known_shingle():
    a, shared, b = _words(60, 60), _words(30, 61), _words(60, 62)
    known = np.unique(corpora.shingle_hashes(shared))
    assert corpora.uncovered_pieces(a + shared + b, known) == [a, b]
    assert corpora.uncovered_pieces(shared, known) == []
    assert corpora.uncovered_pieces(a, known) == [a]


def test_wikitext_parquet_groups_lines_into_articles_per_split(tmp_path):
    files = _write_wikitext(
        tmp_path,
        {"train": _ARTICLE_A + _ARTICLE_B, "validation": _ARTICLE_C, "test": _ARTICLE_B},
    )
    splits = corpora.wikitext_corpus(data_files=files, cache_dir=str(tmp_path / "hf"))
    assert set(splits) == {"train", "val", "test"}
    assert len(splits["train"]) == 2 and len(splits["val"]) == 1 and len(splits["test"]) == 1
    alpha, beta = splits["train"]
    assert alpha == " = Alpha = \n\n Alpha is first . \n\n = = Use = = \n\n Used . "
    assert beta.startswith(" = Beta = ") and "@-@" in beta
    assert " = = = Deep = = = " in splits["val"][0]  # sub-headings stay inside the article


def test_group_wikitext_lines_keeps_text_before_the_first_heading():
    docs = corpora.group_wikitext_lines(["preamble\n", "", " = T = \n", "body\n", "", ""])
    assert docs == ["preamble", " = T = \nbody"]


def _article(title: str, seed: int, body: str | None = None) -> list[str]:
    """Rows of one WikiText article: a heading, blank rows, paragraphs of seeded words."""
    body = _words(250, seed) if body is None else body
    return ["", f" = {title} = \n", "", f" {body} \n"]


def test_parquet_wikitext_splits_share_no_text_with_train(tmp_path):
    """Published splits in the real parquet format, with planted leaks: a validation article
    that repeats a training one, a test article holding a training paragraph. After loading,
    the repeat sits in train and at most 1 % of val and test shingles occur in train."""
    train_body = _words(250, 1)
    rows = {
        "train": [r for i in range(1, 6) for r in _article(f"T{i}", i)],
        "validation": _article("Copy", 0, body=train_body) + _article("V", 20) + _article("V2", 21),
        "test": _article("Quote", 0, body=_words(200, 30) + " " + _words(300, 2)[:700]) + _article("W", 31),
    }
    files = _write_wikitext(tmp_path, rows)
    splits = corpora.load_corpus("parquet", 0.1, 0.1, seed=0, data_files=files, cache_dir=str(tmp_path / "hf"))
    assert any(train_body in d for d in splits["train"]) and not any(train_body in d for d in splits["val"])
    assert len(splits["val"]) == 2 and all(d.startswith(" = V") for d in splits["val"])
    assert _in_train_share(splits, "val") <= 0.01 and _in_train_share(splits, "test") <= 0.01
    before = corpora.overlap_share(
        corpora.group_wikitext_lines(rows["train"]), corpora.group_wikitext_lines(rows["test"])
    )
    assert before > 0.1  # the planted quote was a real leak


def test_parquet_with_only_train_carves_val_and_test_by_content(tmp_path):
    container = _words(250, 40)
    rows = [r for i in range(10) for r in _article(f"A{i}", 60 + i)]
    rows += _article("Big", 0, body=container) + _article("Part", 0, body=container[100:900])
    files = _write_wikitext(tmp_path, {"train": rows})
    for seed in range(4):
        splits = corpora.load_corpus("parquet", 0.2, 0.2, seed=seed, data_files=files, cache_dir=str(tmp_path / "hf"))
        assert splits["val"] and splits["test"]
        assert _in_train_share(splits, "val") <= 0.01 and _in_train_share(splits, "test") <= 0.01
        side = [n for n, d in splits.items() if any(container in x for x in d)]
        assert len(side) == 1 and any(container[100:900] in x for x in splits[side[0]] if "Part" in x)


def test_load_corpus_unknown_name_lists_the_allowed_names():
    with pytest.raises(ValueError, match="pydoc, wikitext2, wikitext103, parquet"):
        corpora.load_corpus("c4", val_fraction=0.1, test_fraction=0.1, seed=0)


def test_wikitext_offline_without_cache_fails_fast_and_suggests_alternatives(tmp_path):
    with pytest.raises(RuntimeError, match="pydoc.*parquet"):
        corpora.load_corpus(
            "wikitext2", val_fraction=0.1, test_fraction=0.1, seed=0, offline=True, cache_dir=str(tmp_path)
        )
