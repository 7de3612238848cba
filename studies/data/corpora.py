"""Text corpora for language modelling, each a dict of split name -> list of documents.

Two sources, one shape (``{"train": [...], "val": [...], "test": [...]?}``):

- ``pydoc``: the offline default. The Python documentation text shipped with every
  CPython (``pydoc_data.topics.topics``, topic -> text; 3.11: 79 topics, 78 distinct
  texts, 0.46 M characters). It needs no network, but it changes with the Python
  version, so a pipeline should fingerprint :func:`pydoc_source_file`. Documents are
  whole topics and the train/val split is a seeded shuffle of them, so no document
  straddles the splits.
- ``wikitext``: WikiText-2/103 through HF ``datasets``, either from the hub or from local
  parquet files in the hub's format (one column ``text``, one line per row; an article
  starts at a top-level heading line `` = Title = ``). Its splits are the published ones.

Split names are normalized to ``train``/``val``/``test``.
"""

from __future__ import annotations

import importlib.util
import random
import re
from pathlib import Path

from studies.data.hub import hub_offline

CORPORA = ("pydoc", "wikitext2", "wikitext103", "parquet")
WIKITEXT_HUB_PATH = "Salesforce/wikitext"  # the hub's home of the former "wikitext" dataset
_WIKITEXT_CONFIGS = {"wikitext2": "wikitext-2-raw-v1", "wikitext103": "wikitext-103-raw-v1"}
_SPLIT_NAMES = {
    "train": "train",
    "validation": "val",
    "valid": "val",
    "val": "val",
    "test": "test",
}
_TOP_HEADING = re.compile(r"^ = [^=].* = $")  # " = Title = ", not " = = Section = = "


def split_documents(docs: list[str], val_fraction: float, seed: int) -> dict[str, list[str]]:
    """Split whole documents into train/val by a seeded shuffle; each split keeps input order."""
    if not 0.0 <= val_fraction < 1.0:
        raise ValueError(f"val_fraction must be in [0, 1), got {val_fraction}")
    order = list(range(len(docs)))
    random.Random(seed).shuffle(order)
    n_val = round(val_fraction * len(docs))
    if val_fraction > 0 and len(docs) > 1:
        n_val = min(max(n_val, 1), len(docs) - 1)  # a non-empty val, never an empty train
    val_idx = set(order[:n_val])
    return {
        "train": [d for i, d in enumerate(docs) if i not in val_idx],
        "val": [d for i, d in enumerate(docs) if i in val_idx],
    }


def pydoc_source_file() -> Path:
    """The file the pydoc corpus is read from (fingerprint it: it differs per Python)."""
    spec = importlib.util.find_spec("pydoc_data.topics")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("pydoc_data.topics is not available in this Python")
    return Path(spec.origin)


def pydoc_corpus(val_fraction: float, seed: int) -> dict[str, list[str]]:
    """CPython's documentation topics as documents (sorted by key), split train/val by topic.

    Some topics are aliases with identical text (3.11: ``if`` and ``else``); only the first
    key's copy is kept, so the same text can never land in both splits.
    """
    from pydoc_data.topics import topics

    docs = list(dict.fromkeys(topics[key] for key in sorted(topics)))  # ordered dedup
    return split_documents(docs, val_fraction, seed)


def group_wikitext_lines(lines: list[str]) -> list[str]:
    """Join WikiText rows into articles, starting a new one at each top-level heading.

    Rows keep their text; blank rows stay blank lines. Text before the first heading is a
    document of its own; whitespace-only documents are dropped.
    """
    docs: list[str] = []
    current: list[str] = []
    for line in lines:
        line = line.rstrip("\n")  # hub rows end in "\n"; tolerate rows that do not
        if _TOP_HEADING.match(line) and current:
            docs.append("\n".join(current).strip("\n"))
            current = []
        current.append(line)
    if current:
        docs.append("\n".join(current).strip("\n"))
    return [d for d in docs if d.strip()]


def wikitext_corpus(
    name: str = "wikitext-2-raw-v1",
    data_files: dict | None = None,
    offline: bool = False,
    cache_dir: str | None = None,
) -> dict[str, list[str]]:
    """WikiText as articles per split, from the hub (``name``) or local parquet ``data_files``.

    ``data_files`` maps split name -> parquet path(s), as ``datasets.load_dataset`` takes it.
    With ``offline`` the hub is never contacted (only the local HF cache is used), so a
    machine without network fails in about a second instead of retrying for ~25 s.
    """
    import datasets

    try:
        with hub_offline(offline):
            if data_files is not None:
                ds = datasets.load_dataset("parquet", data_files=data_files, cache_dir=cache_dir)
            else:
                ds = datasets.load_dataset(WIKITEXT_HUB_PATH, name, cache_dir=cache_dir)
    except (ConnectionError, FileNotFoundError) as err:
        if data_files is not None:
            raise
        raise RuntimeError(
            f"cannot load {WIKITEXT_HUB_PATH}/{name} (hub unreachable and not cached: {err}). "
            "Use corpus 'pydoc' (offline, shipped with Python) or corpus 'parquet' with "
            "local WikiText parquet files as data_files."
        ) from err
    out: dict[str, list[str]] = {}
    for split in ds:
        if split not in _SPLIT_NAMES:
            raise ValueError(f"unexpected split {split!r}; expected one of {sorted(_SPLIT_NAMES)}")
        if "text" not in ds[split].column_names:
            raise ValueError(f"split {split!r} has no 'text' column: {ds[split].column_names}")
        out[_SPLIT_NAMES[split]] = group_wikitext_lines(ds[split]["text"])
    return out


def load_corpus(
    name: str,
    val_fraction: float,
    seed: int,
    data_files: dict | None = None,
    offline: bool = False,
    cache_dir: str | None = None,
) -> dict[str, list[str]]:
    """Load corpus ``name``; ``val_fraction`` and ``seed`` split only corpora with no val split."""
    if name == "pydoc":
        return pydoc_corpus(val_fraction, seed)
    if name in _WIKITEXT_CONFIGS:
        return wikitext_corpus(_WIKITEXT_CONFIGS[name], offline=offline, cache_dir=cache_dir)
    if name == "parquet":
        if not data_files:
            raise ValueError("corpus 'parquet' needs data_files (split name -> parquet path)")
        splits = wikitext_corpus(data_files=data_files, cache_dir=cache_dir)
        if "train" not in splits:
            raise ValueError(f"corpus 'parquet' needs a train split, got {sorted(splits)}")
        if "val" not in splits:  # carve val out of train, by whole documents
            splits.update(split_documents(splits["train"], val_fraction, seed))
        return splits
    raise ValueError(f"unknown corpus {name!r}; allowed: {', '.join(CORPORA)}")
