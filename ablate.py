"""`ablate`: inspect and maintain the pipeline. Building is the engines' job:
`snakemake --cores 2` or `dvc repro` (see README.md)."""

from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import textwrap
from pathlib import Path

import yaml

from pipeline import device, dvcgen, paths, project, record, report_index, runner, status, sweep
from pipeline import plan as plan_mod
from pipeline.params import ParamsError, did_you_mean
from pipeline.store import Store, read_meta

CONFIGS = Path("configs")  # relative to the project root


def recipes() -> dict[str, tuple[str, ...]]:
    """The project's recipe table, imported from the project root (project.activate())."""
    from stages import RECIPES

    return RECIPES


def _plan(args) -> plan_mod.Plan:
    return plan_mod.build(args.params, recipes(), only=[args.study] if getattr(args, "study", None) else None)


def _is_projects_params(args) -> bool:
    return Path(args.params).resolve() == (project.root() / "params.yaml").resolve()


def report_cache_only(states: list[status.NodeState], store: Store) -> int:
    """--cache-only preflight: list every node a build would have to compute; 1 if any."""
    missing = status.to_compute(states, store)
    for s in missing:
        print(f"needs compute  {s.node.label}  fingerprint {s.node.fingerprint}  ({s.state})")
    print(
        f"cache-only: {len(missing)} node(s) would need compute; the store {store.root} lacks their fingerprints"
        if missing
        else f"cache-only: every node is done or restores from the store {store.root}"
    )
    return 1 if missing else 0


def cmd_status(args) -> int:
    plan, store = _plan(args), Store()
    states = status.collect(plan, store, args.study)
    if args.json:
        print(
            json.dumps(
                [
                    {
                        "node": s.node.label,
                        "state": s.state,
                        "detail": s.detail,
                        "fingerprint": s.node.fingerprint,
                        "cells": list(s.node.cells),
                    }
                    for s in states
                ],
                indent=1,
            )
        )
    else:
        print(status.render(plan, states))
    return report_cache_only(states, store) if args.cache_only else 0


def cmd_plan(args) -> int:
    plan = _plan(args)
    for node in plan.nodes.values():
        print(f"{node.fingerprint[:12]}  {node.label}  ({len(node.cells)} cells)  → {node.workspace()}")
    print(f"{len(plan.nodes)} nodes, {sum(len(s.cells) for s in plan.studies.values())} cells")
    return 0


class UsageError(Exception):
    """A command given wrong arguments: reported as one line, never a traceback."""


def node_of(plan: plan_mod.Plan, spec: str) -> plan_mod.Node:
    """The plan's node named STUDY/STAGE/SLUG; a partial name lists the nodes it could mean."""
    parts = spec.split("/")
    labels = [n.label for n in plan.nodes.values()]
    if len(parts) == 3 and all(parts):
        if tuple(parts) in plan.nodes:
            return plan.node(*parts)
        raise UsageError(f"no node {spec} in the plan{did_you_mean(spec, labels)}; `ablate plan` lists them")
    under = sorted((label for label in labels if label.startswith(spec.rstrip("/") + "/")), key=len)
    if under:
        more = f" or {len(under) - 3} more (`ablate plan` lists them)" if len(under) > 3 else ""
        hint = "; did you mean " + ", ".join(under[:3]) + more
    else:
        hint = did_you_mean(spec, labels).replace(" (", "; ", 1).rstrip(")")
    raise UsageError(f"{spec!r} is not a node: expected STUDY/STAGE/SLUG, e.g. ska_lm/tokenize/base{hint}")


def cmd_why(args) -> int:
    """Which fingerprint parts differ between the workspace artifact and the plan, naming each
    upstream node that moved and what moved in it."""
    plan = _plan(argparse.Namespace(params=args.params, study=None))
    print("\n".join(status.why(plan, node_of(plan, args.node), Store())))
    return 0


def cmd_check(args) -> int:
    plan = _plan(args)
    print(f"{args.params}: valid ({len(plan.nodes)} nodes)")
    if _is_projects_params(args) and not dvcgen.is_current(plan, project.root() / "dvc.yaml"):
        print("dvc.yaml no longer matches the studies' structure: run `ablate dvc-yaml --write`")
        return 1
    if args.cache_only:
        store = Store()
        return report_cache_only(status.collect(plan, store), store)
    return 0


