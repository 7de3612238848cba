"""Progress that reads well where it lands: a tqdm bar on a terminal, and in a log file (stderr
not a TTY, as under snakemake or dvc) one plain newline-terminated line every ``total / LOG_LINES``
items instead of tqdm's carriage-return frames, which a log keeps as one endless line."""

from __future__ import annotations

import sys
import time
from collections.abc import Iterable

from tqdm.auto import tqdm

LOG_LINES = 20  # progress lines a run writes to a log file (plus the last item's)


class LineProgress:
    """``desc: i/total unit, key=value…, t s`` every ``every`` items and at the last, with what
    ``set_postfix`` last gave; iterated, or counted with ``update`` (tqdm's interface)."""

    def __init__(self, total: int, desc: str, stream, every: int, iterable: Iterable | None = None, unit="steps"):
        self.total, self.desc, self.stream, self.every, self.unit = total, desc, stream, every, unit
        self.iterable, self.done, self.postfix, self.t0 = iterable, 0, {}, time.perf_counter()

    def set_postfix(self, ordered_dict: dict | None = None, **kwargs) -> None:
        self.postfix = {**(ordered_dict or {}), **kwargs}

    def update(self, n: int = 1) -> None:
        before, self.done = self.done, self.done + n
        if self.done // self.every > before // self.every or self.done == self.total:
            extra = "".join(f", {k}={v}" for k, v in self.postfix.items())
            elapsed = time.perf_counter() - self.t0
            self.stream.write(f"{self.desc}: {self.done}/{self.total} {self.unit}{extra}, {elapsed:.1f} s\n")
            self.stream.flush()

    def __iter__(self):
        for item in self.iterable:
            yield item  # the loop body runs here, so the line shows this item's postfix
            self.update()

    def close(self) -> None:
        pass

    def __enter__(self):
        return self

    def __exit__(self, *exc) -> None:
        self.close()


def progress_bar(total: int, desc: str, enabled: bool = True, stream=None, iterate: bool = True, unit="steps"):
    """Progress over ``total`` items on ``stream`` (default stderr): iterating ``range(total)``
    (``iterate``) or counted by ``update``; tqdm on a terminal, else ``LineProgress``; silent
    when not ``enabled``."""
    stream = sys.stderr if stream is None else stream
    items = range(total) if iterate else None
    if not enabled or stream.isatty():
        return tqdm(items, total=total, desc=desc, disable=not enabled, leave=False, file=stream, unit=unit)
    return LineProgress(total, desc, stream, max(1, total // LOG_LINES), items, unit)
