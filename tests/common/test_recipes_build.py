"""Every study of params.yaml, shrunk to toy sizes, built end to end through the real runner.

The pipeline tests run a toy recipe and the study tests call study code directly; this file
runs the real ``run(ctx)`` of every stage of every recipe, node by node in plan order, through
``pipeline.runner.main`` with the arguments of ``python -m stages <study> <stage> <slug>
--params <file>`` (the command both engines run): plan from the params file, store lookup, the
stage computed in a ``pipeline.child`` process, publish, hard links into the workspace. So a
renamed key, a metric a report reads but evaluate no longer writes, or a report that crashes on
the study's cells is found here, not by the 35-minute ``make run``.

The params file is the repository's ``params.yaml`` with each study shrunk by ``SHRINK`` (one
entry per study kind; a guard test makes a new kind add one): a few steps, tiny data, the same
grid axes with one value each (two where that is what the report compares), and the named
baseline cells. ``ABLATE_ARTIFACTS`` and ``ABLATE_STORE`` point into a temp dir: the real
``artifacts/`` is never touched.

Speed: every computed node is a child interpreter importing torch (and torch._dynamo, which
every optimizer constructor imports), ~2-4 s of CPU whatever its size, so the nodes are few and
the cores kept busy: one module fixture builds every selected study, each in one process of its
own (this file run as a script: one interpreter and plan per study rather than per node),
``WORKERS`` studies at a time with each stage child on one thread. Each study's test then checks
its own nodes, so a failure names the study and shows the failing node's traceback.

Asserted is behaviour, never values: every node builds; every node's metrics are finite; the
per-cell nodes' metrics hold the keys the study's report reads; the report writes the files it
promises (each markdown table with its LaTeX twin), with a row per cell, and has numeric metrics.
"""

from __future__ import annotations

import copy
import csv
import importlib
import json
import math
import os
import signal
import subprocess
import sys
from collections import Counter
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest
import yaml

from pipeline import plan as plan_mod
from pipeline import views
from pipeline.codehash import ROOT
from pipeline.params import ParamsError
from stages import RECIPES
from stages.ska import lm_report

PARAMS = ROOT / "params.yaml"
CORES = len(os.sched_getaffinity(0)) if hasattr(os, "sched_getaffinity") else os.cpu_count() or 1
WORKERS = max(2, CORES)  # studies building at once, each stage child on one thread
STUDY_TIMEOUT_S = 600  # a hung stage fails its study instead of hanging the session

