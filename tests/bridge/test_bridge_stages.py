"""The bridge study's stages: the wire stage agrees with evaluate, B never reads the question in
bridged mode at stage level, and bad input is refused naming the key or row, publishing nothing.

The module fixture runs one tiny cell's stages in this process (their real ``run(ctx)``, each on
the previous one's output directory); the whole study through the runner is
tests/common/test_recipes_build.py -k bridge."""

import json

import pytest
import torch
import yaml

from pipeline import plan, runner
from pipeline.params import ParamsError
from pipeline.spec import Context, Params, Upstream
from stages import RECIPES
from stages.bridge import bench, bridge_data, evaluate, handover, lms, quantize, train
from studies.bridge.train import TrainConfig, decoding_for
from studies.bridge.wire import FORMATS, expected_bytes

FIXTURES = plan.project.root() / "tests" / "bridge" / "fixtures"
TINY = {
    "n_per_task": 40,
    "n_val": 4,
    "n_test": 6,
    "lm_a_d_model": 16,
    "lm_b_d_model": 24,
    "lm_layers": 1,
    "lm_heads": 2,
    "lm_steps": 3,
    "lm_batch_size": 4,
    "n_soft_tokens": 3,
    "translator_width": 8,
    "translator_heads": 2,
    "steps": 3,
    "batch_size": 4,
    "warmup": 1,
    "eval_every": 1,
    "max_new": 6,
    "eval_batch_size": 4,
    "bench_batch_sizes": "1,2",
    "bench_repeats": 1,
    "bench_new_tokens": 2,
}


def base_params(**overrides) -> dict:
    params = yaml.safe_load(open(plan.project.root() / "params.yaml"))["studies"]["bridge"]["params"]
    return params | TINY | overrides


def run_stage(module, params: dict, out, upstream: dict) -> dict:
    """``module.run`` on a Context holding the params it declares and ``upstream`` (stage → dir)."""
    out.mkdir()
    ups = tuple(Upstream(s, "base", path, ("cell",)) for s, path in upstream.items())
    spec = module.SPEC
    ctx = Context(Params({k: params[k] for k in spec.reads}, spec.name), out, ups, "bridge")
    return module.run(ctx)


@pytest.fixture(scope="module", params=["twohop", "arith"])
def cell(request, tmp_path_factory):
    """One tiny cell per task (stability on) built stage by stage: directories and metrics per stage."""
    torch.set_num_threads(1)
    root, p = tmp_path_factory.mktemp("bridge_cell"), base_params(task=request.param)
    dirs, metrics = {}, {}
    for module in (bridge_data, lms, train, evaluate, quantize):
        name = module.SPEC.name
        dirs[name] = root / name
        metrics[name] = run_stage(module, p, dirs[name], {s: dirs[s] for s in module.SPEC.needs})
    return {"dirs": dirs, "metrics": metrics, "params": p}


def loaded_bridge(cell):
    from pipeline.spec import Context

    ups = tuple(Upstream(s, "base", cell["dirs"][s], ("cell",)) for s in ("bridge_data", "lms", "train"))
    ctx = Context(Params({}, "test"), cell["dirs"]["train"], ups, "bridge")
    return handover.load_bridge(ctx, "cpu")


def test_each_wire_payload_is_the_formulas_length_for_every_format(cell):
    rows = {r["format"]: r for r in json.loads((cell["dirs"]["quantize"] / "wire.json").read_text())}
    assert list(rows) == list(FORMATS)
    m, d_b, anchor = TINY["n_soft_tokens"], TINY["lm_b_d_model"], len(handover.LM_ANCHOR.encode())
    for fmt, row in rows.items():
        want = expected_bytes(m, d_b, fmt, anchor)
        assert row["bytes_min"] == row["bytes_max"] == row["bytes_mean"] == want, fmt
    # fp32 = 16 header + 4·M·d + anchor; int6 packs 4 codes in 3 bytes after one fp32 scale per 32 values
    assert rows["fp32"]["bytes_mean"] == 16 + 4 * 72 + 7
    assert rows["int6"]["bytes_mean"] == 16 + 4 * 3 + 54 + 7


