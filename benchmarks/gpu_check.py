"""GPU check: the numbers a lent GPU should produce first, in one markdown table, unattended.

Run: python benchmarks/gpu_check.py [--device cuda] [--budget-s 480] [--steps 20] [--out FILE] [--parts ...]
     python benchmarks/gpu_check.py --device cpu --quick      # every part at toy sizes (the test)

Parts, in this order, each in a child interpreter of its own (own timeout, own peak memory; a
crash or a hang costs that part only):

1. ``attention``: SKA triton vs python vs SDPA in bf16 at L = 1024 and 4096: the ska_bench
   stage's ``run`` at configs/paper.yaml's ska_bench shape, scope kernel; ms per fwd+bwd step
   and the peak memory growth over the timed steps (``studies.ska.bench``).
2. ``keops``: keops vs python in fp32 (keops has no bf16) at L = 1024, measured the same way.
3. ``train:<study>``: for each study of configs/paper.yaml with a train stage, the train node of
   its first cell as ``pipeline.plan`` plans it, run for ``--steps`` steps: steady steps/s (from
   the stage's history.json, leaving the first steps out) and peak memory
   (torch.cuda.max_memory_allocated; on a CPU the RSS growth during the run). Its upstream
   nodes (corpus, tokenizer, banks, images, puzzles, ...) are built by their own stages, in
   process, into a temp dir. Data volume is cut to a few batches (a step's cost does not depend
   on it), and data only the hub serves (WikiText, CIFAR-10) or a missing Sudoku CSV is
   replaced by params.yaml's offline source; the row says so.

A part that raises gives a ``FAILED: <first error line>`` row (its traceback goes to stderr)
and the next part runs; ``--budget-s`` bounds the whole run, and parts it leaves no time for
are ``SKIPPED (budget)``. Stages get ``device`` in their Context once pipeline.spec.Context has
that field; a CUDA train row whose stage left the GPU unused says so. ``--quick`` shrinks
every part to toy sizes so that a CPU runs it all in about a minute
(tests/common/test_gpu_check.py); triton rows are then SKIPPED (CUDA only).
"""

from __future__ import annotations

import argparse
import dataclasses
import datetime
import importlib
import json
import os
import shutil
import signal
import subprocess
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

PAPER = ROOT / "configs" / "paper.yaml"
PARAMS = ROOT / "params.yaml"
MIN_PART_S = 10  # no part starts with less budget than this left

# sequence lengths, warm-up and timed steps of the attention and keops rows
LENGTHS = {False: (1024, 4096), True: (64, 128)}  # keyed by --quick
BENCH_STEPS = {False: (5, 20), True: (1, 2)}
QUICK_BENCH = {"batch_size": 2, "d_model": 16, "n_heads": 2, "minhash_k": 8, "window": 8, "stride": 4}
ATTENTION = ("triton", "python", "sdpa")  # in bf16
KEOPS = ("keops", "python")  # in fp32, at the first length

# --quick: toy shapes per study, applied to the paper cell before the data cut
TINY = {"d_model": 16, "n_layers": 1, "n_heads": 2}
TEXT = {"vocab_size": 300, "seq_len": 32, "window": 8, "stride": 4, "minhash_k": 8, "batch_size": 4}
SETS = {"n_atoms": 40, "set_size": 3, "n_memory": 3, "n_queries": 1, "overlap": 2, "window": 3, "stride": 3}
HRM = {"d_ff": 32, "memory_size": 4, "H_cycles": 1, "L_cycles": 2, "T": 2, "halt_max_steps": 2}
QUICK = {
    "ska_lm": {**TINY, **TEXT},
    "ska_setrecall": {**TINY, **SETS, "minhash_k": 8, "batch_size": 4},
    "ska_vit": {**TINY, "minhash_k": 8, "batch_size": 16},
    "ska_diffusion": {**TINY, "minhash_k": 8, "T": 10, "batch_size": 16},
    "ska_text_diffusion": {**TINY, **TEXT, "d_embed": 8, "T": 10},
    "poh_injection": {"d_model": 16, "n_heads": 2, **HRM, "batch_size": 8},
    "poh_scaling": {"d_model": 16, "n_heads": 2, "maze_n": 4, "d_ff": 32, "depth": 1, "R": 2, "T": 2, "batch_size": 8},
    "ebm_sudoku": {"model_size": "cpu_small", "precision": "fp32", "batch_size": 4},
    "ebm_interp": {"model_size": "cpu_small", "precision": "fp32", "batch_size": 4},
    "bridge": {
        **dict.fromkeys(("lm_a_d_model", "lm_b_d_model", "translator_width"), 16),
        **{"lm_layers": 1, "lm_heads": 2, "lm_steps": 2, "n_soft_tokens": 4, "translator_depth": 1},
        **{"translator_heads": 2, "batch_size": 4, "eval_batch_size": 8, "max_new": 4, "warmup": 1},
    },
}
N_EVAL = 32  # val and test examples the data cut keeps