# Per study kind: ``params`` overrides (each key must exist in the study), the ``grid`` that
# replaces the study's grid (the same axes), and optionally the named ``cells`` kept (by name;
# default all). Values that do not change a node's shape are left as they are. Where a report
# sets each factor against the base cell (``ablations``), the shrunk grid keeps the base cell.
LM_TEXT = {"vocab_size": 300, "seq_len": 32, "window": 8, "stride": 4, "minhash_k": 8}
TINY_MODEL = {"d_model": 16, "n_layers": 1, "n_heads": 2}
TINY_IMAGES = {"n_train": 64, "n_val": 16, "n_test": 32}
EBM_TINY = {"n_puzzles": 40, "n_val": 8, "n_test": 8, "steps": 2, "batch_size": 8, "eval_every": 1}
SHRINK: dict[str, dict] = {
    "ska_lm": {
        "params": {**LM_TEXT, **TINY_MODEL, "steps": 2, "batch_size": 4, "warmup_steps": 1, "eval_batch_size": 64},
        # the base cell (what the ablations table compares with) and the SDPA baseline twice
        # (its two seeds form one replicate group of the summary)
        "grid": {
            "minhash_k": [8],
            "bank": [{"window": 8, "stride": 4}],
            "router_topk": [0],
            "adapter_rank": [0],
        },
        # plus SDPA+conv at two learning rates: the best_lr table's group; and ska, the base cell
        # again by name, with a second seed: one replicate group with the grid's base cell
        "cells": ("sdpa", "sdpa_seed1", "sdpa_conv", "sdpa_conv_lr1e-3", "ska", "ska_seed1"),
    },
    "ska_setrecall": {
        "params": {
            "n_atoms": 40,
            "set_size": 3,
            "n_memory": 3,
            "n_queries": 1,
            "overlap": 2,
            "n_train": 16,
            "n_val": 8,
            "n_test": 8,
            **TINY_MODEL,
            "window": 3,
            "stride": 3,
            "minhash_k": 8,
            "steps": 2,
            "batch_size": 4,
            "warmup_steps": 1,
        },
        # SKA (the base cell) and SDPA; one seed
        "grid": {
            "model": [
                {"attention": "ska", "mixer": "auto", "d_ff": None},
                {"attention": "sdpa", "mixer": "conv", "d_ff": 32},
            ],
            "train_seed": [0],
        },
    },
    "ska_minhash": {
        "params": {"universe": 200, "set_size_max": 24, "n_pairs": 50},
        "grid": {  # every set source at two k: the error table's rows, two histograms per source
            "source": [
                {"set_source": "random", "window": 8, "stride": 4},
                {"set_source": "lm_windows", "window": 8, "stride": 4},
                {"set_source": "image_windows", "window": 8, "stride": 4},
            ],
            "minhash_k": [8, 16],
        },
    },
    "ska_bench": {
        "params": {
            **{k: LM_TEXT[k] for k in ("seq_len", "window", "stride", "minhash_k")},
            "batch_size": 2,
            "d_model": 16,
            "n_heads": 2,
            "warmup": 1,
            "iters": 1,
        },
        # the backends that run on a CPU: the naive pair and the SDPA row of the two tables
        "grid": {
            "impl": [
                {"backend": "naive", "precision": "fp32"},
                {"backend": "python", "precision": "fp32"},
                {"backend": "sdpa", "precision": "fp32"},
            ],
            "seq_len": [32],
            "scope": ["kernel", "block"],  # each table shows the kernel alone and the whole block
        },
    },
    "ska_parity": {
        "params": {"batch_size": 1, "seq_len": 32, "d_model": 8, "minhash_k": 8, "window": 8, "stride": 4},
        # keops stays in: it compiles this shape's formulas once (~20-30 s of g++ on a cold
        # KEOPS cache, overlapping other studies: ~+15 s on the file's wall time), then loads
        # them from disk (~3 s). Triton runs through its interpreter (TRITON_INTERPRET=1, set by
        # tests/conftest.py without a GPU), as the stage does on a CPU machine.
        "grid": {
            "impl": [
                {"backend": "keops", "precision": "fp32"},
                {"backend": "triton", "precision": "fp32"},
                {"backend": "python", "precision": "bf16"},
            ]
        },
    },
    "ska_vit": {
        "params": {**TINY_IMAGES, **TINY_MODEL, "minhash_k": 8, "steps": 2, "batch_size": 16, "warmup_steps": 1},
        "grid": {"bank": [{"window": 8, "stride": 4}]},
        "cells": ("sdpa",),
    },
    "ska_diffusion": {
        "params": {
            **TINY_IMAGES,
            **TINY_MODEL,
            "fid_steps": 2,
            "T": 10,
            "minhash_k": 8,
            "steps": 2,
            "batch_size": 16,
            "warmup_steps": 1,
            "n_fid_samples": 16,
            "ddim_steps": 2,
        },
        "grid": {"bank": [{"window": 8, "stride": 4}]},
        "cells": ("sdpa",),
    },
    "ska_text_diffusion": {
        # download and tokenize as ska_lm's: the same nodes in the store
        "params": {**LM_TEXT, **TINY_MODEL, "d_embed": 8, "T": 10, "steps": 2, "batch_size": 4, "warmup_steps": 1},
        "grid": {"bank": [{"window": 8, "stride": 4}]},
        "cells": ("sdpa",),
    },
    "poh_injection": {
        "params": {
            "n_puzzles": 40,
            "n_val": 8,
            "n_test": 8,
            "d_model": 16,
            "n_heads": 2,
            "d_ff": 32,
            "memory_size": 4,
            "steps": 2,
            "batch_size": 8,
            "eval_every": 1,
        },
        # no injection (the base cell), the mode the study is about, the transformer baseline
        "grid": {"injection": ["none", "alpha_gated"], "train_seed": [0]},
        "cells": ("transformer",),
    },
    "poh_scaling": {
        "params": {
            "maze_n": 4,
            "n_mazes": 40,
            "n_val": 8,
            "n_test": 8,
            "d_model": 16,
            "d_ff": 32,
            "depth": 1,
            "R": 2,
            "T": 2,
            "steps": 2,
            "batch_size": 8,
            "eval_every": 1,
        },
        # one size, both kinds: the report's PoH − baseline deltas need the pair
        "grid": {
            "model": [{"size": "A", "d_model": 16, "d_ff": 32, "depth": 1}],
            "kind": ["baseline", "poh"],
            "train_seed": [0],
        },
    },
    # cpu_small at 2 steps (the smallest named size); a short Langevin run
    "ebm_sudoku": {
        "params": {**EBM_TINY, "langevin_chains": 2, "langevin_steps": 2},
        # the base cell (cell_context on) and the pooled decoder, two seeds (the Langevin gain's
        # paired CI), and Langevin off as the sweep's second setting on the base
        "grid": {
            "cell_context": [True, False],
            "train_seed": [0, 1],
            "langevin": [{"langevin_steps": 2, "langevin_chains": 2}, {"langevin_steps": 0, "langevin_chains": 1}],
        },
    },
    "ebm_interp": {"params": {**EBM_TINY, "interp_n": 4, "interp_chains": 2, "interp_steps": 3}, "grid": {}},
    # a few dozen questions, 2-step LMs and translators: the stability pair, two seeds each (the
    # controls' paired CIs), every wire format, a two-size benchmark
    "bridge": {
        "params": {
            "n_per_task": 40,
            "n_val": 4,
            "n_test": 6,
            "lm_a_d_model": 16,
            "lm_b_d_model": 16,
            "lm_layers": 1,
            "lm_heads": 2,
            "lm_steps": 2,
            "lm_batch_size": 4,
            "n_soft_tokens": 2,
            "translator_width": 8,
            "translator_heads": 2,
            "steps": 2,
            "batch_size": 4,
            "warmup": 1,
            "eval_every": 1,
            "max_new": 4,
            "eval_batch_size": 4,
            "bench_batch_sizes": "1,2",
            "bench_repeats": 1,
            "bench_new_tokens": 2,
        },
        "grid": {"stability": [True, False], "train_seed": [0, 1]},
    },
}

