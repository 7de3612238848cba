"""The morning-after page: every study's progress, cost and headline results in one place.

``ablate report`` writes artifacts/reports/index.md and prints its summary: per study the
node counts by state (pipeline.status), the job time spent, an estimate of the job time left,
the top rows of the headline table, and links to every table and plot its report stage wrote.
A study whose report workspace is not the plan's current report, or that has cells not yet
done, is marked stale/partial, naming the missing cells: its tables are older than the plan.

Job time is what builds cost, serially: every ``computed`` record of builds.jsonl (superseded
computes too, they were paid for), the wall time of each recorded failure, and for a done node
no record here computed (restored from a shared store) its meta.json timing. The time left is
the pending, stale and running nodes the store lacks, each at the mean recorded wall time of
its stage in the study, else of the stage of that name in other studies, else unknown; failed
nodes are left out: rerunning them needs a fix first.
"""

from __future__ import annotations

import json
import os
import time
from collections import Counter, defaultdict
from dataclasses import dataclass, field
from pathlib import Path
from urllib.parse import quote

from pipeline.plan import Plan
from pipeline.status import NodeState
from pipeline.store import Store, read_meta

INDEX = Path("reports") / "index.md"  # under the artifacts root
TABLES = (".md", ".csv", ".tex")
PLOTS = (".png",)
# The headline table: ``summary`` is the replicate summary ranked by report_metric (the report
# stages that read report_metric write it); else ``table``, a row per cell or group; else the
# first table by name (bench, parity: the first each of those reports writes).
HEADLINE = ("summary", "table")
TOP_ROWS, TOP_COLUMNS = 3, 8  # the report's leading columns are its metric and comparison
TO_BUILD = ("pending", "stale", "running")
FAILED = ("failed", "oom", "killed")
SHOWN_MISSING = 8  # missing cells named before "and N more"


@dataclass
class Headline:
    stem: str
    header: list[str]
    rows: list[list[str]]
    n_rows: int
    n_columns: int


@dataclass
class StudyReport:
    name: str
    counts: Counter
    spent_s: float
    left_s: float
    unknown: dict[str, int]  # stage without any timing record → nodes of it left to build
    report_state: str  # the report node's status state
    report_detail: str  # its status detail (for a stale one: the fingerprint held and the one wanted)
    missing: dict[str, list[str]]  # cell → "stage state" of each of its nodes not done
    failures: list[str]  # "label: state, why" of each failed, oom or killed node
    tables: dict[str, list[str]] = field(default_factory=dict)  # stem → extensions present
    plots: list[str] = field(default_factory=list)
    headline: Headline | None = None
    sort_note: str = ""

    @property
    def total(self) -> int:
        return sum(self.counts.values())

    @property
    def partial(self) -> bool:
        return self.report_state != "done" or bool(self.missing)


def _number(value) -> float | None:
    return float(value) if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def computed_records(artifacts: Path) -> list[dict]:
    """The ``computed`` lines of builds.jsonl with a wall time; a line cut short by a crash is skipped."""
    try:
        lines = (artifacts / ".logs" / "builds.jsonl").read_text().splitlines()
    except FileNotFoundError:
        return []
    records = []
    for line in lines:
        try:
            r = json.loads(line)
        except json.JSONDecodeError:
            continue
        if isinstance(r, dict) and r.get("action") == "computed" and _number(r.get("wall_s")) is not None:
            records.append(r)
    return records


def _timings(states: list[NodeState], store: Store, artifacts: Path):
    """Seconds spent per study, and recorded wall times per (study, stage)."""
    spent: Counter = Counter()
    samples: dict[tuple[str, str], list[float]] = defaultdict(list)
    records = computed_records(artifacts)
    for r in records:
        study = str(r.get("node", "")).split("/", 1)[0]
        spent[study] += r["wall_s"]
        samples[study, r.get("stage")].append(float(r["wall_s"]))
    logged = {r.get("fingerprint") for r in records}
    for s in states:
        node = s.node
        if s.state == "done" and node.fingerprint not in logged:  # computed elsewhere, restored here
            wall = _number(((read_meta(node.workspace()) or {}).get("timing") or {}).get("wall_s"))
            if wall is not None:
                spent[node.study] += wall
                samples[node.study, node.stage].append(wall)
        elif s.state in FAILED:
            wall = _number((store.failure(node.fingerprint) or {}).get("wall_s"))
            spent[node.study] += wall or 0.0
    return spent, samples


def _mean(values: list[float]) -> float | None:
    return sum(values) / len(values) if values else None


def _report_files(directory: Path) -> tuple[dict[str, list[str]], list[str]]:
    """The report workspace's tables (stem → extensions, in TABLES order) and plots, by name."""
    try:
        names = sorted(os.listdir(directory))
    except (FileNotFoundError, NotADirectoryError):
        return {}, []
    tables: dict[str, list[str]] = {}
    for name in names:
        stem, ext = os.path.splitext(name)
        if ext in TABLES:
            tables.setdefault(stem, []).append(ext)
    for exts in tables.values():
        exts.sort(key=TABLES.index)
    return tables, [n for n in names if os.path.splitext(n)[1] in PLOTS]


