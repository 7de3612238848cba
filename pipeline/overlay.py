"""A config that names only some studies, laid over a params file: `ablate use` of such a config
replaces those studies and keeps every other one as it is, byte for byte.

Done on the text, not on parsed YAML, so the comments that explain each study's choices survive
on both sides. A study's block is its ``  <name>:`` line under ``studies:`` and every line up to
the next study's (comments between two studies stay with the one before).
"""

from __future__ import annotations

import re

STUDY_LINE = re.compile(r"^  ([A-Za-z_][\w-]*):")


def study_blocks(text: str) -> tuple[list[str], dict[str, tuple[int, int]]]:
    """The lines of ``text`` and, per study, the [start, end) line range of its block."""
    lines = text.splitlines(keepends=True)
    try:
        first = next(i for i, line in enumerate(lines) if line.rstrip() == "studies:") + 1
    except StopIteration:
        raise ValueError("no top-level 'studies:' line") from None
    starts = [i for i in range(first, len(lines)) if STUDY_LINE.match(lines[i])]
    ends = [*starts[1:], len(lines)]
    return lines, {STUDY_LINE.match(lines[i]).group(1): (i, j) for i, j in zip(starts, ends, strict=True)}


def overlay(base: str, config: str) -> str:
    """``base`` with each study ``config`` defines replaced by ``config``'s block of it (a study
    ``base`` lacks is appended); every other line of ``base`` unchanged."""
    lines, blocks = study_blocks(base)
    theirs, their_blocks = study_blocks(config)
    for name, (start, end) in sorted(blocks.items(), key=lambda kv: -kv[1][0]):  # from the end: ranges stay valid
        if name in their_blocks:
            i, j = their_blocks[name]
            lines[start:end] = theirs[i:j]
    if lines and not lines[-1].endswith("\n"):
        lines[-1] += "\n"
    for name, (i, j) in their_blocks.items():
        if name not in blocks:
            lines += theirs[i:j]
    return "".join(lines)