# What each report reads from the per-cell nodes: stage → metric keys ("{key}": that param's
# value, e.g. the metric a ranking report sorts and plots by).
REPORT_READS: dict[str, dict[str, tuple[str, ...]]] = {
    "ska_lm": {"evaluate": ("{report_metric}",)},  # and every cell's METRICS: cell_reads()
    "ska_setrecall": {"data": ("test_chance",), "evaluate": ("{report_metric}", "val_recall_acc", "chance")},
    "ska_minhash": {"delta": ("set_source", "minhash_k", "jaccard_mean_err", "delta_sd_err")},
    "ska_bench": {
        "bench": ("backend", "precision", "scope", "device", "L", "ms_per_step", "steps_per_s", "peak_mem_mb")
    },
    "ska_parity": {"parity": ("backend", "precision", "device", "z_max_abs_err")},
    "ska_vit": {"evaluate": ("{report_metric}", "chance")},  # chance: the bar chart's reference line
    "ska_diffusion": {"evaluate": ("{report_metric}",)},
    "ska_text_diffusion": {"evaluate": ("{report_metric}",)},
    "poh_injection": {"evaluate": ("{report_metric}", "chance")},
    "ebm_sudoku": {
        "train": ("n_params", "best_step", "val_blank_acc"),
        "evaluate": (
            *(f"test_{m}_{k}" for m in ("langevin", "z_zero", "oracle_z") for k in ("blank_acc", "puzzle_acc")),
            "chance",
            "candidate_uniform",
        ),
    },
    "ebm_interp": {"train": ("n_params",)},
    "bridge": {
        "train": ("n_params", "val_peak", "val_final", "val_degradation", "best_step", "stopped_step"),
        "evaluate": (
            *(f"test_{m}_acc" for m in ("bridged", "text", "no_bridge", "shuffled", "a_alone")),
            "test_bridged_distinct",
            "majority_floor_acc",
        ),
        "quantize": tuple(f"wire_{f}_{k}" for f in ("fp32", "int4") for k in ("acc", "bytes_mean", "wire_over_text")),
        "bench": ("text_b1_ms_per_sample", "latent_b1_ms_per_sample", "latent_b1_peak_mem_mb", "load_before"),
    },
    "poh_scaling": {
        "maze_data": ("n_train", "n_val", "n_test"),
        "train": ("kind", "size", "n_params", "wall_s", "seed"),
        "evaluate": ("test_acc", "test_opt", "test_exact_opt"),
    },
}


