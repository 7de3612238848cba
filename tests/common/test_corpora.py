"""Corpora: pydoc splits by whole topics; WikiText parquet loads into articles per split."""

from pydoc_data.topics import topics

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


def test_pydoc_splits_are_disjoint_and_cover_every_topic_text():
    splits = corpora.pydoc_corpus(val_fraction=0.1, seed=0)
    assert set(splits) == {"train", "val"}
    train, val = splits["train"], splits["val"]
    assert len(val) == round(0.1 * len(train + val))
    assert not set(train) & set(val)
    assert len(set(train + val)) == len(train + val)  # alias topics with equal text kept once
    assert set(train + val) == set(topics.values())


def test_pydoc_split_is_deterministic_for_a_seed_and_differs_across_seeds():
    a = corpora.pydoc_corpus(val_fraction=0.2, seed=1)
    assert a == corpora.pydoc_corpus(val_fraction=0.2, seed=1)
    assert a["val"] != corpora.pydoc_corpus(val_fraction=0.2, seed=2)["val"]


def test_pydoc_documents_keep_sorted_topic_order():
    splits = corpora.pydoc_corpus(val_fraction=0.0, seed=0)
    assert splits["val"] == []
    assert splits["train"] == list(dict.fromkeys(topics[k] for k in sorted(topics)))


def test_pydoc_source_file_is_the_topics_module():
    path = corpora.pydoc_source_file()
    assert path.name == "topics.py" and path.is_file()


def test_split_documents_rejects_a_fraction_outside_zero_one():
    with pytest.raises(ValueError, match="val_fraction"):
        corpora.split_documents(["a", "b"], val_fraction=1.0, seed=0)


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


def test_load_corpus_parquet_without_validation_carves_val_from_train(tmp_path):
    files = _write_wikitext(tmp_path, {"train": _ARTICLE_A + _ARTICLE_B + _ARTICLE_C})
    splits = corpora.load_corpus("parquet", val_fraction=0.34, seed=0, data_files=files, cache_dir=str(tmp_path / "hf"))
    assert set(splits) == {"train", "val"}
    assert len(splits["train"]) == 2 and len(splits["val"]) == 1


def test_load_corpus_unknown_name_lists_the_allowed_names():
    with pytest.raises(ValueError, match="pydoc, wikitext2, wikitext103, parquet"):
        corpora.load_corpus("c4", val_fraction=0.1, seed=0)


def test_wikitext_offline_without_cache_fails_fast_and_suggests_alternatives(tmp_path):
    with pytest.raises(RuntimeError, match="pydoc.*parquet"):
        corpora.load_corpus("wikitext2", val_fraction=0.1, seed=0, offline=True, cache_dir=str(tmp_path))