# ---------------------------------------------------------------- the parts (parent side)


@dataclasses.dataclass(frozen=True)
class Part:
    name: str  # attention | keops | train:<study>
    rows: tuple[str, ...]


def train_studies() -> list[str]:
    """Studies of the paper config whose recipe has a train stage, in file order."""
    import yaml

    from pipeline.plan import load_recipes
    from stages import RECIPES

    raw = yaml.safe_load(PAPER.read_text())["studies"]
    kinds = {name: study.get("kind", name) for name, study in raw.items()}
    recipes = load_recipes({kind: RECIPES[kind] for kind in kinds.values()})
    return [name for name, kind in kinds.items() if "train" in recipes[kind]]


def plan_parts(quick: bool, only: list[str] | None = None) -> list[Part]:
    """Every part, or those ``only`` names (``train`` names every train part)."""
    lengths = LENGTHS[quick]
    parts = [
        Part("attention", tuple(f"L={L} {b} bf16" for L in lengths for b in ATTENTION)),
        Part("keops", tuple(f"L={lengths[0]} {b} fp32" for b in KEOPS)),
        *(Part(f"train:{s}", (s,)) for s in train_studies()),
    ]
    if only is None:
        return parts

    def named(part: Part, name: str) -> bool:
        return part.name == name or part.name.startswith(f"{name}:")

    unknown = [n for n in only if not any(named(p, n) for p in parts)]
    if unknown:
        raise ValueError(f"unknown part(s) {', '.join(unknown)}; parts: train, {', '.join(p.name for p in parts)}")
    return [p for p in parts if any(named(p, n) for n in only)]


# ---------------------------------------------------------------- measuring (child side)


def first_error_line(error: BaseException) -> str:
    text = str(error).strip().splitlines()
    return f"{type(error).__name__}: {text[0] if text else ''}"[:200]


class Rows:
    """Appends a JSON line per finished row, so a part killed halfway keeps what it measured."""

    def __init__(self, path: Path, part: str):
        self.path, self.part = path, part

    def write(self, record: dict) -> None:
        with self.path.open("a") as f:
            f.write(json.dumps(record) + "\n")

    def emit(self, row: str, result: str, **numbers) -> None:
        self.write({"part": self.part, "row": row, "result": result, **numbers})

    def attempt(self, row: str, measure) -> None:
        """``measure()`` → (numbers, note); an exception becomes a FAILED row and the part goes on."""
        try:
            numbers, note = measure()
        except Exception as error:  # noqa: BLE001 - report it and continue: the point of the script
            traceback.print_exc()
            self.emit(row, f"FAILED: {first_error_line(error)}")
            return
        self.emit(row, f"ok; {note}", **numbers)


def context(**kw):
    """A stage Context; ``device`` is passed only once pipeline.spec.Context has that field."""
    from pipeline.spec import Context

    if "device" not in {f.name for f in dataclasses.fields(Context)}:
        kw.pop("device")
    return Context(**kw)


def threads() -> int:
    return len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1


def load_study(path: Path, name: str):
    from pipeline.params import load
    from stages import RECIPES

    return load(path, tuple(RECIPES), only=[name])[name]


