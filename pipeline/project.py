"""Which project a command acts on: the one it is run in, like git and dvc.

The root is the nearest directory, from the working directory upward, holding a
``params.yaml`` (``ABLATE_PROJECT`` overrides the search). Code digests, stage imports,
artifacts/, configs/ and dvc.yaml all come from that root, never from the checkout the
``ablate`` command was installed from.
"""

from __future__ import annotations

import os
import sys
from pathlib import Path

MARKER = "params.yaml"


class NotAProject(RuntimeError):
    """Run outside any ablate project."""


def _search(cwd: str, override: str | None) -> Path:
    if override:
        root = Path(override).resolve()
        if not (root / MARKER).is_file():
            raise NotAProject(f"ABLATE_PROJECT={override} is not an ablate project: it has no {MARKER}")
        return root
    start = Path(cwd).resolve()
    for directory in (start, *start.parents):
        if (directory / MARKER).is_file():
            return directory
    raise NotAProject(f"not inside an ablate project: no {MARKER} in {start} or any parent")


_found: dict[tuple[str, str | None], Path] = {}


def root() -> Path:
    """The project root for the current working directory (memoised per directory)."""
    key = (os.getcwd(), os.environ.get("ABLATE_PROJECT"))
    if key not in _found:
        _found[key] = _search(*key)
    return _found[key]


def activate() -> Path:
    """Find the root and put it first on sys.path, so ``stages`` and ``studies`` (and the
    project's own ``pipeline``, when it ships one and it is not imported yet) load from it."""
    found = root()
    if str(found) not in sys.path[:1]:
        sys.path.insert(0, str(found))
    return found