def cell_reads(kind: str, cell_params: dict) -> set[str]:
    """What a report reads from one cell's train and evaluate metrics together."""
    if kind != "ska_lm":
        return set()
    if cell_params["attention"] == "ska":
        return set(lm_report.METRICS)
    return set(lm_report.METRICS) - set(lm_report.SKA_ONLY_METRICS)


# What each report promises in artifacts/reports/<study>/ ("{key}": a param's value), and the
# table of it that has one row per cell.
ABLATIONS = ("ablations.csv", "ablations.md", "ablations.png")
RANKING_FILES = (
    *(f"{t}.{ext}" for t in ("table", "summary") for ext in ("csv", "md")),
    *ABLATIONS,
    "{report_metric}.png",
    "train_curves.png",
)
REPORT_FILES: dict[str, tuple[str, ...]] = {
    "ska_lm": (
        *(f"{t}.{ext}" for t in ("table", "summary") for ext in ("csv", "md")),
        *ABLATIONS,
        "{report_metric}_vs_{report_x}.png",
        "train_curves.png",
        "best_lr.csv",
        "best_lr.md",
    ),
    "ska_setrecall": RANKING_FILES,
    "ska_minhash": (
        "table.csv",
        "table.md",
        *(f"{m}_error_hist_{s}.png" for m in ("jaccard", "delta") for s in ("random", "lm_windows", "image_windows")),
    ),
    "ska_bench": (
        *(f"{t}.{ext}" for t in ("bench", "naive_vs_naive", "optimized_vs_optimized") for ext in ("csv", "md")),
        "steps_per_s_vs_length.png",
        "peak_mem_mb_vs_length.png",
    ),
    "ska_parity": ("parity.csv", "parity.md"),
    "ska_vit": RANKING_FILES,
    "ska_diffusion": RANKING_FILES,
    "ska_text_diffusion": RANKING_FILES,
    "poh_injection": RANKING_FILES,
    "poh_scaling": ("results.json", "table.csv", "table.md", "scaling.png"),
    "ebm_sudoku": (
        *(f"{t}.{ext}" for t in ("solver", "summary", "table") for ext in ("csv", "md")),
        *ABLATIONS,
        "{report_metric}.png",
        "langevin_sweep.png",
        "train_curves.png",
    ),
    "ebm_interp": (
        *(f"{name}.{ext}" for name in ("lock_in", "strategies", "heads", "recovery") for ext in ("csv", "png")),
        "head_ablation.csv",
        "interp.md",
        "interp.csv",
        "interp_puzzles.csv",
    ),
    "bridge": (
        *(
            f"{t}.{ext}"
            for t in ("accuracy", "stability", "quantization", "bench", "table", "summary")
            for ext in ("csv", "md")
        ),
        *ABLATIONS,
        "findings.txt",
        "{report_metric}.png",
        *(f"{name}.png" for name in ("val_curves", "train_curves", "wire_bytes", "acc_vs_M", "bytes_vs_M", "bench")),
    ),
}
ROW_PER_CELL = {
    "ska_lm": "table.csv",
    "ska_setrecall": "table.csv",
    "ska_minhash": "table.csv",
    "ska_bench": "bench.csv",
    "ska_parity": "parity.csv",
    "ska_vit": "table.csv",
    "ska_diffusion": "table.csv",
    "ska_text_diffusion": "table.csv",
    "poh_injection": "table.csv",
    "ebm_sudoku": "table.csv",
    "bridge": "table.csv",
}


def _params() -> dict:
    return yaml.safe_load(PARAMS.read_text())


def _kind(name: str, study: dict) -> str:
    return study.get("kind", name)


STUDIES = sorted(_params()["studies"])


def test_every_study_kind_in_params_yaml_has_a_shrink_entry():
    """A new study kind must say how to shrink it (and what its report reads and writes), or
    the build test below would have nothing to run it with."""
    kinds = {_kind(n, s) for n, s in _params()["studies"].items() if _kind(n, s) in RECIPES}
    for table in ("SHRINK", "REPORT_READS", "REPORT_FILES"):
        missing = sorted(kinds - set(globals()[table]))
        assert not missing, f"add an entry to {table} in {Path(__file__).name} for: {', '.join(missing)}"
        stale = sorted(set(globals()[table]) - set(RECIPES))
        assert not stale, f"{table} has entries for kinds no recipe has: {stale}"