def study_names(path: Path) -> list[str]:
    """The study names a params file defines, in file order (no validation)."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as e:
        raise ParamsError(str(path), f"cannot read: {e}") from None
    return list((raw.get("studies") or {}) if isinstance(raw, dict) else {})


DEFAULT = "default"  # `ablate use default`: the project's params.yaml as committed (git HEAD)


def config_bytes(name: str) -> tuple[bytes, str]:
    """The text of config ``name`` and where it came from: configs/<name>.yaml, or for
    ``default`` params.yaml as the last commit holds it (what a fresh clone has)."""
    root, configs = project.root(), project.root() / CONFIGS
    if name == DEFAULT:
        if (configs / f"{DEFAULT}.yaml").exists():
            raise ParamsError(
                str(configs / f"{DEFAULT}.yaml"), f"{DEFAULT!r} names params.yaml as committed: rename it"
            )
        try:
            proc = subprocess.run(["git", "show", "HEAD:./params.yaml"], cwd=root, capture_output=True, check=False)
        except OSError as e:
            proc = subprocess.CompletedProcess([], 1, b"", str(e).encode())
        if proc.returncode:
            why = (proc.stderr.decode(errors="replace").strip().splitlines() or ["git failed"])[0]
            raise ParamsError(
                DEFAULT, f"is params.yaml as committed (git show HEAD:./params.yaml), which failed: {why}"
            )
        return proc.stdout, "params.yaml as committed (git HEAD)"
    source = configs / f"{name}.yaml"
    if not source.exists():
        names = ", ".join([DEFAULT, *(p.stem for p in sorted(configs.glob("*.yaml")))])
        raise ParamsError(str(source), f"no such config; available: {names}")
    return source.read_bytes(), str(source.relative_to(root) if source.is_relative_to(root) else source)


def cmd_use(args) -> int:
    """Replace the params file with a config, then regenerate dvc.yaml for its structure, so
    `ablate check` passes after any switch and `ablate use default` restores the start byte for
    byte. A config that names only some of the params file's studies (e.g. bridge_pretrained)
    is laid over it: those studies replaced, every other one kept as it is (pipeline.overlay),
    so a switch never drops a study. The replaced file is kept in artifacts/ (ignored)."""
    from pipeline.overlay import overlay

    text, source = config_bytes(args.name)
    target = Path(args.params)
    with tempfile.TemporaryDirectory() as tmp:
        candidate = Path(tmp) / "params.yaml"
        candidate.write_bytes(text)
        kept = [s for s in study_names(target) if s not in study_names(candidate)]
        if kept:
            text = overlay(target.read_text(), text.decode()).encode()
            candidate.write_bytes(text)
        if target.read_bytes() != text:
            plan_mod.build(candidate, recipes())  # validate before touching the params file
    if target.read_bytes() == text:
        print(f"{target.name} already holds {source}")
    else:
        backup = paths.artifacts_root() / f"{target.name}.bak"
        backup.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(target, backup)
        target.write_bytes(text)
        print(f"{target.name} ← {source} (the file it replaced is kept as {backup})")
        if kept:
            print(f"  {len(kept)} studies it does not name kept as they were: {', '.join(kept)}")
    if _is_projects_params(args):
        plan, dvc_yaml = _plan(args), project.root() / "dvc.yaml"
        if not dvcgen.is_current(plan, dvc_yaml):
            dvc_yaml.write_text(dvcgen.render(plan))
            print("dvc.yaml regenerated for the new structure")
    return 0


def cmd_fingerprints(args) -> int:
    written = _plan(args).write_fingerprint_files()
    print(f"{written} fingerprint files changed")
    return 0


def cmd_dvc_yaml(args) -> int:
    text = dvcgen.render(_plan(args))
    if args.write:
        (project.root() / "dvc.yaml").write_text(text)
        print("wrote dvc.yaml")
    else:
        print(text, end="")
    return 0


def cmd_verify(args) -> int:
    store = Store()
    problems = store.verify(fix=args.fix)
    for fp, problem in problems:
        print(f"{fp}: {problem}" + ("  (dropped)" if args.fix else ""))
    print(f"{len(store.fingerprints())} entries sound, {len(problems)} corrupt")
    return 1 if problems and not args.fix else 0


def cmd_gc(args) -> int:
    """Keep what the current plan or any workspace here references; drop the rest."""
    plan = _plan(args)
    keep = {n.fingerprint for n in plan.nodes.values()}
    root = paths.artifacts_root()
    metas = [*root.glob("*/*/*/meta.json"), *root.glob("reports/*/meta.json")]  # node and report workspaces
    keep |= {m["fingerprint"] for p in metas if (m := read_meta(p.parent)) and "fingerprint" in m}
    gone = Store().gc(keep, dry_run=not args.yes)
    for item in gone:
        print(("removed " if args.yes else "would remove ") + item)
    print(f"{len(gone)} unreferenced" + ("" if args.yes else "; run `ablate gc --yes` to remove them"))
    return 0


def cmd_report(args) -> int:
    """Write artifacts/reports/index.md over every study and print its summary (of STUDY only,
    if named). With nothing built yet there is no page to write: exit 1, so a script that goes
    on to read or mail the page (`ablate report && …`) stops instead of sending nothing."""
    known = study_names(Path(args.params))
    for name in args.studies:
        if name not in known:
            raise UsageError(f"unknown study {name!r}{did_you_mean(name, known)}; defined: {', '.join(known)}")
    plan, store, artifacts = _plan(argparse.Namespace(params=args.params, study=None)), Store(), paths.artifacts_root()
    states = status.collect(plan, store)
    if all(s.state == "pending" for s in states):
        print(
            f"nothing built yet in {artifacts}: no report to write. Build first with `snakemake --cores 2` "
            "(or `make run`, which also sets up the venv; `dvc repro` works too), then run `ablate report` again."
        )
        return 1
    reports = report_index.summarize(plan, states, store, artifacts)
    index = artifacts / report_index.INDEX
    params = Path(args.params).resolve()
    shown_params = params.relative_to(project.root()) if params.is_relative_to(project.root()) else params
    report_index.write_atomic(index, report_index.render_markdown(reports, str(shown_params)))
    print(report_index.render_text([r for r in reports if not args.studies or r.name in args.studies]))
    print(f"wrote {index}")
    return 0


def cmd_sweep(args) -> int:
    """Write a W&B grid sweep over every cell of a study (grid and named), its metric named as
    `ablate cell` logs it and its goal the study's report_goal; the YAML's header and the printed
    lines say what it optimises and which cells it runs."""
    from studies.report import better_of  # the direction the reports mark the best by, from a metric's name

    plan = _plan(args)
    study = plan.studies[args.study]
    metric, goal = sweep.target(plan, study, args.metric, args.goal, better_of)
    config = sweep.sweep_config(study, metric, goal)
    named = [c.name for c in study.cells if c.named]
    stage, _, key = metric.partition("/")
    declared = key == study.params.get("report_metric") and "report_goal" in study.params
    source = "--goal" if args.goal else "report_goal" if declared else "the metric's name"
    lines = [
        f"W&B grid sweep over {args.study}: {len(study.cells)} runs, one per cell: "
        f"{len(study.cells) - len(named)} grid cells and {len(named)} named" + (":" if named else ""),
        *textwrap.wrap(", ".join(named), 100, initial_indent="  ", subsequent_indent="  "),
        f"metric: {metric}, "
        + (
            f"as given (the {stage} stage must log {key})"
            if args.metric
            else f"the {key} `ablate cell` logs from {stage}"
        )
        + f"; goal: {goal} (from {source})",
    ]
    out = Path(args.out or project.root() / "sweeps" / f"{args.study}.yaml")
    out.parent.mkdir(parents=True, exist_ok=True)
    header = [*lines, f"Run: wandb sweep {out.name}, then wandb agent <sweep id>"]
    out.write_text("".join(f"# {line}\n" for line in header) + yaml.safe_dump(config, sort_keys=False))
    print("\n".join(lines))
    print(f"wrote {out}")
    return 0


def cell_values(args) -> dict[str, str]:
    """``--axis=value`` / ``--cell=NAME`` flags as a dict; -h/--help prints the command's help."""
    if any(item in ("-h", "--help") for item in args.values):
        args.cell_parser.print_help()
        raise SystemExit(0)
    values = {}
    for item in args.values:
        key, eq, value = item.removeprefix("--").partition("=")
        if not item.startswith("--") or not eq or not key:
            args.cell_parser.error(f"{item!r}: expected --AXIS=VALUE for every grid axis, or --cell=NAME")
        values[key] = value
    if not values:
        args.cell_parser.error("name the cell: --AXIS=VALUE for every grid axis, or --cell=NAME")
    return values


