"""The docs name the tests that guard each claim: every `tests/<file>.py::<test>` they cite must
exist, so a renamed or deleted test cannot leave a claim pointing at nothing."""

import re

from pipeline.codehash import ROOT

CITED = re.compile(r"(tests/[\w/]+\.py)::(\w+)")


def test_every_test_the_docs_cite_exists():
    cited = {m.groups() for doc in ("README.md", "docs/studies.md") for m in CITED.finditer((ROOT / doc).read_text())}
    assert len(cited) >= 10  # the docs do cite tests: an empty match would prove nothing
    missing = [
        f"{path}::{name}"
        for path, name in sorted(cited)
        if not (ROOT / path).exists() or not re.search(rf"def {name}\b", (ROOT / path).read_text())
    ]
    assert not missing, missing
