"""What DVC's own viewers show of each study's report: ``dvc metrics show``, ``dvc plots show``,
``dvc exp show`` (Snakemake's ``--report`` reads the report directory itself: workflow/rules).

Every study-level (gather) stage gets a ``metrics.json`` beside its tables: the headline numbers
its run returned (also in meta.json, among provenance DVC should not list as metrics). A report
module says which of its files are plots with a module-level ``VIEWS``: file names in which
``{key}`` stands for a param the report reads, so dvc.yaml spells them as interpolations of
params.yaml and editing e.g. ``report_metric`` needs no regeneration.
"""

from __future__ import annotations

import importlib
import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

METRICS = "metrics.json"
_KEY = re.compile(r"\{(\w+)\}")


@dataclass(frozen=True)
class Views:
    """images: PNG files every run of the report writes; bars: (CSV, label column, value column)
    drawn by DVC as horizontal bars, one per row."""

    images: tuple[str, ...] = ()
    bars: tuple[tuple[str, str, str], ...] = ()


def write_metrics(out: Path, metrics: dict[str, Any]) -> None:
    """The report's headline numbers as ``metrics.json`` (scalars only: DVC shows nothing else)."""
    scalars = {k: v for k, v in metrics.items() if v is None or isinstance(v, (bool, int, float, str))}
    (out / METRICS).write_text(json.dumps(scalars, indent=1) + "\n")


def _dvc_name(template: str, study: str, reads: tuple[str, ...]) -> str:
    """``{report_metric}.png`` → ``${studies.<study>.params.report_metric}.png`` (a read key only)."""

    def param(match: re.Match) -> str:
        if match[1] not in reads:
            raise ValueError(f"report view {template!r} of study {study}: {{{match[1]}}} is not a key the report reads")
        return f"${{studies.{study}.params.{match[1]}}}"

    return _KEY.sub(param, template)


def dvc_sections(plan) -> dict[str, list]:
    """dvc.yaml's top-level ``metrics`` and ``plots``: every gather stage's metrics.json, and the
    images and bar charts its module's ``VIEWS`` names, titled ``<study>: <file>``."""
    metrics, plots = [], []
    for study in plan.studies.values():
        for module, spec in plan.stages[study.kind].values():
            if not spec.gather:
                continue
            out = f"artifacts/reports/{study.name}"
            metrics.append(f"{out}/{METRICS}")
            views = getattr(importlib.import_module(module), "VIEWS", Views())
            plots += [f"{out}/{_dvc_name(image, study.name, spec.reads)}" for image in views.images]
            for csv, label, value in views.bars:
                plots.append(
                    {
                        f"{study.name}: {csv}": {
                            "template": "bar_horizontal",
                            "x": _dvc_name(value, study.name, spec.reads),
                            "y": {f"{out}/{csv}": label},
                        }
                    }
                )
    return {"metrics": metrics, "plots": plots}