def bench_rows(args, rows: Rows, backends: tuple[str, ...], precision: str, lengths: tuple[int, ...]) -> None:
    """The ska_bench stage's ``run`` at the paper shape (--quick: a toy one), per backend and L."""
    from pipeline.spec import Params
    from stages.ska import bench

    warmup, iters = BENCH_STEPS[args.quick]
    shape = {**load_study(PAPER, "ska_bench").params, **(QUICK_BENCH if args.quick else {})}
    for L in lengths:
        for backend in backends:
            label = f"L={L} {backend} {precision}"
            if backend == "triton" and args.device == "cpu":
                rows.emit(label, "SKIPPED: triton needs CUDA (on a CPU only its interpreter runs, too slow to time)")
                continue
            p = shape | dict(backend=backend, precision=precision, seq_len=L, scope="kernel", device=args.device)
            p |= dict(warmup=warmup, iters=iters)

            def measure(p=p):
                with tempfile.TemporaryDirectory() as out:
                    params = Params({k: p[k] for k in bench.SPEC.reads}, bench.SPEC.name)
                    ctx = context(
                        params=params,
                        out=Path(out),
                        upstream=(),
                        study="ska_bench",
                        threads=threads(),
                        device=p["device"],
                    )
                    r = bench.run(ctx)
                note = f"B {p['batch_size']}, D {p['d_model']}, {r['iters']} timed steps"
                if "S" in r:
                    note += f", {r['S']} sets (window {p['window']}, stride {p['stride']}, k {p['minhash_k']})"
                return {
                    "ms_per_step": r["ms_per_step"],
                    "steps_per_s": r["steps_per_s"],
                    "peak_mb": r["peak_mem_mb"],
                }, note

            rows.attempt(label, measure)


def offline_data(p: dict, default: dict) -> list[str]:
    """Swap, in place, data only the hub serves (or a missing local CSV) for params.yaml's offline source."""
    swaps = []
    if p.get("corpus") in ("wikitext2", "wikitext103"):
        swaps.append(("corpus", ("corpus", "corpus_dir"), "the check fetches no hub data"))
    if p.get("image_source") == "cifar10":
        swaps.append(("image_source", ("image_source",), "the check fetches no hub data"))
    if p.get("data_source") == "hub":
        keys = ("data_source", "gsm8k_file", "hotpotqa_file")
        swaps.append(("data_source", keys, "the check fetches no hub data"))
    if p.get("lm_source") == "hub":  # the translator keeps its paper shape; the LMs are the tiny offline pair
        keys = ("lm_source", "lm_a_name", "lm_b_name", "lm_a_tokenizer", "lm_b_tokenizer", "lm_max_len", "lm_lr")
        keys += ("lm_a_d_model", "lm_b_d_model", "lm_layers", "lm_heads", "lm_steps", "lm_batch_size")
        swaps.append(("lm_source", keys, "no hub-model loader here"))
    if p.get("sudoku_source") == "csv" and not all((ROOT / p[k]).is_file() for k in ("sudoku_csv", "sudoku_test_csv")):
        keys = ("sudoku_source", "sudoku_csv", "sudoku_test_csv", "max_givens", "target_givens")
        swaps.append(("sudoku_source", keys, "its CSV files are absent"))
    notes = []
    for key, keys, why in swaps:
        notes.append(f"{key} {default[key]}, not the paper's {p[key]} ({why})")
        p.update({k: default[k] for k in keys})
    return notes


def cut_data(p: dict) -> None:
    """Data volume, in place, to a few batches: full batches of ``batch_size``, N_EVAL val and test examples."""
    b = p["batch_size"]
    for key in ("n_val", "n_test"):
        if key in p:
            p[key] = N_EVAL
    if "n_train" in p:
        p["n_train"] = max(b, min(p["n_train"], 4 * b))
    if "n_per_task" in p:  # bridge: generated or loaded per task, then split three ways
        p["n_per_task"] = 4 * b + 2 * N_EVAL
    for key in ("n_puzzles", "n_mazes"):  # split into train, val and test: two batches of train
        if key in p:
            p[key] = 2 * b + 2 * N_EVAL
    if "val_seqs" in p:
        p["val_seqs"] = min(p["val_seqs"], N_EVAL)


