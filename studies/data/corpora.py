"""Text corpora for language modelling: train/val/test documents that share no text.

Two sources, one shape (``{"train": [...], "val": [...], "test": [...]}``):

- ``pydoc``: the offline default. The Python documentation text shipped with every
  CPython (``pydoc_data.topics.topics``, topic -> text; 3.11: 79 topics, 78 distinct
  texts, 0.46 M characters). It needs no network, but it changes with the Python
  version, so a pipeline should fingerprint :func:`pydoc_source_file`.
- ``wikitext``: WikiText-2/103 through HF ``datasets``, either from the hub or from local
  parquet files in the hub's format (one column ``text``, one line per row; an article
  starts at a top-level heading line `` = Title = ``), with its published splits.

Whole documents are not enough: pydoc topics contain one another (split by topic, 28 % of
validation 64-character shingles occurred in train). Every source therefore goes through
:func:`content_split`: documents linked by shared 64-character shingles stay on one side,
and what held-out text still occurs in train is cut out. Split names are normalized to
``train``/``val``/``test``.
"""

from __future__ import annotations

import importlib.util
import itertools
import random
import re
from collections import Counter
from pathlib import Path

import numpy as np

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
SPLITS = ("train", "val", "test")
SHINGLE = 64  # characters: the unit of shared text between documents
# Linked when this share of the smaller document's shingles occurs in the other. On pydoc
# (3.11) pair containment is bimodal: 22 pairs at 0.72-1.0, the next at 0.23.
LINK_CONTAINMENT = 0.5
LINK_SAMPLE = 16  # linking reads 1 shingle in this many, chosen by hash (see linked_groups)
_BASE = np.uint64(0x100000001B3)  # odd multiplier of the polynomial shingle hash


def shingle_hashes(text: str, size: int = SHINGLE) -> np.ndarray:
    """64-bit hash of every ``size``-character substring, by start position (uint64 [n − size + 1]).

    A polynomial hash over code points (Horner, wrapping mod 2^64; vectorized over positions,
    one pass per character of the shingle) then the splitmix64 finalizer, so every bit mixes.
    Deterministic across processes, unlike ``hash(str)``.
    """
    codes = np.frombuffer(text.encode("utf-32-le"), dtype=np.uint32).astype(np.uint64)
    n = len(codes) - size + 1
    h = np.zeros(max(n, 0), dtype=np.uint64)
    for j in range(size if n > 0 else 0):
        h *= _BASE
        h += codes[j : j + n]
    h ^= h >> np.uint64(30)
    h *= np.uint64(0xBF58476D1CE4E5B9)
    h ^= h >> np.uint64(27)
    h *= np.uint64(0x94D049BB133111EB)
    h ^= h >> np.uint64(31)
    return h


def _shingle_set(docs: list[str]) -> np.ndarray:
    """Sorted distinct shingle hashes of all ``docs``."""
    return np.unique(np.concatenate([shingle_hashes(d) for d in docs] or [np.empty(0, np.uint64)]))


def _present(hashes: np.ndarray, known: np.ndarray) -> np.ndarray:
    """Bool per hash: is it in the sorted array ``known``?"""
    if len(known) == 0:
        return np.zeros(len(hashes), dtype=bool)
    pos = np.minimum(np.searchsorted(known, hashes), len(known) - 1)
    return known[pos] == hashes


def overlap_share(reference: list[str], docs: list[str]) -> float:
    """Share of the shingles of ``docs`` (every start position) that occur anywhere in ``reference``."""
    hashes = np.concatenate([shingle_hashes(d) for d in docs] or [np.empty(0, np.uint64)])
    return float(_present(hashes, _shingle_set(reference)).mean()) if len(hashes) else 0.0


def linked_groups(docs: list[str]) -> list[int]:
    """Group id per document: connected components of the link graph (union-find).

    Two documents are linked when at least ``LINK_CONTAINMENT`` of the smaller one's distinct
    shingles occur in the other: one contains (most of) the other, or both share a long part.
    Pairs are counted through an index of shingle -> documents, never by comparing texts, over
    the shingles whose hash is 0 mod ``LINK_SAMPLE``: the same substrings are sampled in every
    document, so shares are estimated without bias at 1/LINK_SAMPLE of the memory (the pydoc
    groups are identical to those of all shingles).
    """
    sets = [np.unique(h[h % np.uint64(LINK_SAMPLE) == 0]) for h in map(shingle_hashes, docs)]
    hashes = np.concatenate(sets or [np.empty(0, np.uint64)])
    owner = np.repeat(np.arange(len(docs)), [len(s) for s in sets])
    order = np.argsort(hashes, kind="stable")
    hashes, owner = hashes[order], owner[order]
    starts = np.flatnonzero(np.r_[True, hashes[1:] != hashes[:-1]]) if len(hashes) else np.empty(0, int)
    ends = np.r_[starts[1:], len(hashes)]
    shared: Counter = Counter()
    for lo, hi in zip(starts[ends - starts > 1], ends[ends - starts > 1], strict=True):
        shared.update(itertools.combinations(owner[lo:hi].tolist(), 2))
    parent = list(range(len(docs)))

    def root(i: int) -> int:
        while parent[i] != i:
            parent[i] = parent[parent[i]]
            i = parent[i]
        return i

    for (a, b), n in shared.items():
        if n >= LINK_CONTAINMENT * min(len(sets[a]), len(sets[b])):
            parent[root(a)] = root(b)
    return [root(i) for i in range(len(docs))]