def test_quantize_at_fp32_reproduces_evaluates_bridged_answers_and_accuracy(cell):
    """The consistency check: the wire stage's fp32 path (encode, decode, B re-run) gives the
    evaluate stage's bridged answers text for text, so its accuracy is evaluate's."""
    bridge, _, tok_b = loaded_bridge(cell)
    test = handover.load_examples(cell["dirs"]["bridge_data"], "test", cell["params"]["task"])
    pairs = handover.tokenise(test, *loaded_bridge(cell)[1:])
    dec = evaluate.decoding(cell["params"])
    fp32, _ = quantize.dequantized_answers(bridge, pairs, tok_b, dec, TINY["eval_batch_size"], "fp32")
    evaluated = [
        json.loads(x)["bridged"] for x in (cell["dirs"]["evaluate"] / "predictions.jsonl").read_text().splitlines()
    ]
    assert len(fp32) == len(test) == TINY["n_test"]
    assert fp32 == evaluated and any(fp32)  # generated text (6 new tokens), not an empty list twice
    assert cell["metrics"]["quantize"]["wire_fp32_acc"] == cell["metrics"]["evaluate"]["test_bridged_acc"]
    lenient = "test_bridged_acc_lenient_not_official"  # arith: the labelled lenient column beside the official one
    assert (lenient in cell["metrics"]["evaluate"]) == (cell["params"]["task"] == "arith")
    assert dec == decoding_for(TrainConfig(max_new=TINY["max_new"], stability=True))  # hygiene on


def test_evaluate_in_bridged_mode_never_feeds_b_the_question(cell):
    """A recording hook on B's embedding while the stage's answer path runs: in bridged mode B
    looks up the anchor ([1, k]) and then one generated id per row, never a question id
    sequence; the positive control (text mode) shows the question's ids reaching it."""
    bridge, tok_a, tok_b = loaded_bridge(cell)
    test = handover.load_examples(cell["dirs"]["bridge_data"], "test", cell["params"]["task"])
    pairs = handover.tokenise(test, tok_a, tok_b)
    seen = {}
    for mode in ("bridged", "text"):
        seen[mode] = []
        hook = bridge.lm_b.embed.register_forward_hook(lambda _m, inp, _o, mode=mode: seen[mode].append(inp[0]))
        try:
            handover.answers(bridge, pairs, mode, evaluate.decoding(cell["params"]), tok_b, 4, 0)
        finally:
            hook.remove()
    anchor = tok_b.encode(handover.LM_ANCHOR).ids
    for ids in seen["bridged"]:
        assert ids.tolist() == [anchor] or ids.dim() == 1, ids.shape
    assert sum(ids.dim() == 2 for ids in seen["bridged"]) == 2  # the anchor, once per batch (6 = 4 + 2)
    question = list(pairs[0].b_question)
    assert any(ids.dim() == 2 and ids[0, -len(question) - len(anchor) :].tolist()[: len(question)] == question
               for ids in seen["text"])  # fmt: skip


def test_bench_times_both_paths_at_every_batch_size(cell, tmp_path):
    p = cell["params"]
    m = run_stage(bench, p, tmp_path / "bench", {s: cell["dirs"][s] for s in bench.SPEC.needs})
    rows = json.loads((tmp_path / "bench" / "bench.json").read_text())["rows"]
    assert [(r["path"], r["batch"]) for r in rows] == [("text", 1), ("text", 2), ("latent", 1), ("latent", 2)]
    assert all(r["ms_per_sample"] > 0 and r["peak_mem_mb"] > 0 for r in rows)
    assert m["latent_b2_samples_per_s"] == pytest.approx(2000 / (2 * m["latent_b2_ms_per_sample"]))


def study_params(tmp_path, **overrides):
    """params.yaml holding only the tiny bridge study (one cell), with overrides of its base params."""
    study = yaml.safe_load(open(plan.project.root() / "params.yaml"))["studies"]["bridge"]
    study["params"] = base_params(**overrides)
    study["grid"] = {"train_seed": [0]}
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump({"studies": {"bridge": study}}, sort_keys=False))
    return path


def test_an_unknown_lm_source_is_refused_naming_the_key(tmp_path):
    with pytest.raises(ParamsError, match=r"studies\.bridge\.params\.lm_source: 'onnx' is not allowed"):
        plan.build(study_params(tmp_path, lm_source="onnx"), RECIPES)