def check_params(study: str, cell_params: dict, default: dict, quick: bool, steps: int) -> tuple[dict, list[str]]:
    """The paper cell's params for a short run: toy shapes (quick), offline data, cut data, few steps."""
    p = dict(cell_params)
    notes = offline_data(p, default)
    p |= QUICK[study] if quick else {}  # after the swap: the toy shapes hold for the swapped-in parts too
    cut_data(p)
    p["steps"] = steps
    if "report_reference" in p:  # the one cell planned here is the study's base
        p["report_reference"] = "base"
    if "warmup_steps" in p:
        p["warmup_steps"] = min(p["warmup_steps"], steps - 1)
    if "eval_every" in p:
        p["eval_every"] = steps  # one validation pass, after the last step
    return p, notes


def materialize(plan, node, work: Path, device: str) -> Path:
    """Build ``node`` and its upstream with their stages' ``run``, in process; cached by fingerprint."""
    from pipeline.spec import Params, Upstream

    done = work / "nodes" / node.fingerprint
    if done.is_dir():
        return done
    upstream = tuple(
        Upstream(u.stage, u.slug, materialize(plan, u, work, device), u.cells) for u in plan.upstream_nodes(node)
    )
    tmp = done.with_name(done.name + ".tmp")
    shutil.rmtree(tmp, ignore_errors=True)
    tmp.mkdir(parents=True)
    print(f"[gpu_check] building upstream {node.label}", file=sys.stderr, flush=True)
    params = Params(node.params, node.spec.name)
    ctx = context(params=params, out=tmp, upstream=upstream, study=node.study, threads=threads(), device=device)
    importlib.import_module(node.module).run(ctx)
    tmp.rename(done)
    return done


