"""Every mistake in params.yaml stops before anything runs, naming the key path and what is
allowed: the repository's params.yaml with one edit each, validated as `ablate check` and both
engines do (pipeline.plan.build). One case runs the real `python ablate.py check --params`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from pipeline import codehash
from pipeline.codehash import ROOT
from pipeline.params import ParamsError, float_hint
from pipeline.plan import build, load_recipes
from pipeline.spec import StageSpec, parse_range
from stages import RECIPES

PARAMS = (ROOT / "params.yaml").read_text()


def _set(study: str, key: str, value, section: str = "params"):
    def edit(raw: dict) -> None:
        raw["studies"][study].setdefault(section, {})[key] = value

    return edit


def _rename(study: str, old: str, new: str):
    def edit(raw: dict) -> None:
        params = raw["studies"][study]["params"]
        params[new] = params.pop(old)

    return edit


def _exclude(raw: dict) -> None:
    raw["studies"]["ska_lm"]["exclude"] = [{"router_topk": 8}]


def _bank_window(raw: dict) -> None:
    raw["studies"]["ska_lm"]["grid"]["bank"][1] = {"window": 256, "stride": 32}


# (case, study, edit of the parsed params.yaml, key path the error starts with, words it holds)
CASES = [
    ("steps_negative", "ska_lm", _set("ska_lm", "steps", -5), "studies.ska_lm.params.steps", ["-5", ">= 1"]),
    ("stride_zero", "ska_lm", _set("ska_lm", "stride", 0), "studies.ska_lm.params.stride", ["0", ">= 1"]),
    ("bpe_vocab_50", "ska_lm", _set("ska_lm", "vocab_size", 50), "studies.ska_lm.params.vocab_size", [">= 257"]),
    ("bpe_vocab_256", "ska_lm", _set("ska_lm", "vocab_size", 256), "studies.ska_lm.params.vocab_size", [">= 257"]),
    (
        "heads_do_not_divide_width",
        "ska_lm",
        _set("ska_lm", "n_heads", 3),
        "studies.ska_lm.params.n_heads",
        ["n_heads=3", "d_model=64", "multiple"],
    ),
    (
        "window_longer_than_sequence_in_params",
        "ska_lm",
        _set("ska_lm", "window", 256),  # the named cells (sdpa, ...) take the base window
        "studies.ska_lm.params.window",
        ["window=256", "seq_len=128"],
    ),
    (
        "window_longer_than_sequence_in_grid",
        "ska_lm",
        _bank_window,
        "studies.ska_lm.grid.bank",
        ["window=256", "seq_len=128", "in cell 'minhash_k=32,window=256"],
    ),
    (
        "replicates_not_an_axis",
        "ska_lm",
        _set("ska_lm", "report_replicates", "seed"),
        "studies.ska_lm.params.report_replicates",
        ["'seed'", "a key of the study's params", "did you mean 'train_seed'"],
    ),
    (
        "hue_not_an_axis",
        "ska_lm",
        _set("ska_lm", "report_hue", "routertopk"),
        "studies.ska_lm.params.report_hue",
        ["did you mean 'router_topk'"],
    ),
    (
        "x_not_an_axis",
        "ska_lm",
        _set("ska_lm", "report_x", "n_layers"),  # a param, but the same in every cell
        "studies.ska_lm.params.report_x",
        ["'n_layers'", "minhash_k"],
    ),
    (
        "lm_metric_unknown",
        "ska_lm",
        _set("ska_lm", "report_metric", "perplexity"),
        "studies.ska_lm.params.report_metric",
        ["did you mean 'test_perplexity'"],
    ),
    (
        "ranking_metric_unknown",
        "ska_vit",
        _set("ska_vit", "report_metric", "top5"),
        "studies.ska_vit.params.report_metric",
        ["'top5'", "top1"],
    ),
    (
        "reference_not_a_cell",
        "ska_vit",
        _set("ska_vit", "report_reference", "spda"),
        "studies.ska_vit.params.report_reference",
        ["did you mean 'sdpa'", "base"],
    ),
    (
        "exclude_matches_no_cell",  # router_topk is [0, 4]: a typo'd value drops nothing
        "ska_lm",
        _exclude,
        "studies.ska_lm.exclude[0]",
        ["{'router_topk': 8}", "matches no cell"],
    ),
    (
        "base_key_typo_named_at_the_base",
        "ska_lm",
        _rename("ska_lm", "minhash_k", "minhash_kk"),
        "studies.ska_lm.params.minhash_kk",
        ["did you mean 'minhash_k'"],
    ),
    (
        "a_bool_is_no_int",
        "poh_scaling",
        _set("poh_scaling", "steps", True),
        "studies.poh_scaling.params.steps",
        ["expected int", "bool"],
    ),
    (
        "a_float_is_no_int",
        "ska_lm",
        _set("ska_lm", "batch_size", 16.0),
        "studies.ska_lm.params.batch_size",
        ["expected int", "float 16.0"],
    ),
    (
        "lr_not_positive_in_a_cell",
        "ska_lm",
        _set("ska_lm", "ska_lr1e-3", {"lr": 0.0}, section="cells"),
        "studies.ska_lm.cells.ska_lr1e-3.lr",
        ["0.0", "> 0"],
    ),
]


def _write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "params.yaml"
    path.write_text(text)
    return path


def _error(path: Path, study: str) -> ParamsError:
    with pytest.raises(ParamsError) as e:
        build(path, RECIPES, only=[study])
    return e.value


@pytest.mark.parametrize("case, study, edit, where, words", CASES, ids=[c[0] for c in CASES])
def test_each_mistake_stops_the_plan_naming_the_key_path(case, study, edit, where, words, tmp_path):
    raw = yaml.safe_load(PARAMS)
    build(_write(tmp_path, PARAMS), RECIPES, only=[study])  # unedited, the study plans
    edit(raw)
    error = _error(_write(tmp_path, yaml.safe_dump(raw, sort_keys=False)), study)
    assert error.path == where, str(error)
    for word in words:
        assert word in str(error), str(error)


def test_an_exponent_without_a_dot_is_a_string_and_check_says_how_to_write_it(tmp_path):
    """YAML (1.1, PyYAML) reads `1e-3` as a string: the base lr is named, with the fix."""
    text = PARAMS.replace("      lr: 3.0e-3 ", "      lr: 1e-3 ", 1)
    assert text != PARAMS
    assert yaml.safe_load(text)["studies"]["ska_lm"]["params"]["lr"] == "1e-3"
    error = _error(_write(tmp_path, text), "ska_lm")
    assert error.path == "studies.ska_lm.params.lr" and "write 1.0e-3" in str(error), str(error)


def test_a_string_number_is_named_by_the_spec_type_when_no_cell_overrides_it(tmp_path):
    text = PARAMS.replace("      lr: 2.0e-3\n", "      lr: 2e-3\n", 1)  # ska_vit: no cell sets lr
    error = _error(_write(tmp_path, text), "ska_vit")
    assert error.path == "studies.ska_vit.params.lr", str(error)
    assert "expected float, got the string '2e-3'" in str(error) and "write 2.0e-3" in str(error)


def test_ablate_check_exits_2_with_the_key_path(tmp_path):
    raw = yaml.safe_load(PARAMS)
    raw["studies"]["ska_lm"]["params"]["n_heads"] = 3
    path = _write(tmp_path, yaml.safe_dump(raw, sort_keys=False))
    done = subprocess.run(
        [sys.executable, "ablate.py", "check", "--params", str(path)], cwd=ROOT, capture_output=True, text=True
    )
    assert done.returncode == 2, done.stdout + done.stderr
    assert "studies.ska_lm.params.n_heads: n_heads=3, d_model=64 breaks the rule" in done.stderr
    assert "Traceback" not in done.stderr


def test_the_bpe_floor_is_the_tokenizers_own():
    """The tokenize SPEC's vocab_size floor is where studies.data.tokenizer starts refusing."""
    from studies.data.tokenizer import train_tokenizer

    docs = ["some text to train on, twice: some text to train on"]
    check = load_recipes(RECIPES)["ska_lm"]["tokenize"][1].checks
    (rule,) = check.values()
    for kind, floor in (("bpe", 257), ("whitespace", 3)):
        assert rule(vocab_size=floor, tokenizer=kind) and not rule(vocab_size=floor - 1, tokenizer=kind)
        train_tokenizer(kind, docs, floor)
        with pytest.raises(ValueError, match="below the minimum"):
            train_tokenizer(kind, docs, floor - 1)