def test_a_missing_dataset_file_is_refused_naming_the_key(tmp_path):
    params = study_params(
        tmp_path, data_source="files", gsm8k_file=str(FIXTURES / "gsm8k_tiny.jsonl"), hotpotqa_file="nope.json"
    )
    with pytest.raises(ParamsError, match=r"params\.hotpotqa_file: 'nope.json' is not a file"):
        plan.build(params, RECIPES)


def build_node(tmp_path, monkeypatch, params, stage: str) -> int:
    monkeypatch.setenv("ABLATE_ARTIFACTS", str(tmp_path / "artifacts"))
    monkeypatch.setenv("ABLATE_STORE", str(tmp_path / "store"))
    (tmp_path / "store").mkdir(exist_ok=True)
    return runner.main(RECIPES, ["bridge", stage, "base", "--params", str(params)])


def published(tmp_path, stage: str) -> bool:
    meta = tmp_path / "artifacts" / "bridge" / stage / "base" / "meta.json"
    return meta.exists() or any(
        json.loads(m.read_text()).get("stage") == stage for m in (tmp_path / "store").rglob("meta.json")
    )


def test_a_malformed_dataset_row_fails_the_data_node_naming_the_line_and_publishes_nothing(
    tmp_path, monkeypatch, capfd
):
    params = study_params(
        tmp_path,
        data_source="files",
        gsm8k_file=str(FIXTURES / "gsm8k_malformed.jsonl"),
        hotpotqa_file=str(FIXTURES / "hotpotqa_tiny.json"),
    )
    code = build_node(tmp_path, monkeypatch, params, "bridge_data")
    out = capfd.readouterr()
    assert code != 0
    assert "gsm8k_malformed.jsonl: line 3: " in out.out + out.err
    assert not published(tmp_path, "bridge_data")


def test_lm_source_hub_fails_the_lms_node_saying_no_loader_and_hub_unreachable(tmp_path, monkeypatch, capfd):
    params = study_params(tmp_path, lm_source="hub", lm_a_name="org/model-a", lm_b_name="org/model-b")
    assert build_node(tmp_path, monkeypatch, params, "bridge_data") == 0
    code = build_node(tmp_path, monkeypatch, params, "lms")
    out = capfd.readouterr()
    assert code != 0
    assert (
        "params.lm_source='hub' (org/model-a -> org/model-b): loading hub models is not implemented"
        in out.err + out.out
    )
    assert "not reachable" in out.err + out.out
    assert not published(tmp_path, "lms")


def test_majority_floor_and_distinct_answers_are_measured_on_the_stage_outputs(cell):
    """The floor is the TRAIN split's most frequent answer scored on test; ``distinct`` counts
    the bridged answers' different values in predictions.jsonl."""
    from collections import Counter

    data, task = cell["dirs"]["bridge_data"], cell["params"]["task"]
    majority = Counter(e.answer for e in handover.load_examples(data, "train", task)).most_common(1)[0][0]
    test = handover.load_examples(data, "test", task)
    m = cell["metrics"]["evaluate"]
    assert m["majority_floor_acc"] == handover.score([majority] * len(test), test)["acc"]
    rows = [json.loads(x) for x in (cell["dirs"]["evaluate"] / "predictions.jsonl").read_text().splitlines()]
    assert m["test_bridged_distinct"] == len({r["bridged"].strip() for r in rows}) >= 1


def _rows(bridged, no_bridge, shuffled):
    return [
        {
            "cell": f"s={i}",
            "named": False,
            "s": i,
            "test_bridged_acc": b,
            "test_no_bridge_acc": n,
            "test_shuffled_acc": s,
        }
        for i, (b, n, s) in enumerate(zip(bridged, no_bridge, shuffled, strict=True))
    ]


def test_the_verdict_needs_both_controls_beaten_by_a_ci_over_three_seeds():
    from stages.bridge.report import NOT_ABOVE, control_gaps

    above = control_gaps(_rows([0.30, 0.32, 0.35], [0.0, 0.0, 0.01], [0.03, 0.02, 0.04]), ["s"], "s")
    (gaps,) = above.values()
    assert gaps["verdict"] == "above both controls (95 % CI)"
    assert gaps["bridged_minus_shuffled"] == pytest.approx((0.27 + 0.30 + 0.31) / 3)
    assert gaps["bridged_minus_shuffled_lo"] > 0
    # shuffled as good as bridged (a leak or a constant answer): labelled
    (leak,) = control_gaps(_rows([0.30, 0.32, 0.35], [0.0, 0.0, 0.0], [0.31, 0.30, 0.36]), ["s"], "s").values()
    assert leak["verdict"] == NOT_ABOVE
    # two seeds are never enough for the label, however large the gap
    (two,) = control_gaps(_rows([0.30, 0.32], [0.0, 0.0], [0.0, 0.01]), ["s"], "s").values()
    assert two["verdict"] == NOT_ABOVE