def require_wandb() -> None:
    """W&B logging is the command's last step: a missing wandb fails here, before any compute."""
    if os.environ.get("WANDB_MODE") == "disabled":
        return
    try:
        import wandb  # noqa: F401
    except ImportError as e:
        raise UsageError(
            f"cannot import wandb ({e}): install it (pip install wandb), or set WANDB_MODE=disabled "
            "to build the cell and print its metrics without logging them"
        ) from None


def cmd_cell(args) -> int:
    """Build one cell's nodes into the store (store hits or computes), then log its metrics and
    figures (training curves, SKA attention maps: studies.figures) to W&B.

    The workspaces are left to the engines, which track them through the fingerprint files
    (Snakemake by their content, DVC by dvc.lock): a result written there behind their back,
    under params.yaml as it was then, would outlive a later edit of params.yaml unseen. The next
    engine run restores the cell's nodes from the store, without compute."""
    values = cell_values(args)
    plan = _plan(args)
    study = plan.studies[args.study]
    cell = sweep.cell_from_args(study, values)
    require_wandb()
    store = Store()
    for stage in sweep.cell_stages(plan, study, cell.name):
        node = plan.by_cell[study.name, cell.name, stage]
        code = runner.build(record.of_node(plan, node), store, workspace=False)
        if code:
            return code
    metrics = sweep.cell_metrics(plan, study.name, cell.name, store)
    if os.environ.get("WANDB_MODE") != "disabled":
        from studies.figures import cell_figures

        nodes = {s: plan.by_cell[study.name, cell.name, s] for s in sweep.cell_stages(plan, study, cell.name)}
        dirs = {s: store.entry(node.fingerprint) for s, node in nodes.items()}
        with tempfile.TemporaryDirectory() as tmp:  # W&B copies each image into its run
            figures = cell_figures(study.kind, dirs, cell.params, Path(tmp), f"{study.name} {cell.name}")
            print(f"W&B run: {sweep.log_to_wandb(study, cell, metrics, figures)}")
    print(json.dumps(metrics, indent=1))
    return 0


