"""`ablate cell` logs a cell's figures to its W&B run: the tiny ska_lm SKA cell, built with W&B
offline, leaves in the run's files the training curves and the SKA attention maps as real PNGs,
logged as images in the run's history next to the scalar metrics.

An offline run writes no wandb-summary.json and wandb 0.31 reads its ``.wandb`` file only in its
Go core, so ``history`` below reads that file itself: a LevelDB-style log (a 7-byte header, then
32 KiB blocks of records, each a 7-byte header — crc, length, type — and a piece of a protobuf
``Record``)."""

import json
import struct
from pathlib import Path

import yaml
from test_recipes_build import ablate_cell, shrunk_params

from pipeline.plan import build
from stages import RECIPES

PNG = b"\x89PNG\r\n\x1a\n"
BLOCK, HEADER = 32768, 7
FULL, FIRST, MIDDLE, LAST = 1, 2, 3, 4


def history(run_file: Path) -> dict:
    """Every value the run logged, from the history records of a ``.wandb`` file, under its key
    path joined by "/" (an image's fields: ``NAME/path``, ``NAME/size``...)."""
    from wandb.proto import wandb_internal_pb2

    raw = run_file.read_bytes()
    assert raw[:4] == b":W&B", raw[:7]
    logged, pos, record = {}, HEADER, b""
    while pos + HEADER <= len(raw):
        if BLOCK - pos % BLOCK < HEADER:  # too little left in the block for a header: padding
            pos += BLOCK - pos % BLOCK
            continue
        _crc, length, kind = struct.unpack("<IHB", raw[pos : pos + HEADER])
        if kind not in (FULL, FIRST, MIDDLE, LAST):
            break
        record += raw[pos + HEADER : pos + HEADER + length]
        pos += HEADER + length
        if kind in (FULL, LAST):
            parsed = wandb_internal_pb2.Record.FromString(record)
            record = b""
            for item in parsed.history.item if parsed.WhichOneof("record_type") == "history" else ():
                logged["/".join(item.nested_key) or item.key] = json.loads(item.value_json)
    return logged


def test_ablate_cell_logs_curves_and_attention_maps_as_wandb_images(tmp_path, shrunk_store):
    params, problems = shrunk_params()
    assert "ska_lm" not in problems, problems
    path = tmp_path / "params.yaml"
    path.write_text(yaml.safe_dump(params, sort_keys=False))
    cell = next(c for c in build(path, RECIPES).studies["ska_lm"].cells if c.params["attention"] == "ska")
    proc = ablate_cell(path, "ska_lm", cell.name, tmp_path / "artifacts", shrunk_store, "offline")
    assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]
    run_dir = Path(next(line for line in proc.stdout.splitlines() if line.startswith("W&B run: "))[9:])
    assert run_dir.is_relative_to(tmp_path / "artifacts" / ".wandb")
    (run_file,) = run_dir.parent.glob("run-*.wandb")
    logged = history(run_file)
    assert isinstance(logged["evaluate/test_perplexity"], float)  # the scalars are still there
    for name in ("train/curves", "train/attention_maps"):
        entry = {k.removeprefix(f"{name}/"): v for k, v in logged.items() if k.startswith(f"{name}/")}
        assert entry["_type"] == "image-file", entry
        png = run_dir / entry["path"]
        assert png.read_bytes()[:8] == PNG and png.stat().st_size == entry["size"] > 10_000, (name, entry)
        assert entry["width"] >= 400 and entry["height"] >= 300, entry
    # the attention figure holds a row per SKA layer, so it grows with n_layers
    layers = cell.params["n_layers"]
    assert logged["train/attention_maps/height"] >= 300 * layers
    assert sorted(p.name.split("_")[0] for p in (run_dir / "media" / "images").rglob("*.png")) == [
        "attention",
        "curves",
    ]


def test_curves_smooth_over_two_percent_and_leave_out_bookkeeping(tmp_path):
    from studies.figures import _is_quality, _smoothed, training_curves

    assert _smoothed((0.0, 2.0) * 50) == [0.0] + [1.0] * 99  # 100 points: a trailing mean of 2
    assert _smoothed((3.0, 5.0, 7.0)) == [3.0, 5.0, 7.0]  # short curves are drawn as they are
    kept = [
        k for k in ("loss", "val_loss", "top1", "n", "n_tokens", "time_s", "imgs_per_s", "lr", "step") if _is_quality(k)
    ]
    assert kept == ["loss", "val_loss", "top1"]
    (tmp_path / "history.json").write_text(
        json.dumps([{"step": s, "loss": 1 / (s + 1), "time_s": s} for s in range(40)])
    )
    (tmp_path / "val_history.json").write_text(json.dumps([{"step": 39, "val_loss": 0.1, "top1": 0.9, "n": 8}]))
    png = training_curves(tmp_path, tmp_path / "curves.png", "toy")
    assert png.read_bytes()[:8] == PNG and png.stat().st_size > 10_000
