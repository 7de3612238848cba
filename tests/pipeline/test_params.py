"""Malformed params: every error names the key path and what is allowed, and nothing runs."""

import textwrap

import pytest

from pipeline.params import ParamsError, load

KINDS = ("lm",)


def load_text(tmp_path, text, only=None):
    path = tmp_path / "params.yaml"
    path.write_text(textwrap.dedent(text))
    return load(path, KINDS, only)


GOOD = """
studies:
  s:
    kind: lm
    params: {minhash_k: 64, window: 32, stride: 16, lr: 1.0e-3, name: x, flag: false}
    grid:
      minhash_k: [32, 64]
      bank: [{window: 32, stride: 16}, {window: 64, stride: 32}]
    cells:
      base_cell: {}
      fast: {lr: 3.0e-3}
    exclude:
      - {minhash_k: 32, window: 64}
"""


def test_grid_is_the_cartesian_product_minus_exclusions_plus_named_cells(tmp_path):
    study = load_text(tmp_path, GOOD)["s"]
    names = [c.name for c in study.cells]
    assert names == [
        "minhash_k=32,window=32,stride=16",
        "minhash_k=64,window=32,stride=16",
        "minhash_k=64,window=64,stride=32",
        "base_cell",
        "fast",
    ]
    assert [c.name for c in study.excluded] == ["minhash_k=32,window=64,stride=32"]
    assert study.cells[2].params == {
        "minhash_k": 64,
        "window": 64,
        "stride": 32,
        "lr": 1e-3,
        "name": "x",
        "flag": False,
    }
    assert study.cells[-1].params["lr"] == 3e-3 and study.overridden == {"lr"}


@pytest.mark.parametrize(
    "edit, path, message",
    [
        (("minhash_k: [32, 64]", "minhash_kk: [32, 64]"), "studies.s.grid.minhash_kk", "did you mean 'minhash_k'"),
        (("minhash_k: [32, 64]", "minhash_k: []"), "studies.s.grid.minhash_k", "empty axis"),
        (("minhash_k: [32, 64]", "minhash_k: [32, '64']"), "studies.s.grid.minhash_k[1]", "expected int"),
        (("minhash_k: [32, 64]", "minhash_k: 32"), "studies.s.grid.minhash_k", "list of values"),
        (("minhash_k: [32, 64]", "minhash_k: [32, 32]"), "studies.s.grid.minhash_k", "duplicate values"),
        (("fast: {lr: 3.0e-3}", "fast: {lr: 3e-3}"), "studies.s.cells.fast.lr", "write 3.0e-3"),
        (("fast: {lr: 3.0e-3}", "base_cell: {lr: 3.0e-3}"), "studies.s.cells", "duplicate key"),
        (("fast: {lr: 3.0e-3}", "fast: {lrr: 3.0e-3}"), "studies.s.cells.fast.lrr", "did you mean 'lr'"),
        (("kind: lm", "kind: lmm"), "studies.s.kind", "did you mean 'lm'"),
        (("    grid:", "    gird:"), "studies.s.gird", "did you mean 'grid'"),
        (("{window: 64, stride: 32}", "{window: 64}"), "studies.s.grid.bank[1]", "same keys"),
        (("{minhash_k: 32, window: 64}", "{minhash_k: 32, windw: 64}"), "studies.s.exclude[0].windw", "did you mean"),
        (("name: x", "name: a/b"), None, None),
    ],
)
def test_malformed_params_name_the_key_path(tmp_path, edit, path, message):
    text = GOOD.replace(*edit)
    if path is None:  # base values are free-form; only grid values become paths
        load_text(tmp_path, text)
        return
    with pytest.raises(ParamsError) as err:
        load_text(tmp_path, text)
    assert str(err.value).startswith(path), str(err.value)
    assert message in str(err.value)


def test_duplicate_cell_names_in_yaml_are_refused(tmp_path):
    text = GOOD.replace("      fast: {lr: 3.0e-3}", "      fast: {lr: 3.0e-3}\n      fast: {lr: 1.0e-3}")
    with pytest.raises(ParamsError, match=r"^studies.s.cells: duplicate key 'fast'"):
        load_text(tmp_path, text)


def test_a_named_cell_may_not_reuse_a_grid_cell_name(tmp_path):
    text = GOOD.replace("base_cell: {}", "'minhash_k=32,window=32,stride=16': {}")
    with pytest.raises(ParamsError, match="cell names use"):
        load_text(tmp_path, text)


def test_grid_values_that_cannot_be_paths_are_refused(tmp_path):
    text = GOOD.replace("lr: 1.0e-3, name: x", "lr: 1.0e-3, name: x").replace(
        "    cells:", "      name: [a, 'b/c']\n    cells:"
    )
    with pytest.raises(ParamsError, match=r"^studies.s.grid.name\[1\]: 'b/c' cannot appear in a path"):
        load_text(tmp_path, text)


def test_unknown_study_is_named_with_a_suggestion(tmp_path):
    with pytest.raises(
        ParamsError, match=r"^studies.t: unknown study \(did you mean 's'\?\)|^studies.t: unknown study"
    ):
        load_text(tmp_path, GOOD, only=["t"])


def test_excluding_everything_is_an_error(tmp_path):
    text = GOOD.replace("- {minhash_k: 32, window: 64}", "- {stride: 16}\n      - {stride: 32}")
    with pytest.raises(ParamsError, match=r"^studies.s.exclude: excludes every cell"):
        load_text(tmp_path, text)


def test_invalid_yaml_is_reported_with_the_file(tmp_path):
    with pytest.raises(ParamsError, match="not valid YAML"):
        load_text(tmp_path, "studies: [unclosed")