def cmd_memory_safe(args) -> int:
    """Each cell's peak memory against free memory: the peak its build recorded, else one measured
    by running its train stage for a few steps (pipeline.memory); refuse cells that cannot fit,
    and for a study with a memory model (ska_lm) suggest the largest preset that does."""
    import importlib

    from pipeline import memory
    from studies.ska.memory import MARGIN, available_bytes

    if args.device == "cuda":
        import torch

        if not torch.cuda.is_available():  # a CUDA peak is measured on a GPU, so even with --budget-gb
            raise UsageError(
                "--device cuda: no CUDA device is available here; use --device cpu, "
                "or run it on the GPU machine (--budget-gb N plans for less memory than is free)"
            )
    plan = _plan(args)
    study = plan.studies[args.study]
    if memory.TRAIN not in plan.stages[study.kind]:
        every = _plan(argparse.Namespace(params=args.params, study=None))
        trained = [s.name for s in every.studies.values() if memory.TRAIN in every.stages[s.kind]]
        raise UsageError(f"{study.name} has no train stage to measure; studies with one: {', '.join(trained)}")
    free, where = (args.budget_gb * 2**30, "given budget") if args.budget_gb else available_bytes(args.device)
    device = "cuda" if args.device == "cuda" or where.startswith("cuda") else "cpu"
    budget = int(free * (1 - MARGIN))
    print(f"{where}: {free / 2**30:.2f} GiB; budget after a {MARGIN:.0%} margin: {budget / 2**30:.2f} GiB")
    store, peaks, refused = Store(), {}, []
    for cell in study.cells:
        node = memory.train_node(plan, study.name, cell.name)
        if node.fingerprint not in peaks:
            recorded = memory.recorded_peak_mb(node, store, device)
            how = "recorded" if recorded is not None else "probed"
            try:
                mb = recorded if recorded is not None else memory.probe_peak_mb(plan, node, store, device)
            except memory.ProbeError as e:
                print(f"ablate: error: {e}", file=sys.stderr)
                return 1
            peaks[node.fingerprint] = (mb * 2**20, how)
        need, how = peaks[node.fingerprint]
        ok = need <= budget
        refused += [] if ok else [cell.name]
        print(f"  {'fits ' if ok else 'REFUSE'} {need / 2**30:8.3f} GiB  {how:8}  {cell.name}", flush=True)
    modules = [importlib.import_module(m) for m, _ in plan.stages[study.kind].values()]
    shaper = next((m.memory_shape for m in modules if hasattr(m, "memory_shape")), None)
    if shaper is not None:
        suggest_preset(study, plan, peaks, shaper, budget)
    if refused:
        shown = ", ".join(refused[:3]) + (f" and {len(refused) - 3} more (listed above)" if len(refused) > 3 else "")
        print(f"ablate: error: {len(refused)} cell(s) cannot fit: {shown}", file=sys.stderr)
        return 1
    return 0