def test_the_shrunk_params_fit_and_plan_every_study(tmp_path):
    """Fast: every SHRINK entry still fits its study (keys, axes, named cells) and the shrunk
    params pass the planner's checks (what the build test below builds)."""
    shrunk, problems = shrunk_params()
    assert not problems, problems
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(shrunk, sort_keys=False))
    plan = plan_mod.build(path, RECIPES)
    assert set(plan.studies) == set(STUDIES)


def _shrink(study: dict, rule: dict) -> str | None:
    """Apply one SHRINK entry to a study in place; what no longer fits the study, if anything."""
    stale = sorted(set(rule["params"]) - set(study["params"]))
    if stale:
        return f"overrides params the study does not have: {stale}"
    study["params"].update(rule["params"])
    if sorted(rule["grid"]) != sorted(study.get("grid", {})):
        return f"has grid axes {sorted(rule['grid'])}, the study {sorted(study.get('grid', {}))}"
    study["grid"] = rule["grid"]
    study.pop("exclude", None)  # nothing of the shrunk grid is left to exclude
    if "cells" in rule:
        cells = study.get("cells", {})
        gone = sorted(set(rule["cells"]) - set(cells))
        if gone:
            return f"keeps named cells the study does not have: {gone}"
        study["cells"] = {c: cells[c] for c in rule["cells"]}
    return None


def ablate_cell(params: Path, study: str, cell: str, artifacts: Path, store: Path, wandb_mode: str):
    """``ablate cell STUDY --cell=CELL`` as a sweep agent runs it, in a clean ABLATE_/WANDB_ env."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("ABLATE_", "WANDB_"))} | {
        "ABLATE_ARTIFACTS": str(artifacts),
        "ABLATE_STORE": str(store),
        "WANDB_MODE": wandb_mode,
        "OMP_NUM_THREADS": "1",
    }
    return subprocess.run(
        [sys.executable, str(ROOT / "ablate.py"), "--params", str(params), "cell", study, f"--cell={cell}"],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=600,
    )


def shrunk_params() -> tuple[dict, dict[str, str]]:
    """params.yaml with every study shrunk by SHRINK, and per study left out (no entry for its
    kind, or an entry that no longer fits it: a key, axis or named cell renamed) the reason:
    no study is ever built at full size here."""
    params, problems = _params(), {}
    for name, study in list(params["studies"].items()):
        kind = _kind(name, study)
        problem = _shrink(study, copy.deepcopy(SHRINK[kind])) if kind in SHRINK else "no entry for this kind"
        if problem:
            problems[name] = f"SHRINK[{kind!r}] {problem}"
            del params["studies"][name]
    return params, problems


MARK = "@@recipes-build@@"  # brackets each node's output in a study's build log


def build_study(study: str, params: str) -> int:
    """Build every node of ``study`` in plan order through ``pipeline.runner.main`` (what
    ``python -m stages <study> <stage> <slug>`` calls), in this one process: an interpreter per
    study instead of per node. A node whose upstream failed is not run. This file's ``__main__``."""
    from pipeline import runner

    plan = plan_mod.build(params, RECIPES, only=[study])
    failed: set[str] = set()
    for n in plan.nodes.values():
        print(f"{MARK} {n.label}", file=sys.stderr, flush=True)
        if any(u.label in failed for u in plan.upstream_nodes(n)):
            code = -1
            print("not built: an upstream node failed", file=sys.stderr)
        else:
            code = runner.main(RECIPES, [n.study, n.stage, n.slug, "--params", params])
        if code:
            failed.add(n.label)
        print(f"{MARK} {n.label} exit {code}", file=sys.stderr, flush=True)
    return 1 if failed else 0


def _build(study: str, params: Path, env: dict) -> dict[str, dict]:
    """Run ``build_study`` in a subprocess; node label → {code, output} (its part of the log,
    the stage's traceback included), and the whole log under the study's name."""
    cmd = [sys.executable, __file__, study, str(params)]
    proc = subprocess.Popen(
        cmd, cwd=ROOT, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, start_new_session=True
    )
    try:
        log, _ = proc.communicate(timeout=STUDY_TIMEOUT_S)
    except subprocess.TimeoutExpired:
        os.killpg(proc.pid, signal.SIGKILL)  # the build, its runner and the stage's child
        log = proc.communicate()[0] + f"\n(killed after {STUDY_TIMEOUT_S} s)"
    results: dict[str, dict] = {study: {"code": proc.returncode, "output": log}}
    label, lines = None, []
    for line in log.splitlines():
        words = line.split()
        if words[:1] == [MARK] and len(words) == 2:
            label, lines = words[1], []
        elif words[:1] == [MARK]:
            results[label] = {"code": int(words[3]), "output": "\n".join(lines)}
        elif label is not None:
            lines.append(line)
    return results


