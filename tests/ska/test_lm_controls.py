"""The controls of the SKA-vs-SDPA LM comparison (study ska_lm) and the set-recall study.

Parameter counts come from real models built from params.yaml, so a change of a default
(width, vocabulary, window) that breaks the ±5 % match fails here.
"""

import pytest
import yaml

from pipeline.codehash import ROOT
from stages.ska.lm_train import MODEL_KEYS
from studies.ska.model import CausalConv, CausalLM, LMConfig

STUDIES = yaml.safe_load((ROOT / "params.yaml").read_text())["studies"]
ARCH_KEYS = ("attention", "mixer", "d_ff")


def _lm_model(study: str, **overrides) -> CausalLM:
    p = {**STUDIES[study]["params"], **overrides}
    config = {k: p[k] for k in MODEL_KEYS if k in p} | {"vocab_size": p.get("n_atoms", p.get("vocab_size"))}
    config.setdefault("seq_len", p.get("set_size", 1) * (p.get("n_memory", 0) + 2 * p.get("n_queries", 0)) - 1)
    return CausalLM(LMConfig(**config))


def _ska_lm_cells(prefix: str) -> dict[str, dict]:
    return {n: c for n, c in STUDIES["ska_lm"]["cells"].items() if n == prefix or n.startswith(prefix + "_")}


@pytest.mark.parametrize("arch", ["sdpa_matched", "sdpa_conv_matched"])
def test_matched_sdpa_cells_are_within_5_percent_of_the_ska_base_params(arch):
    ska = _lm_model("ska_lm").n_params()
    cells = _ska_lm_cells(arch)
    assert cells
    for name, cell in cells.items():
        n = _lm_model("ska_lm", **{k: v for k, v in cell.items() if k in ARCH_KEYS}).n_params()
        assert abs(n / ska - 1) <= 0.05, f"{name}: {n} vs SKA {ska}"


def test_plain_sdpa_is_not_matched_so_the_control_is_needed():
    ska, sdpa = _lm_model("ska_lm").n_params(), _lm_model("ska_lm", attention="sdpa").n_params()
    assert sdpa < 0.8 * ska


def test_sdpa_conv_adds_exactly_the_ska_blocks_causal_conv():
    plain, conv = _lm_model("ska_lm", attention="sdpa"), _lm_model("ska_lm", attention="sdpa", mixer="conv")
    ska = _lm_model("ska_lm")
    convs = [m for m in conv.modules() if isinstance(m, CausalConv)]
    assert len(convs) == STUDIES["ska_lm"]["params"]["n_layers"] and not any(
        isinstance(m, CausalConv) for m in plain.modules()
    )
    assert [c.w for c in convs] == [m.w for m in ska.modules() if isinstance(m, CausalConv)]
    per_block = sum(p.numel() for m in conv.blocks for p in (*m.mix.parameters(), *m.norm_mix.parameters()))
    assert conv.n_params() - plain.n_params() == per_block


@pytest.mark.parametrize("arch", ["ska", "sdpa_conv", "sdpa_matched"])
def test_each_compared_architecture_runs_three_lrs_times_three_seeds(arch):
    base = STUDIES["ska_lm"]["params"]
    runs = {(c.get("lr", base["lr"]), c.get("train_seed", base["train_seed"])) for c in _ska_lm_cells(arch).values()}
    assert runs == {(lr, s) for lr in (1.0e-3, 3.0e-3, 1.0e-2) for s in (0, 1, 2)}


def test_n_params_counts_trainable_parameters_once():
    model = _lm_model("ska_lm")
    assert model.n_params() == sum(p.numel() for p in {id(p): p for p in model.parameters()}.values())
    model.pos.weight.requires_grad_(False)
    assert model.n_params() == sum(p.numel() for p in model.parameters()) - model.pos.weight.numel()


def test_setrecall_sdpa_cells_are_within_5_percent_of_its_ska():
    models = STUDIES["ska_setrecall"]["grid"]["model"]
    counts = {tuple(sorted(m.items())): _lm_model("ska_setrecall", **m).n_params() for m in models}
    ska = counts[tuple(sorted(models[0].items()))]
    assert models[0]["attention"] == "ska"
    for m in models:
        if m["attention"] == "sdpa":
            assert abs(counts[tuple(sorted(m.items()))] / ska - 1) <= 0.05, m


def test_best_lr_keeps_per_architecture_the_lr_with_the_lowest_validation_loss():
    from stages.ska.lm_report import best_lr_rows

    def row(cell, attention, lr, val_loss, named=True, perplexity=0.0, k=64):
        return dict(cell=cell, named=named, attention=attention, k=k, lr=lr, val_loss=val_loss, perplexity=perplexity)

    summary = [
        row("ska_lr1e-3", "ska", 1e-3, 5.0),
        # the base corner of the grid merged with the named ska cell (replicate_groups): a grid row
        row("ska", "ska", 3e-3, 4.8, named=False, perplexity=99.0),  # lowest val loss wins, whatever the test metric
        row("ska_lr1e-2", "ska", 1e-2, 4.9, perplexity=1.0),
        row("sdpa_lr1e-3", "sdpa", 1e-3, 4.7),
        row("sdpa", "sdpa", 3e-3, 4.6),
        row("k=32", "ska", 3e-3, 1.0, named=False, k=32),  # another grid point, at one lr: not an lr group
        row("beta_off", "dot", 3e-3, 0.5),  # one lr only: no choice to make
    ]
    best = best_lr_rows(summary, ["attention", "k", "lr"])
    assert [(r["cell"], r["lrs_tried"]) for r in best] == [("ska", "0.001, 0.003, 0.01"), ("sdpa", "0.001, 0.003")]