def test_declared_report_metrics_match_the_lm_report_table():
    """ska_lm's report_metric choices (train + evaluate ``metrics``) are the metrics its report
    summarises (lm_report.METRICS): none the report lacks, none it reads that is not declared."""
    from stages.ska import lm_report

    stages = load_recipes(RECIPES)["ska_lm"]
    declared = {m for _, spec in stages.values() for m in spec.metrics}
    assert declared == set(lm_report.METRICS)


def test_the_float_hint_writes_what_yaml_reads_as_a_float():
    for text, fixed in (("1e-3", "1.0e-3"), ("1.0e3", "1.0e+3"), ("2E5", "2.0e+5")):
        hint = float_hint(text)
        assert hint.endswith(f"write {fixed}")
        assert isinstance(yaml.safe_load(f"a: {fixed}")["a"], float)
    assert float_hint("pydoc") == "" and float_hint("nan") == ""


def test_ranges_read_as_written():
    assert parse_range("> 0")(1e-9) and not parse_range("> 0")(0)
    assert parse_range(">= 1")(1) and not parse_range(">= 1")(0)
    assert parse_range("[0, 1)")(0) and not parse_range("[0, 1)")(1)
    assert parse_range("(0, 1]")(1) and not parse_range("(0, 1]")(0)
    with pytest.raises(ValueError, match="interval"):
        parse_range("positive")


def test_a_rule_on_a_key_the_stage_does_not_read_is_refused():
    with pytest.raises(ValueError, match="does not read"):
        StageSpec(name="s", reads=("a",), checks={"a < b": lambda a, b: a < b})
    with pytest.raises(ValueError, match="does not read"):
        StageSpec(name="s", reads=("a",), ranges={"b": "> 0"})


def test_validation_keywords_leave_the_code_digest_unchanged(tmp_path, monkeypatch):
    """Declaring or tightening a rule refuses more params; it never changes what an accepted
    node computes, so it must not rebuild every artifact (pipeline.codehash.VALIDATION)."""
    (tmp_path / "stages").mkdir()
    module = tmp_path / "stages" / "probe.py"

    def digest(spec_args: str) -> str:
        module.write_text(f"from pipeline.spec import StageSpec\nSPEC = StageSpec(name='p', reads=('a',){spec_args})\n")
        codehash._module_digest.cache_clear()
        return codehash.code_digests(("stages.probe",), tmp_path)["stages.probe"]

    plain = digest("")
    ruled = digest(", types={'a': int}, ranges={'a': '>= 1'}, checks={'a odd': lambda a: a % 2}, metrics=('m',)")
    assert ruled == plain
    assert digest(", version=2") != plain  # what is hashed still is