@pytest.fixture(scope="module")
def built(request, tmp_path_factory, shrunk_store):
    """Every study the session selected, built from the shrunk params into a temp dir, the
    studies ``WORKERS`` at a time (the most nodes first), each node's child on one thread."""
    selected = {
        item.callspec.params["study"]
        for item in request.session.items
        if getattr(item, "originalname", None) == "test_study_builds_end_to_end_with_tiny_params"
    }
    root = tmp_path_factory.mktemp("recipes")
    params = root / "params.yaml"
    shrunk, problems = shrunk_params()
    params.write_text(yaml.safe_dump(shrunk, sort_keys=False))
    plans = {}
    for study in sorted(selected - set(problems)):
        try:
            plans[study] = plan_mod.build(params, RECIPES, only=[study])
        except (ParamsError, KeyError, ValueError) as e:
            problems[study] = f"the shrunk params do not plan: {e}"
    env = {
        **os.environ,
        "ABLATE_ARTIFACTS": str(root / "artifacts"),
        "ABLATE_STORE": str(shrunk_store),  # shared with test_device: its nodes are restored
        "OMP_NUM_THREADS": "1",
        "PYTHONPATH": str(ROOT),
        "MPLBACKEND": "Agg",
    }

    # the most nodes first; a study with keops cells early, as they may compile (see SHRINK)
    def cost(study: str) -> int:
        nodes = plans[study].nodes.values()
        return len(nodes) + 8 * sum(n.params.get("backend") == "keops" for n in nodes)

    results: dict[str, dict] = {}
    with ThreadPoolExecutor(WORKERS) as pool:
        for part in pool.map(lambda s: _build(s, params, env), sorted(plans, key=cost, reverse=True)):
            results.update(part)
    return {"plans": plans, "problems": problems, "root": root, "results": results}


def _finite(metrics: dict, where: str) -> None:
    for key, value in metrics.items():
        if isinstance(value, (int, float)) and not isinstance(value, bool):
            assert math.isfinite(value), f"{where}: metric {key} = {value}"