def test_findings_say_all_seeds_equal_instead_of_a_zero_width_ci():
    from stages.bridge.report import narrative

    row = {"cell": "base", "n": 3, "test_bridged_acc": 0.094, "test_text_acc": 0.05, "test_no_bridge_acc": 0.0}
    row |= {"test_shuffled_acc": 0.05, "test_a_alone_acc": 0.0, "majority_floor_acc": 0.016, "verdict": "v"}
    row |= {"test_bridged_distinct": 4.0, "n_test": 64}
    row |= {"bridged_minus_no_bridge": 0.094, "bridged_minus_no_bridge_lo": 0.094, "bridged_minus_no_bridge_hi": 0.094}
    row |= {"bridged_minus_shuffled": 0.04, "bridged_minus_shuffled_lo": 0.01, "bridged_minus_shuffled_hi": 0.07}
    text = narrative("bridge", [row], [], [], "test_bridged_acc")
    assert "bridged − no_bridge 9.4 % (all 3 seeds equal: no spread to estimate a CI from)" in text
    assert "bridged − shuffled 4.0 % [1.0 %, 7.0 %]" in text
    assert "[9.4 %, 9.4 %]" not in text
    assert "majority-answer floor**" not in text  # 9.4 % is above the 1.6 % floor
    row |= {"majority_floor_acc": 0.109}
    below = narrative("bridge", [row], [], [], "test_bridged_acc")
    assert "**v**, but **not above the majority-answer floor** (10.9 %): no working bridge." in below


def test_a_group_of_another_task_gets_no_difference_from_the_reference():
    from types import SimpleNamespace

    from stages.bridge.report import across_tasks_left_out

    ctx = SimpleNamespace(params={"report_reference": "base"}, base={"task": "twohop"}, cells={})
    diff = {"test_bridged_acc_diff": 0.1, "test_bridged_acc_diff_lo": 0.05, "test_bridged_acc_diff_hi": 0.15}
    rows = [
        {"cell": "m16", "task": "twohop", **diff, "ci": "paired", "finding": "yes"},
        {"cell": "arith", "task": "arith", **diff, "ci": "paired", "finding": "yes"},
    ]
    same, other = across_tasks_left_out(rows, ctx, "test_bridged_acc")
    assert same == rows[0]
    assert other["test_bridged_acc_diff"] is None and other["test_bridged_acc_diff_lo"] is None
    assert other["finding"] == "n/a (task arith, not twohop)"


def test_train_runs_without_the_test_split_and_evaluate_without_val(cell, tmp_path):
    """train reads train and val only (selection on val); evaluate reads test, and train for the
    majority-answer floor. Each runs with the split it must not read deleted and gives the
    numbers it gives with every split present."""
    import shutil

    data = cell["dirs"]["bridge_data"]
    for gone in ("test", "val"):
        shutil.copytree(data, tmp_path / f"no_{gone}")
        (tmp_path / f"no_{gone}" / f"{gone}.jsonl").unlink()
    p, lms_dir = cell["params"], cell["dirs"]["lms"]
    trained = run_stage(train, p, tmp_path / "train", {"bridge_data": tmp_path / "no_test", "lms": lms_dir})
    assert trained == cell["metrics"]["train"]
    up = {"bridge_data": tmp_path / "no_val", "lms": lms_dir, "train": cell["dirs"]["train"]}
    assert run_stage(evaluate, p, tmp_path / "evaluate", up) == cell["metrics"]["evaluate"]
    with pytest.raises(FileNotFoundError, match="test.jsonl"):  # the deletion is real: evaluate needs test
        run_stage(evaluate, p, tmp_path / "evaluate_no_test", up | {"bridge_data": tmp_path / "no_test"})
