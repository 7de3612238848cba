"""download: fetch the text corpus once and split it into train/val/test documents that share no text."""

from __future__ import annotations

from pathlib import Path

from pipeline.spec import Context, StageSpec


def _sources(p) -> list[Path]:
    """Files whose bytes define the corpus: hashed into the fingerprint."""
    if p["corpus"] == "pydoc":
        from studies.data.corpora import pydoc_source_file

        return [pydoc_source_file()]
    if p["corpus"] == "parquet":
        return sorted(Path(p["corpus_dir"]).glob("*.parquet"))
    return []  # hub datasets: named and versioned by the hub


SPEC = StageSpec(
    name="download",
    reads=("corpus", "corpus_dir", "val_fraction", "test_fraction", "split_seed"),
    code=("studies.data.corpora",),
    choices={"corpus": ("pydoc", "wikitext2", "wikitext103", "parquet")},
    types={"corpus_dir": str, "val_fraction": float, "test_fraction": float, "split_seed": int},
    ranges={"val_fraction": "[0, 1)", "test_fraction": "[0, 1)"},
    checks={"val_fraction + test_fraction < 1": lambda val_fraction, test_fraction: val_fraction + test_fraction < 1},
    external=_sources,
)


def run(ctx: Context) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from studies.data.corpora import SPLITS, load_corpus, overlap_share

    p = ctx.params
    files = {f.stem: str(f) for f in _sources(p)} if p["corpus"] == "parquet" else None
    splits = load_corpus(p["corpus"], p["val_fraction"], p["test_fraction"], p["split_seed"], data_files=files)
    for split in SPLITS:
        if not splits[split]:
            raise ValueError(
                f"corpus {p['corpus']!r} left split {split!r} empty: raise val_fraction / test_fraction "
                f"(now {p['val_fraction']} / {p['test_fraction']}) or use a larger corpus"
            )
        pq.write_table(pa.table({"text": splits[split]}), ctx.out / f"{split}.parquet")
    return (
        {f"{split}_docs": len(splits[split]) for split in SPLITS}
        | {f"{split}_chars": sum(map(len, splits[split])) for split in SPLITS}
        | {f"{split}_shingles_in_train": overlap_share(splits["train"], splits[split]) for split in ("val", "test")}
    )