def suggest_preset(study, plan, peaks, shaper, budget) -> None:
    """The largest window/stride/minhash_k/router_topk whose peak fits: the study's formula, offset
    by what it leaves out (the process, the data, the allocator), measured as the largest gap
    between a cell's measured peak and its formula."""
    from pipeline import memory
    from studies.ska.memory import estimate, preset

    gaps = [
        peaks[memory.train_node(plan, study.name, c.name).fingerprint][0] - sum(estimate(shaper(c.params)).values())
        for c in study.cells
        if c.params.get("attention", "ska") == "ska"
    ]
    if not gaps:
        return
    offset = max(gaps)
    chosen = preset(shaper(study.params), budget - offset)
    if chosen is None:
        print("no window/stride/minhash_k/router_topk fits: reduce batch_size, seq_len or d_model")
        return
    parts = estimate(chosen)
    top = sorted(parts.items(), key=lambda kv: -kv[1])[:3]
    print(
        f"preset (largest bank that fits): window: {chosen.window}, stride: {chosen.stride}, "
        f"minhash_k: {chosen.minhash_k}, router_topk: {chosen.router_topk}  "
        f"(estimated {(sum(parts.values()) + offset) / 2**30:.3f} GiB: {offset / 2**30:.3f} GiB measured beyond "
        "the formula, largest formula terms " + ", ".join(f"{k} {v / 2**20:.0f} MiB" for k, v in top) + ")"
    )