def steady_steps_per_s(history: list[dict]) -> float:
    """Steps per second after the first steps (CUDA start-up, autotuning, allocator growth):
    ``time_s`` is the time at the end of each step, so the steps after step ``skip`` took
    t[-1] - t[skip]; ``skip`` is a quarter of the run, at most 5 steps."""
    t = [r["time_s"] for r in history]
    if len(t) < 2:
        raise ValueError(f"history.json holds {len(t)} step(s); timing a step needs at least 2")
    skip = min(5, len(t) // 4)
    return (len(t) - 1 - skip) / (t[-1] - t[skip])


def train_row(args, rows: Rows, study: str, work: Path) -> None:
    """The train node of the paper config's first cell of ``study``, timed for ``args.steps`` steps."""
    import torch

    from pipeline.params import parse_study
    from pipeline.plan import Plan
    from pipeline.spec import Params, Upstream
    from stages import RECIPES
    from studies.ska.bench import _RssPeak, _trim

    def measure():
        paper = load_study(PAPER, study)
        cell = paper.cells[0]
        p, notes = check_params(study, cell.params, load_study(PARAMS, study).params, args.quick, args.steps)
        plan = Plan({study: parse_study(study, {"kind": paper.kind, "params": p}, tuple(RECIPES))}, RECIPES)
        node = next(n for n in plan.nodes.values() if n.spec.name == "train")
        upstream = tuple(
            Upstream(u.stage, u.slug, materialize(plan, u, work, args.device), u.cells)
            for u in plan.upstream_nodes(node)
        )
        out = work / "train" / study
        out.mkdir(parents=True)
        params = Params(node.params, node.spec.name)
        ctx = context(params=params, out=out, upstream=upstream, study=study, threads=threads(), device=args.device)
        cuda = args.device == "cuda"
        if cuda:
            torch.cuda.synchronize()
            torch.cuda.reset_peak_memory_stats()
        _trim()
        with _RssPeak() as rss:
            base = rss.peak
            importlib.import_module(node.module).run(ctx)
        history = json.loads((out / "history.json").read_text())
        rate = steady_steps_per_s(history)
        peak = torch.cuda.max_memory_allocated() / 2**20 if cuda else (rss.peak - base) / 2**20
        shapes = "toy shapes (--quick)" if args.quick else f"batch {p['batch_size']}"
        notes = [f"paper cell {cell.name}", shapes, f"step 0 {history[0]['time_s']:.2f} s", *notes]
        if cuda and peak == 0:
            notes.append("ran on the CPU: the train stage left the GPU unused")
        return {"ms_per_step": 1000 / rate, "steps_per_s": rate, "peak_mb": peak}, "; ".join(notes)

    rows.attempt(study, measure)


def child(args) -> int:
    """One part, in its own interpreter: its rows are appended to ``args.rows``."""
    import torch

    rows = Rows(args.rows, args.child)
    name = torch.cuda.get_device_name() if args.device == "cuda" else "cpu"
    rows.write({"meta": {"torch": torch.__version__, "device_name": name}})
    lengths = LENGTHS[args.quick]
    if args.child == "attention":
        bench_rows(args, rows, ATTENTION, "bf16", lengths)
    elif args.child == "keops":
        bench_rows(args, rows, KEOPS, "fp32", lengths[:1])
    else:
        train_row(args, rows, args.child.removeprefix("train:"), args.work)
    return 0


# ---------------------------------------------------------------- running the parts, the table


def run_part(part: Part, args, timeout: float, work: Path, budget_cut: bool) -> tuple[list[dict], dict]:
    """Run one part's child for at most ``timeout`` s; a row it did not write becomes FAILED, or
    SKIPPED (budget) when ``budget_cut`` (the budget, not the part's own limit, set the timeout)."""
    rows_file = work / f"rows-{part.name.replace(':', '_')}.jsonl"
    cmd = [sys.executable, __file__, "--child", part.name, "--rows", str(rows_file), "--work", str(work)]
    cmd += ["--device", args.device, "--steps", str(args.steps)] + (["--quick"] if args.quick else [])
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    # the child's stdout (library warnings, progress bars) joins its stderr: only the table goes to ours
    pipes = dict(stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)
    proc = subprocess.Popen(cmd, cwd=ROOT, env=env, start_new_session=True, **pipes)
    try:
        err, _ = proc.communicate(timeout=timeout)
        missing = f"FAILED: exit code {proc.returncode}"
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the child's own process group: it and any compiler it started
        err, _ = proc.communicate()
        missing = (
            f"SKIPPED (budget): stopped after {timeout:.1f} s"
            if budget_cut
            else f"FAILED: timed out after {timeout:.1f} s"
        )
    records = [json.loads(line) for line in rows_file.read_text().splitlines()] if rows_file.exists() else []
    got = {r["row"]: r for r in records if "row" in r}
    meta = next((r["meta"] for r in records if "meta" in r), {})
    err_lines = err.strip().splitlines()
    failed = proc.returncode != 0 or any(r["result"].startswith("FAILED") for r in got.values())
    if failed and err_lines:
        print(f"[gpu_check] {part.name}: its stderr ends", *err_lines[-15:], sep="\n  ", file=sys.stderr)
        if not got and proc.returncode > 0:  # died before its first row: the last stderr line says why
            missing = f"FAILED: {err_lines[-1][:200]}"
    return [got.get(row) or {"part": part.name, "row": row, "result": missing} for row in part.rows], meta


def fmt(value: float | None, digits: int) -> str:
    return "" if value is None else f"{value:.{digits}f}"


def table(rows: list[dict]) -> str:
    lines = ["| part | row | ms/step | steps/s | peak MB | result |", "|---|---|---:|---:|---:|---|"]
    for r in rows:
        numbers = (fmt(r.get("ms_per_step"), 2), fmt(r.get("steps_per_s"), 2), fmt(r.get("peak_mb"), 1))
        lines.append("| " + " | ".join((r["part"], r["row"], *numbers, r["result"].replace("|", "/"))) + " |")
    return "\n".join(lines)


def parse_args(argv: list[str] | None) -> argparse.Namespace:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--device", choices=("cuda", "cpu"), default="cuda")
    ap.add_argument("--quick", action="store_true", help="toy sizes everywhere (a CPU test of the script)")
    ap.add_argument("--budget-s", type=float, default=480, help="wall-clock budget of the whole run")
    ap.add_argument("--part-timeout-s", type=float, default=120, help="the most one part may take")
    ap.add_argument("--steps", type=int, default=None, help="train steps per study (default 20; --quick 3)")
    ap.add_argument("--out", type=Path, default=None, help="markdown file (default benchmarks/results/...)")
    ap.add_argument("--parts", nargs="+", help="only these parts: attention, keops, train, train:<study>")
    ap.add_argument("--child", help=argparse.SUPPRESS)
    ap.add_argument("--rows", type=Path, help=argparse.SUPPRESS)
    ap.add_argument("--work", type=Path, help=argparse.SUPPRESS)
    args = ap.parse_args(argv)
    args.steps = args.steps or (3 if args.quick else 20)
    if args.steps < 2:
        ap.error("--steps must be at least 2 (steps/s leaves the first step out)")
    return args


def cuda_available() -> bool:
    import torch

    return torch.cuda.is_available()


def main(argv: list[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else argv
    args = parse_args(argv)
    if args.child:
        return child(args)
    if args.device == "cuda" and not cuda_available():
        print(
            "gpu_check: error: --device cuda, but this machine has no CUDA device (use --device cpu)", file=sys.stderr
        )
        return 2
    try:
        parts = plan_parts(args.quick, args.parts)
    except ValueError as e:
        print(f"gpu_check: error: {e}", file=sys.stderr)
        return 2
    now = datetime.datetime.now(datetime.UTC)
    suffix = ("" if args.device == "cuda" else f"-{args.device}") + ("-quick" if args.quick else "")
    out = args.out or ROOT / "benchmarks" / "results" / f"gpu_check-{now:%Y-%m-%d}{suffix}.md"
    start, rows, meta = time.monotonic(), [], {}
    with tempfile.TemporaryDirectory(prefix="gpu_check-") as work:
        for part in parts:
            left = args.budget_s - (time.monotonic() - start)
            if left < MIN_PART_S:
                rows += [{"part": part.name, "row": row, "result": "SKIPPED (budget)"} for row in part.rows]
                print(f"[gpu_check] {part.name}: SKIPPED (budget)", file=sys.stderr, flush=True)
                continue
            t0 = time.monotonic()
            budget_cut = left < args.part_timeout_s
            got, part_meta = run_part(part, args, min(args.part_timeout_s, left), Path(work), budget_cut)
            rows, meta = rows + got, meta or part_meta
            results = ", ".join(r["result"].split(":")[0].split(";")[0] for r in got)
            print(f"[gpu_check] {part.name}: {time.monotonic() - t0:.1f} s ({results})", file=sys.stderr, flush=True)
    peak = "torch.cuda.max_memory_allocated" if args.device == "cuda" else "the RSS growth during the run"
    text = (
        f"# GPU check {now:%Y-%m-%d %H:%M} UTC\n\n"
        f"Device {args.device} ({meta.get('device_name', '?')}), torch {meta.get('torch', '?')}: "
        f"`python benchmarks/gpu_check.py {' '.join(argv)}`, {time.monotonic() - start:.0f} s "
        f"of a {args.budget_s:.0f} s budget.\n\n"
        "attention, keops: one fwd+bwd step of the attention kernel alone at ska_bench's paper shape; "
        "peak = memory growth over the timed steps. "
        f"train: the paper config's first cell of each study, {args.steps} steps, steps/s after the first "
        f"steps, peak = {peak}; data cut to a few batches."
        + (" Every shape is a toy one (--quick)." if args.quick else "")
        + "\n\n"
        + table(rows)
        + "\n"
    )
    print(text)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(text)
    print(f"[gpu_check] table written to {out}", file=sys.stderr)
    return 0


if __name__ == "__main__":
    sys.exit(main())
