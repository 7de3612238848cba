"""What a reader gets from a report: markdown and LaTeX tables with counts as integers, no s.d. of
a constant nor a column no variant uses, no ± for a single seed, the metric's floor beside it;
figures with labelled axes, titles inside the figure, ablation changes on a scale that shows a
0.4 % effect, no error bar for n = 1; and progress in a log file as plain lines."""

import csv
import io
import json

import matplotlib.container
import matplotlib.text
import pytest

from pipeline.spec import Context, Params, Upstream
from stages.common import ranking_report
from studies.labels import axis_label, series_label
from studies.progress import progress_bar
from studies.report import bar_figure, one_factor_figure, one_factor_rows, write_table


def md_rows(path) -> list[dict[str, str]]:
    """The pipe table of a .md as header → cell text per row."""
    lines = [ln for ln in path.read_text().splitlines() if ln.startswith("|")]
    split = [[c.strip() for c in ln.strip("|").split("|")] for ln in lines]
    return [dict(zip(split[0], r, strict=True)) for r in split[2:]]


SUMMARY = [  # a replicate summary as replicate_summary writes it
    {"cell": "ska", "n": 3, "acc": 0.5856, "acc_sd": 0.0852, "n_params": 387681.0, "best_step": 1399.0,
     "best_step_sd": 0.0, "beta": None, "train_s": 204.05},
    {"cell": "sdpa", "n": 1, "acc": 0.1494, "acc_sd": None, "n_params": 385601.0, "best_step": 1265.0,
     "best_step_sd": None, "beta": None, "train_s": 146.93},
]  # fmt: skip


def test_counts_print_as_integers_and_the_csv_keeps_the_exact_values(tmp_path):
    write_table(SUMMARY, tmp_path / "summary", sort_by="acc", descending=True)
    rows = {r["cell"]: r for r in md_rows(tmp_path / "summary.md")}
    assert rows["ska"]["n_params"] == "387681" and rows["sdpa"]["best_step"] == "1265"
    with open(tmp_path / "summary.csv") as f:
        assert next(csv.DictReader(f))["n_params"] == "387681.0"
    assert "387681.0" not in (tmp_path / "summary.tex").read_text()


def test_the_sd_of_a_constant_and_a_column_no_variant_uses_are_left_out_of_md_and_tex(tmp_path):
    write_table(SUMMARY, tmp_path / "summary", sort_by="acc", descending=True)
    header = md_rows(tmp_path / "summary.md")[0].keys()
    assert "beta" not in header and not any(h.startswith("best_step_sd") for h in header)
    assert "best_step" in header  # the value itself stays, without a ± 0
    tex = (tmp_path / "summary.tex").read_text().replace(r"\_", "_")
    assert "beta" not in tex and "best_step_sd" not in tex
    with open(tmp_path / "summary.csv") as f:
        assert {"beta", "best_step_sd"} <= set(next(csv.reader(f)))  # the CSV keeps every column


def test_a_single_seed_row_prints_no_plus_minus(tmp_path):
    write_table(SUMMARY, tmp_path / "summary", sort_by="acc", descending=True)
    rows = {r["cell"]: r for r in md_rows(tmp_path / "summary.md")}
    assert rows["ska"]["acc (± s.d.)"] == "0.5856 ± 0.0852"
    assert rows["sdpa"]["acc (± s.d.)"] == "0.1494"
    assert "±" not in " ".join(rows["sdpa"].values())
    sdpa_tex = next(ln for ln in (tmp_path / "summary.tex").read_text().splitlines() if ln.startswith("sdpa"))
    assert r"\pm" not in sdpa_tex


def test_speed_columns_measured_while_training_carry_the_load_caveat(tmp_path):
    write_table(SUMMARY, tmp_path / "summary", sort_by="acc")
    assert "train_s" in (tmp_path / "summary.md").read_text().split("Note:")[1]
    write_table(SUMMARY, tmp_path / "bench", sort_by="acc", timing_note="{columns}: run alone")
    assert (tmp_path / "bench.md").read_text().endswith("Note: train_s: run alone\n")


def errorbar_positions(ax) -> list[float]:
    """The y of each horizontal whisker drawn on ``ax`` (a barh figure's error bars)."""
    out = []
    for c in ax.containers:
        if isinstance(c, matplotlib.container.ErrorbarContainer):
            out += [seg[0][1] for seg in c.lines[2][0].get_segments()]
    return out


def test_a_single_seed_bar_has_no_error_bar():
    rows = [{**r, "named": False} for r in SUMMARY]
    fig = bar_figure(rows, "acc", "toy: acc")
    ax = fig.axes[0]
    labels = [t.get_text() for t in ax.get_yticklabels()]
    assert errorbar_positions(ax) == [labels.index("ska (n=3)")]  # sdpa (n=1) has none, not a zero-width one
    assert ax.get_xlabel() == axis_label("acc") == "path accuracy (fraction, 0–1)"