def headline_stem(tables: dict[str, list[str]]) -> str | None:
    """Which markdown table is the study's headline (see HEADLINE)."""
    with_md = [stem for stem, exts in tables.items() if ".md" in exts]
    return next((s for s in HEADLINE if s in with_md), min(with_md, default=None))


def parse_markdown_table(text: str) -> tuple[list[str], list[list[str]]]:
    """Header and rows of a pipe table (what studies.report.write_table writes as .md)."""
    lines = [ln.strip() for ln in text.splitlines() if ln.strip().startswith("|")]
    cells = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    rows = [r for r in cells if not all(set(c) <= set("-: ") for c in r)]  # drop the |---| rule
    return (rows[0], rows[1:]) if rows else ([], [])


def _headline(directory: Path, stem: str) -> Headline | None:
    try:
        header, rows = parse_markdown_table((directory / f"{stem}.md").read_text())
    except OSError:
        return None
    if not header:
        return None
    return Headline(stem, header[:TOP_COLUMNS], [r[:TOP_COLUMNS] for r in rows[:TOP_ROWS]], len(rows), len(header))


def first_line(text: str, limit: int = 200) -> str:
    """A failure's reason as one line of a page (a stage's error can span a traceback's worth)."""
    line = text.strip().splitlines()[0] if text.strip() else ""
    return line if len(line) <= limit else line[: limit - 1] + "…"


def summarize(plan: Plan, states: list[NodeState], store: Store, artifacts: Path) -> list[StudyReport]:
    """One StudyReport per planned study, from the node states and the recorded timings."""
    spent, samples = _timings(states, store, artifacts)
    by_stage: dict[str, list[float]] = defaultdict(list)
    for (_, stage), values in samples.items():
        by_stage[stage] += values
    stored = set(store.fingerprints())
    by_study: dict[str, list[NodeState]] = defaultdict(list)
    for s in states:
        by_study[s.node.study].append(s)
    reports = []
    for study in plan.studies.values():
        mine = by_study[study.name]
        left, unknown = 0.0, Counter()
        for s in mine:
            if s.state not in TO_BUILD or s.node.fingerprint in stored:  # in the store: restores, no compute
                continue
            mean = _mean(samples[study.name, s.node.stage])
            mean = _mean(by_stage[s.node.stage]) if mean is None else mean
            if mean is None:
                unknown[s.node.stage] += 1
            else:
                left += mean
        missing: dict[str, list[str]] = {c.name: [] for c in study.cells}
        for s in mine:
            if not s.node.spec.gather and s.state != "done":
                for cell in s.node.cells:
                    missing[cell].append(f"{s.node.stage} {s.state}")
        report = next(s for s in mine if s.node.spec.gather)  # every recipe ends in one report stage
        directory = report.node.workspace(artifacts)
        tables, plots = _report_files(directory)
        stem = headline_stem(tables)
        metric = study.params.get("report_metric")
        reports.append(
            StudyReport(
                name=study.name,
                counts=Counter(s.state for s in mine),
                spent_s=spent[study.name],
                left_s=left,
                unknown=dict(unknown),
                report_state=report.state,
                report_detail=report.detail,
                missing={c: m for c, m in missing.items() if m},
                failures=[f"{s.node.label}: {s.state}, {first_line(s.detail)}" for s in mine if s.state in FAILED],
                tables=tables,
                plots=plots,
                headline=_headline(directory, stem) if stem else None,
                sort_note=f"ranked by {metric}" if stem == "summary" and metric else "",
            )
        )
    return reports


def duration(seconds: float) -> str:
    """Job time in the unit a reader takes in at a glance."""
    if seconds < 60:
        return f"{seconds:.1f} s"
    if seconds < 6000:
        return f"{seconds / 60:.1f} min"
    return f"{seconds / 3600:.1f} h"


def eta(left_s: float, unknown: dict[str, int]) -> str:
    """The job time left: a number, a lower bound when some stage has no timing yet, or unknown."""
    if not unknown:
        return duration(left_s)
    stages = ", ".join(sorted(unknown))
    n = sum(unknown.values())
    if left_s == 0:
        return f"unknown ({n} node(s) of {stages}: no timing recorded yet)"
    return f"≥ {duration(left_s)} (+ {n} node(s) of {stages}: no timing recorded yet)"


def overall_line(reports: list[StudyReport]) -> str:
    """nodes done/total, failures, job time spent and left: the page's (and terminal's) first line."""
    counts = sum((r.counts for r in reports), Counter())
    total = sum(counts.values())
    parts = [f"{counts['done']}/{total} nodes done", f"{counts['failed']} failed"]
    parts += [f"{counts[k]} {k}" for k in ("oom", "killed", "pending", "stale", "running") if counts[k]]
    unknown: Counter = Counter()
    for r in reports:
        unknown.update(r.unknown)
    parts.append(f"job time {duration(sum(r.spent_s for r in reports))}")
    parts.append(f"left {eta(sum(r.left_s for r in reports), dict(unknown))}")
    return " · ".join(parts)