def uncovered_pieces(doc: str, known: np.ndarray) -> list[str]:
    """The runs of ``doc`` that no shingle in the sorted hash array ``known`` covers, as
    separate documents; runs shorter than a shingle (too short to check) are dropped."""
    hit = np.flatnonzero(_present(shingle_hashes(doc), known))
    if len(hit) == 0:
        return [doc] if len(doc) >= SHINGLE else []
    depth = np.zeros(len(doc) + 1, dtype=np.int64)
    np.add.at(depth, hit, 1)
    np.add.at(depth, hit + SHINGLE, -1)
    free = np.r_[False, np.cumsum(depth[:-1]) == 0, False]
    edges = np.flatnonzero(free[1:] != free[:-1]).reshape(-1, 2)  # [start, end) of free runs
    return [doc[a:b] for a, b in edges if b - a >= SHINGLE and doc[a:b].strip()]


def content_split(
    splits: dict[str, list[str]], val_fraction: float, test_fraction: float, seed: int
) -> dict[str, list[str]]:
    """Train/val/test documents that share no text, from a corpus's given splits.

    ``splits`` must hold ``train``; ``val`` and ``test`` are kept where given (published
    splits) and otherwise carved out of train with ``val_fraction`` / ``test_fraction`` of all
    characters. Steps:

    1. pool every distinct text; link documents that share content (:func:`linked_groups`);
    2. a group keeps to one split: the first of train, val, test that any member was given
       (a held-out article that repeats a training one moves to train);
    3. carve each missing split from whole train groups, in a seeded shuffle, while they fit
       its character budget;
    4. cut out of val and test every span that a 64-character shingle of train covers
       (:func:`uncovered_pieces`), so no held-out shingle occurs in train.

    Each split keeps input order.
    """
    if "train" not in splits or set(splits) - set(SPLITS):
        raise ValueError(f"splits must hold 'train' and only {SPLITS}, got {sorted(splits)}")
    for name, f in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
        if not 0.0 <= f < 1.0:
            raise ValueError(f"{name} must be in [0, 1), got {f}")
    if val_fraction + test_fraction >= 1.0:
        raise ValueError(f"val_fraction + test_fraction must be < 1, got {val_fraction} + {test_fraction}")
    given = {d: name for name in reversed(SPLITS) for d in splits.get(name, [])}  # train wins ties
    docs = list(dict.fromkeys(d for name in SPLITS for d in splits.get(name, [])))
    group_of = linked_groups(docs)
    groups: dict[int, list[int]] = {}
    for i, g in enumerate(group_of):
        groups.setdefault(g, []).append(i)
    side = {g: min((given[docs[i]] for i in members), key=SPLITS.index) for g, members in groups.items()}
    total = sum(map(len, docs))
    budget = {name: f * total for name, f in (("val", val_fraction), ("test", test_fraction)) if name not in splits}
    pool = sorted(g for g, s in side.items() if s == "train")
    random.Random(seed).shuffle(pool)
    for g in pool:
        size = sum(len(docs[i]) for i in groups[g])
        for name in budget:
            if size <= budget[name]:
                side[g], budget[name] = name, budget[name] - size
                break
    out = {name: [d for i, d in enumerate(docs) if side[group_of[i]] == name] for name in SPLITS}
    known = _shingle_set(out["train"])
    for name in ("val", "test"):
        out[name] = [piece for d in out[name] for piece in uncovered_pieces(d, known)]
    return out


def pydoc_source_file() -> Path:
    """The file the pydoc corpus is read from (fingerprint it: it differs per Python)."""
    spec = importlib.util.find_spec("pydoc_data.topics")
    if spec is None or spec.origin is None:
        raise FileNotFoundError("pydoc_data.topics is not available in this Python")
    return Path(spec.origin)


def pydoc_corpus(val_fraction: float, test_fraction: float, seed: int) -> dict[str, list[str]]:
    """CPython's documentation topics as documents (sorted by key), split by content.

    Some topics are aliases with identical text (3.11: ``if`` and ``else``) and many contain
    others (``function`` sits inside ``compound``): :func:`content_split` keeps each such
    group on one side.
    """
    from pydoc_data.topics import topics

    return content_split({"train": [topics[key] for key in sorted(topics)]}, val_fraction, test_fraction, seed)


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
    test_fraction: float,
    seed: int,
    data_files: dict | None = None,
    offline: bool = False,
    cache_dir: str | None = None,
) -> dict[str, list[str]]:
    """Load corpus ``name`` as content-disjoint train/val/test (:func:`content_split`); the
    fractions and ``seed`` carve only the splits a corpus does not publish."""
    if name == "pydoc":
        return pydoc_corpus(val_fraction, test_fraction, seed)
    if name in _WIKITEXT_CONFIGS:
        splits = wikitext_corpus(_WIKITEXT_CONFIGS[name], offline=offline, cache_dir=cache_dir)
    elif name == "parquet":
        if not data_files:
            raise ValueError("corpus 'parquet' needs data_files (split name -> parquet path)")
        splits = wikitext_corpus(data_files=data_files, cache_dir=cache_dir)
    else:
        raise ValueError(f"unknown corpus {name!r}; allowed: {', '.join(CORPORA)}")
    if "train" not in splits:
        raise ValueError(f"corpus {name!r} needs a train split, got {sorted(splits)}")
    return content_split(splits, val_fraction, test_fraction, seed)