def test_an_ablation_of_a_0_4_percent_change_is_visible_on_its_axis():
    base = {"attention": "ska", "k": 64}
    rows = [
        {"cell": "base", "named": False, "n": 1, "attention": "ska", "k": 64, "top1": 0.9000},
        {"cell": "k=32", "named": False, "n": 1, "attention": "ska", "k": 32, "top1": 0.8964},
    ]
    fig = one_factor_figure(one_factor_rows(rows, base, list(base), "top1"), "top1", "toy")
    ax = fig.axes[0]
    low, high = ax.get_ylim()
    delta = 0.8964 - 0.9000
    assert [p.get_height() for p in ax.patches] == pytest.approx([0.0, delta])
    assert low < delta and high - low < 10 * abs(delta)  # not drowned by an axis from 0 to 0.9
    assert ax.get_ylabel() == "Δ top-1 accuracy vs base" and "_" not in ax.get_ylabel()
    assert not any(isinstance(c, matplotlib.container.ErrorbarContainer) for c in ax.containers)


def test_titles_and_labels_fit_inside_the_figure():
    long = [
        {"cell": f"cell_context=true,langevin_steps={s},langevin_chains=4", "named": False, "n": 3, "acc": 0.5,
         "acc_sd": 0.01}
        for s in range(5)
    ]  # fmt: skip
    title = "ebm_sudoku: solver test_langevin_blank_acc over every cell of the study, " * 3
    fig = bar_figure(long, "acc", title, floors={"chance": 1 / 9})
    fig.canvas.draw()
    box = fig.bbox
    texts = [t for t in fig.findobj(matplotlib.text.Text) if t.get_visible() and t.get_text().strip()]
    assert any(t.get_text().startswith("ebm_sudoku") for t in texts)
    for t in texts:
        e = t.get_window_extent()
        assert e.x0 >= box.x0 - 1 and e.x1 <= box.x1 + 1 and e.y0 >= box.y0 - 1 and e.y1 <= box.y1 + 1, t.get_text()


def test_a_legend_names_each_series():
    assert series_label({"backend": "python", "precision": "fp32", "scope": "block"}) == "SKA python fp32, block"
    assert series_label({"langevin_chains": 4}) == "langevin chains = 4"


def ranking_context(tmp_path, metric: str, evaluate: dict[str, float]) -> Context:
    """Two cells (lr 0.1 the base, lr 0.2), one seed each, with ``evaluate`` metrics plus ``metric``."""
    cells, upstream = {}, []
    for lr in (0.1, 0.2):
        name = f"lr={lr}"
        cells[name] = {"named": False, "params": {"lr": lr, "train_seed": 0}}
        for stage, metrics in (("train", {"steps": 10}), ("evaluate", {metric: lr, **evaluate})):
            d = tmp_path / stage / name
            d.mkdir(parents=True)
            (d / "meta.json").write_text(json.dumps({"metrics": metrics}))
            (d / "history.json").write_text(json.dumps([{"step": 0, "loss": 1.0}, {"step": 9, "loss": 0.5}]))
            upstream.append(Upstream(stage, name, d, (name,)))
    (tmp_path / "out").mkdir()
    params = {"report_metric": metric, "report_goal": "min", "report_replicates": "train_seed"}
    return Context(
        params=Params({**params, "report_reference": "base"}, "report"),
        out=tmp_path / "out",
        upstream=tuple(upstream),
        study="s",
        cells=cells,
        base={"lr": 0.1, "train_seed": 0},
    )


@pytest.mark.parametrize(
    ("metric", "evaluate", "floor", "value"),
    [("test_eps_mse", {}, "predict_zero_eps", 1.0), ("top1", {"chance": 0.1}, "chance", 0.1)],
)
def test_every_ranking_table_shows_the_metrics_floor(tmp_path, metric, evaluate, floor, value):
    ctx = ranking_context(tmp_path, metric, evaluate)
    ranking_report.run(ctx)
    for stem in ("summary", "table"):
        with open(ctx.out / f"{stem}.csv") as f:
            rows = list(csv.DictReader(f))
        assert [float(r[floor]) for r in rows] == [value, value], stem
        assert f"{floor}_sd" not in rows[0]  # the same for every seed: no spread
        assert all(r[floor] == f"{value}" for r in md_rows(ctx.out / f"{stem}.md"))


class LogFile(io.StringIO):
    def isatty(self) -> bool:
        return False


def test_progress_in_a_log_file_is_plain_lines_every_few_steps():
    log = LogFile()
    bar = progress_bar(100, "train", stream=log)
    for step in bar:
        bar.set_postfix(loss=f"{1 / (step + 1):.3f}")
    text = log.getvalue()
    assert "\r" not in text and text.endswith("\n")
    lines = text.splitlines()
    assert len(lines) == 20  # one per 5 steps: 100 steps, LOG_LINES = 20
    assert lines[0].startswith("train: 5/100 steps, loss=0.200, ") and lines[-1].startswith("train: 100/100 steps")
