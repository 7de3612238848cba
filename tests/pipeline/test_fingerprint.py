import json
import math

import pytest

from pipeline.fingerprint import UnhashableValue, canonical_json, digest, node_fingerprint


def test_digest_value_is_pinned():
    # A change here orphans every store entry: bump fingerprint.FORMAT deliberately instead.
    value = {"b": [1, 2.5, "x", None, True]}
    assert canonical_json({"kind": "node", "format": 2, "value": value}) == (
        '{"format":2,"kind":"node","value":{"b":[1,2.5,"x",null,true]}}'
    )
    assert digest("node", value) == "9a7f08ff70f075f60a0e476f32a34898"  # xxh3-128 of that text


def test_canonical_json_sorts_keys_and_keeps_float_repr():
    assert canonical_json({"b": 1, "a": 0.1}) == '{"a":0.1,"b":1}'
    assert canonical_json((1, 2)) == "[1,2]"


def test_kind_tag_separates_equal_values():
    assert digest("node", {"x": 1}) != digest("module", {"x": 1})


def test_bool_and_int_hash_differently():
    assert node_fingerprint({"p": True}) != node_fingerprint({"p": 1})
    assert node_fingerprint({"p": 1}) != node_fingerprint({"p": 1.0})


@pytest.mark.parametrize("bad", [math.nan, math.inf, {1, 2}, {1: "x"}, object()])
def test_values_without_a_canonical_form_are_refused(bad):
    with pytest.raises(UnhashableValue):
        canonical_json({"v": bad})


def test_canonical_json_is_the_plain_sorted_compact_json_dump():
    """The fast validator must not change the text: tuples render as lists, keys sorted, floats as repr."""
    value = {
        "params": {"lr": 0.001, "tie": True, "name": "é", "shape": (2, 3), "none": None},
        "code": {"b": "1", "a": "2"},
    }
    plain = {
        "params": {"lr": 0.001, "tie": True, "name": "é", "shape": [2, 3], "none": None},
        "code": {"b": "1", "a": "2"},
    }
    assert canonical_json(value) == json.dumps(plain, sort_keys=True, separators=(",", ":"))


def test_unhashable_value_names_its_path():
    with pytest.raises(UnhashableValue, match=r"value\.params\.shape\[1\]: nan has no canonical form"):
        canonical_json({"params": {"shape": [1, math.nan]}})