CACHE_ONLY_HELP = (
    "also list every node a build would have to compute (the store lacks its fingerprint) and exit 1 if any: "
    "the preflight for building with ABLATE_CACHE_ONLY=1"
)


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="ablate", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--params", help="params file (default: the project's params.yaml)")
    sub = p.add_subparsers(dest="command", required=True, metavar="COMMAND")

    def add(name, func, help_):
        sp = sub.add_parser(name, help=help_, description=help_)
        sp.set_defaults(func=func)
        # also after the command (`ablate check --params x`); SUPPRESS keeps a value given before it
        sp.add_argument("--params", default=argparse.SUPPRESS, help="params file (also accepted before COMMAND)")
        return sp

    sp = add("status", cmd_status, "Show every cell × stage: done, pending, stale, failed, oom, killed, running.")
    sp.add_argument("--study", help="only this study")
    sp.add_argument("--json", action="store_true", help="one record per node, for scripts")
    sp.add_argument("--cache-only", action="store_true", help=CACHE_ONLY_HELP)
    sp = add("plan", cmd_plan, "List the nodes the current params produce, with fingerprints and paths.")
    sp.add_argument("--study", help="only this study")
    sp = add("why", cmd_why, "Explain why a node would rebuild: the fingerprint parts that changed.")
    sp.add_argument("node", help="study/stage/slug, e.g. ska_lm/tokenize/base")
    sp = add("check", cmd_check, "Validate params.yaml and check that dvc.yaml matches its structure.")
    sp.add_argument("--cache-only", action="store_true", help=CACHE_ONLY_HELP)
    sp = add(
        "use",
        cmd_use,
        "Switch params.yaml to a config from configs/ (e.g. `ablate use paper`) or back to the committed "
        "one (`ablate use default`), and regenerate dvc.yaml to match; the replaced file is kept as "
        "artifacts/params.yaml.bak. A config naming only some studies (`ablate use bridge_pretrained`) "
        "replaces just those and keeps the others as they are.",
    )
    sp.add_argument("name", help="config name: a file configs/<name>.yaml, or default (params.yaml at git HEAD)")
    add("fingerprints", cmd_fingerprints, "Rewrite the per-node fingerprint files that changed (dvc.yaml runs this).")
    sp = add("dvc-yaml", cmd_dvc_yaml, "Print dvc.yaml as generated from the studies' structure.")
    sp.add_argument("--write", action="store_true", help="write it to dvc.yaml")
    sp = add(
        "report",
        cmd_report,
        "Write artifacts/reports/index.md, the page to read after a sweep: per study the nodes done, "
        "pending, stale, failed, oom and killed, the job time spent and an estimate of the job time left "
        "(pending nodes × the mean recorded wall time of their stage), the headline table's top rows, and "
        "links to every table and plot; a study whose tables predate its plan is marked stale/partial with "
        "the cells missing. Prints the same summary. Exit 1 when nothing is built yet.",
    )
    sp.add_argument("studies", nargs="*", metavar="STUDY", help="print only these studies (the page covers all)")
    sp = add(
        "sweep",
        cmd_sweep,
        "Write a W&B grid sweep config (sweeps/<study>.yaml) with a run per cell of a study, grid and named.",
    )
    sp.add_argument("study")
    sp.add_argument(
        "--metric",
        help="metric to optimise, STAGE/KEY as `ablate cell` logs it (default: <last cell stage>/<report_metric>)",
    )
    sp.add_argument(
        "--goal", choices=("minimize", "maximize"), help="default: the study's report_goal, else by the metric's name"
    )
    sp.add_argument("--out", help="output path (default: sweeps/<study>.yaml)")
    sp = add(
        "cell",
        cmd_cell,
        "Build one cell, given as --cell=NAME (grid or named: what a W&B sweep agent runs) or as "
        "--axis=value for every grid axis, into the store (workspaces are the engines': their next run "
        "restores it without compute), and log its metrics to a W&B run (offline by default; "
        "WANDB_MODE=disabled logs nothing).",
    )
    sp.add_argument("study")
    sp.add_argument("values", nargs=argparse.REMAINDER, help="--cell=NAME, or --axis=value for every axis of the grid")
    sp.set_defaults(cell_parser=sp)
    sp = add(
        "memory-safe",
        cmd_memory_safe,
        "Check each cell's peak memory against free device memory: the peak its build recorded, else one "
        "measured by running its train stage for 2 steps (its upstream is built into the store first); "
        "refuse cells that cannot fit, and for ska_lm print the largest window/stride/minhash_k/router_topk "
        "that does. "
        "Build with ABLATE_MEMORY_SAFE=1 to make train stages refuse such cells before allocating.",
    )
    sp.add_argument("study")
    sp.add_argument("--device", default="auto", choices=("auto", "cpu", "cuda"))
    sp.add_argument("--budget-gb", type=float, help="pretend this much memory is free (planning for another machine)")
    sp = add("verify", cmd_verify, "Re-hash every store entry against its recorded file hashes.")
    sp.add_argument("--fix", action="store_true", help="drop corrupt entries")
    sp = add("gc", cmd_gc, "Remove store entries no current node or workspace references (dry run by default).")
    sp.add_argument("--yes", action="store_true", help="really remove them")
    return p


def main(argv: list[str] | None = None) -> int:
    """Run one command. A reader that closes the pipe early (`ablate plan | head`) ends it
    quietly, as git does, with the status a shell reports for SIGPIPE."""
    try:
        code = run(sys.argv[1:] if argv is None else argv)
        sys.stdout.flush()  # a closed pipe shows here, not at interpreter exit
        return code
    except BrokenPipeError:
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())  # nothing left to flush at exit
        return 141


def run(argv: list[str]) -> int:
    """Act on the project the command runs in. When that project ships its own ablate.py
    (a clone of this repository does), hand over to it: its CLI, pipeline and stages then
    all match the project, whatever version of ablate is installed. Outside any project,
    --help and usage mistakes are still answered; every command needs a project."""
    try:
        root = project.root()
    except project.NotAProject as e:
        parser().parse_args(argv)  # exits with help or usage when that is what argv asks
        print(f"ablate: error: {e}", file=sys.stderr)
        return 2
    own = root / "ablate.py"
    if own.is_file() and own.resolve() != Path(__file__).resolve():
        os.execv(sys.executable, [sys.executable, str(own), *argv])
    project.activate()
    args = parser().parse_args(argv)
    args.params = args.params or str(root / "params.yaml")
    if not Path(args.params).is_file():
        print(f"ablate: error: --params {args.params}: no such file", file=sys.stderr)
        return 2
    try:
        device.requested()  # a typo in ABLATE_DEVICE fails every command up front, not a build's jobs
    except ValueError as e:
        print(f"ablate: error: {e}", file=sys.stderr)
        return 2
    try:
        return args.func(args)
    except (ParamsError, UsageError) as e:
        print(f"ablate: error: {e}", file=sys.stderr)
        return 2
    except KeyError as e:
        print(f"ablate: error: {e.args[0]}", file=sys.stderr)
        return 2


if __name__ == "__main__":
    sys.exit(main())
