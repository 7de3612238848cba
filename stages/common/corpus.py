"""download: fetch the text corpus once and split it into disjoint train/val documents."""

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
    reads=("corpus", "corpus_dir", "val_fraction", "split_seed"),
    code=("studies.data.corpora",),
    choices={"corpus": ("pydoc", "wikitext2", "wikitext103", "parquet")},
    external=_sources,
)


def run(ctx: Context) -> dict:
    import pyarrow as pa
    import pyarrow.parquet as pq

    from studies.data.corpora import load_corpus

    p = ctx.params
    files = {f.stem: str(f) for f in _sources(p)} if p["corpus"] == "parquet" else None
    splits = load_corpus(p["corpus"], p["val_fraction"], p["split_seed"], data_files=files)
    overlap = set(splits["train"]) & set(splits.get("val", []))
    if overlap:
        raise ValueError(f"{len(overlap)} documents appear in both train and val")
    for split, docs in splits.items():
        pq.write_table(pa.table({"text": docs}), ctx.out / f"{split}.parquet")
    return {f"{split}_docs": len(docs) for split, docs in splits.items()} | {
        f"{split}_chars": sum(map(len, docs)) for split, docs in splits.items()
    }
