"""Where a node's files live. Kept free of heavy imports: every engine job needs these paths,
and a job for an up-to-date node should cost little more than the interpreter."""

from __future__ import annotations

import os
from pathlib import Path

from pipeline import project


def artifacts_root() -> Path:
    """Where workspaces live (ABLATE_ARTIFACTS, default <project root>/artifacts)."""
    return Path(os.environ.get("ABLATE_ARTIFACTS") or project.root() / "artifacts")


def workspace_path(study: str, stage: str, slug: str, gather: bool, root: Path | None = None) -> Path:
    root = root or artifacts_root()
    return root / "reports" / study if gather else root / study / stage / slug


def fingerprint_path(study: str, stage: str, slug: str, root: Path | None = None) -> Path:
    return (root or artifacts_root()) / ".fingerprints" / study / stage / f"{slug}.fp"