@pytest.mark.parametrize("study", STUDIES)
def test_study_builds_end_to_end_with_tiny_params(study, built):
    if study in built["problems"]:
        pytest.fail(f"{study}: not built: {built['problems'][study]}", pytrace=False)
    plan, results, artifacts = built["plans"][study], built["results"], built["root"] / "artifacts"
    kind, p = plan.studies[study].kind, plan.studies[study].params
    nodes = list(plan.nodes.values())

    codes = {n.label: results.get(n.label, {}).get("code") for n in nodes}
    if any(code != 0 for code in codes.values()):
        failed = [label for label, code in codes.items() if code not in (0, -1)]
        parts = [
            f"--- {label}: exit code {codes[label]}\n{results[label]['output'][-6000:]}"
            if label in results
            else f"--- {label}: never reached; the build's log ends:\n{results[study]['output'][-3000:]}"
            for label in failed
        ]
        skipped = [label for label, code in codes.items() if code == -1]
        rerun = (
            f"cd {ROOT} && ABLATE_ARTIFACTS={artifacts} ABLATE_STORE={built['root'] / 'store'} "
            f"python -m stages {study} STAGE SLUG --params {built['root'] / 'params.yaml'}"
        )
        pytest.fail(
            f"{study}: {len(failed)} of {len(nodes)} nodes failed; {len(skipped)} downstream of them not built: "
            f"{', '.join(skipped) or '-'}\n(rerun one: {rerun})\n" + "\n".join(parts),
            pytrace=False,
        )

    # every node is in the temp workspace, built from this plan, with finite metrics
    log = [json.loads(line) for line in (artifacts / ".logs" / "builds.jsonl").read_text().splitlines()]
    actions = {b["node"]: b["action"] for b in log}
    metas = {}
    for n in nodes:
        assert actions.get(n.label) in ("computed", "store_hit"), f"{n.label}: {actions.get(n.label)}"
        metas[n.label] = meta = json.loads((n.workspace(artifacts) / "meta.json").read_text())
        assert meta["fingerprint"] == n.fingerprint, n.label
        _finite(meta["metrics"], n.label)

    # the per-cell nodes hold what the report reads
    for stage, keys in REPORT_READS[kind].items():
        stage_nodes = [n for n in nodes if n.stage == stage]
        assert stage_nodes, f"{study}: no {stage!r} node (REPORT_READS[{kind!r}] names a stage the recipe lacks)"
        wanted = [k.format(**p) for k in keys]
        for n in stage_nodes:
            metrics = metas[n.label]["metrics"]
            missing = [k for k in wanted if k not in metrics]
            assert not missing, f"{n.label}: metrics lack {missing} that the report reads (has {sorted(metrics)})"

    for cell in plan.studies[study].cells:
        cell_nodes = [n for n in nodes if cell.name in n.cells and n.stage in ("train", "evaluate")]
        merged = {k for n in cell_nodes for k in metas[n.label]["metrics"]}
        missing = sorted(cell_reads(kind, cell.params) - merged)
        assert not missing, f"{study}: cell {cell.name}: train and evaluate metrics lack {missing}, read by the report"

    # the report wrote what it promises, a row per cell, and numeric metrics
    (report,) = [n for n in nodes if n.stage == "report"]
    out = report.workspace(artifacts)
    metrics = metas[report.label]["metrics"]
    assert any(isinstance(v, (int, float)) and not isinstance(v, bool) for v in metrics.values()), metrics
    for name in REPORT_FILES[kind]:
        path = out / name.format(**p)
        assert path.is_file() and path.stat().st_size > 0, f"{report.label}: {path.name} missing or empty"
        if path.suffix == ".md":  # every table also as a booktabs LaTeX table, for a paper
            tex = path.with_suffix(".tex").read_text()
            assert "\\toprule" in tex and "\\bottomrule" in tex, f"{report.label}: {path.stem}.tex: {tex[:300]}"
    # what dvc.yaml shows of it (pipeline.views): its metrics as metrics.json, and every declared plot
    assert json.loads((out / views.METRICS).read_text()) == metrics
    declared = getattr(importlib.import_module(plan.stages[kind]["report"][0]), "VIEWS", views.Views())
    for name in declared.images:
        assert (out / name.format(**p)).is_file(), f"{report.label}: VIEWS names {name.format(**p)}, not written"
    for table, label, value in declared.bars:
        with open(out / table) as f:
            header = next(csv.reader(f))
        assert {label, value.format(**p)} <= set(header), f"{report.label}: VIEWS bars {label}/{value} vs {header}"
    n_cells = len(plan.studies[study].cells)
    assert len(report.cells) == n_cells
    if kind in ROW_PER_CELL:
        with open(out / ROW_PER_CELL[kind]) as f:
            rows = list(csv.DictReader(f))
        assert len(rows) == n_cells, f"{report.label}: {ROW_PER_CELL[kind]} has {len(rows)} rows for {n_cells} cells"
    for key in ("cells", "rows"):
        if key in metrics:
            assert metrics[key] == n_cells, f"{report.label}: {key} = {metrics[key]} for {n_cells} cells"
    if "ablations.csv" in REPORT_FILES[kind]:  # each factor against the base cell, which is there
        with open(out / "ablations.csv") as f:
            rows = list(csv.DictReader(f))
        bases = Counter(r["factor"] for r in rows if r["is_base"] == "true")
        assert bases and set(bases.values()) == {1}, f"{report.label}: base rows per factor {dict(bases)}"
        changes = [float(r[f"{p['report_metric']}_change"]) for r in rows]
        assert all(map(math.isfinite, changes)), f"{report.label}: ablations.csv changes {changes}"
    if kind == "ska_lm":  # the grid's base cell and ska (seeds 0, 1): one group, seed 0 counted once
        with open(out / "summary.csv") as f:
            n = {r["cell"]: r["n"] for r in csv.DictReader(f)}
        assert n == {"ska": "2", "sdpa": "2", "sdpa_conv": "1", "sdpa_conv_lr1e-3": "1"}, n
    if kind == "poh_scaling":  # a size with both kinds gets the PoH − baseline deltas
        for row in json.loads((out / "results.json").read_text())["sizes"]:
            assert math.isfinite(row["poh_minus_baseline_acc"]) and math.isfinite(row["poh_minus_baseline_opt"]), row


if __name__ == "__main__":  # a study's build, run by the ``built`` fixture
    sys.exit(build_study(sys.argv[1], sys.argv[2]))