def missing_text(report: StudyReport) -> str:
    """The cells not done, each with its nodes' states, the first SHOWN_MISSING of them."""
    items = [f"{cell} ({', '.join(states)})" for cell, states in report.missing.items()]
    more = len(items) - SHOWN_MISSING
    return "; ".join(items[:SHOWN_MISSING]) + (f"; and {more} more (`ablate status`)" if more > 0 else "")


def stale_text(report: StudyReport) -> str:
    """Why a study's tables do not reflect its current plan ('' when they do)."""
    if not report.partial:
        return ""
    why = {
        "pending": "the report is not built",
        "stale": f"the report was built from other params, cells or code than the plan's ({report.report_detail})",
        "running": "the report is being built",
    }.get(report.report_state, f"the report {report.report_state}" if report.report_state != "done" else "")
    parts = [why] if why else []
    if report.missing:
        parts.append(f"{len(report.missing)} cell(s) not done: {missing_text(report)}")
    reason = "tables stale/partial" if report.tables or report.plots else "no report yet"
    return f"{reason}: {'; '.join(parts)}"


def _link(name: str, target: str) -> str:
    return f"[{name}]({quote(target)})"


def render_markdown(reports: list[StudyReport], params: str, now: float | None = None) -> str:
    """index.md: the overall line, a row per study, then per study its state, headline and links."""
    stamp = time.strftime("%Y-%m-%d %H:%M UTC", time.gmtime(now))
    out = ["# Ablation report", "", f"**{overall_line(reports)}**", "", f"_{stamp}, plan from {params}_", ""]
    out += [
        "| study | done | pending | stale | failed | oom | killed | job time | left | tables |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for r in reports:
        c = r.counts
        tables = "stale/partial" if r.partial and r.tables else ("current" if r.tables else "none")
        out.append(
            f"| [{r.name}](#{r.name.lower()}) | {c['done']}/{r.total} | {c['pending']} | {c['stale']} | "
            f"{c['failed']} | {c['oom']} | {c['killed']} | {duration(r.spent_s)} | {eta(r.left_s, r.unknown)} "
            f"| {tables} |"
        )
    for r in reports:
        out += ["", f"## {r.name}", ""]
        note = stale_text(r)
        if note:
            out += [f"**{note}**", ""]
        if r.failures:
            out += [f"- {f}" for f in r.failures[:SHOWN_MISSING]]
            more = len(r.failures) - SHOWN_MISSING
            out += [f"- and {more} more (`ablate status`)"] if more > 0 else []
            out.append("")
        if r.headline:
            h = r.headline
            shown = f"top {len(h.rows)} of {h.n_rows} rows" + (
                f", first {len(h.header)} of {h.n_columns} columns" if h.n_columns > len(h.header) else ""
            )
            sort = f", {r.sort_note}" if r.sort_note else ""
            out += [f"Headline: {_link(h.stem, f'{r.name}/{h.stem}.md')} ({shown}{sort})", ""]
            out += ["| " + " | ".join(h.header) + " |", "|" + "---|" * len(h.header)]
            out += ["| " + " | ".join(row) + " |" for row in h.rows]
            out.append("")
        if r.tables:
            links = [
                f"{stem} " + " ".join(_link(ext[1:], f"{r.name}/{stem}{ext}") for ext in exts)
                for stem, exts in r.tables.items()
            ]
            out.append("Tables: " + " · ".join(links))
        if r.plots:
            out.append("Plots: " + " · ".join(_link(p, f"{r.name}/{p}") for p in r.plots))
    return "\n".join(out) + "\n"


def render_text(reports: list[StudyReport]) -> str:
    """The terminal summary: the overall line, then a line per study and what is stale in it."""
    width = max(len(r.name) for r in reports)
    lines = [overall_line(reports)]
    for r in reports:
        c = r.counts
        failures = "".join(f"  {c[k]} {k}" for k in FAILED if c[k])
        lines.append(
            f"  {r.name.ljust(width)}  {c['done']}/{r.total} done{failures}  {c['pending'] + c['stale']} to build"
            f"  job time {duration(r.spent_s)}  left {eta(r.left_s, r.unknown)}"
        )
        note = stale_text(r)
        indent = " " * (width + 4)
        if note:
            lines.append(indent + note)
        lines += [indent + f for f in r.failures[:SHOWN_MISSING]]
    return "\n".join(lines)


def write_atomic(path: Path, text: str) -> None:
    """Write by rename, so a reader (a browser refreshing it mid-sweep) never sees half a page."""
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    tmp.write_text(text)
    os.replace(tmp, path)
