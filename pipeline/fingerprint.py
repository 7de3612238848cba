"""Canonical hashing: one xxh3-128 hex digest per node, over canonical JSON.

Every hashed structure carries a ``kind`` tag so two kinds of thing never collide.
Values that cannot be made canonical (NaN, infinities, sets, non-string keys, objects)
are refused rather than hashed ambiguously.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import xxhash

FORMAT = 2  # bump to invalidate every fingerprint (a change of what is hashed, not of code)


class UnhashableValue(TypeError):
    """A value with no single canonical JSON form."""


def _check(value: Any, where: str) -> Any:
    """Return a JSON-ready copy of ``value``; tuples become lists, anything else ambiguous raises."""
    if value is None or isinstance(value, (bool, int, str)):
        return value
    if isinstance(value, float):
        if not math.isfinite(value):
            raise UnhashableValue(f"{where}: {value!r} has no canonical form")
        return value
    if isinstance(value, (list, tuple)):
        return [_check(v, f"{where}[{i}]") for i, v in enumerate(value)]
    if isinstance(value, dict):
        out = {}
        for k, v in value.items():
            if not isinstance(k, str):
                raise UnhashableValue(f"{where}: key {k!r} is not a string")
            out[k] = _check(v, f"{where}.{k}")
        return out
    raise UnhashableValue(f"{where}: {type(value).__name__} values cannot be hashed canonically")


_PLAIN = frozenset({str, int, bool, type(None)})
_ENCODER = json.JSONEncoder(sort_keys=True, separators=(",", ":"), allow_nan=False)


def _plain(value: Any) -> bool:
    """True for values built only of exact JSON types (what params and parts are): these
    encode as they are. Anything else goes through ``_check``, which copies or names the
    offending path. Planning hashes every node, so this common case must be cheap."""
    t = type(value)
    if t in _PLAIN:
        return True
    if t is float:
        return math.isfinite(value)
    if t is dict:  # loops, not all(genexpr): this runs for every value of every node
        for k, v in value.items():
            if type(k) is not str or (type(v) is not str and not _plain(v)):
                return False
        return True
    if t is list or t is tuple:  # a tuple encodes as a list, as _check's copy would
        for v in value:
            if not _plain(v):
                return False
        return True
    return False


def canonical_json(value: Any) -> str:
    """Sorted keys, no whitespace, floats in repr: equal values give equal text."""
    return _ENCODER.encode(value if _plain(value) else _check(value, "value"))


def digest(kind: str, value: Any) -> str:
    """xxh3-128 hex digest of ``value`` tagged with ``kind``."""
    text = canonical_json({"kind": kind, "format": FORMAT, "value": value})
    return xxhash.xxh3_128_hexdigest(text.encode())


def file_digest(path: Path, chunk: int = 1 << 20) -> str:
    """xxh3-128 hex digest of a file's bytes (external inputs and store verification)."""
    h = xxhash.xxh3_128()
    with open(path, "rb") as f:
        while block := f.read(chunk):
            h.update(block)
    return h.hexdigest()


def node_fingerprint(parts: dict[str, Any]) -> str:
    """The node identity: stage, version, projected params, upstream, code, external inputs.

    Left out on purpose: library versions, host and device (recorded in meta.json for the
    audit, but a torch upgrade should not silently orphan every cached artifact).
    """
    return digest("node", parts)
