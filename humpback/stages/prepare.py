"""Data stages: the seed pairs as used (less the held-out ones), and the unlabelled corpus cut into
clean segments."""

from __future__ import annotations

import hashlib

from ..config import to_dict, who_set
from ..console import details
from ..layout import FUNNEL, HELDOUT, SEED, SEGMENTS
from ..run import RunContext
from ..store import StageResult, source_identity, write_json, write_table_stream


def seed_stage(rt: RunContext) -> StageResult:
    """Read the seed pairs in their source format and save them as (id, instruction, output, source):
    the held-out ones (``seed.heldout``) in HELDOUT, the rest, which every mixture trains on, in SEED."""
    cfg = rt.sources.seed
    deps = {"seed": to_dict(rt.cfg.seed), "source": source_identity(cfg.path, cfg.dataset, full=True)}
    if cfg.sample is not None:  # the draw depends on the run's seed
        deps["random_seed"] = rt.cfg.random_seed
    stage = rt.store.stage("seed", deps, [SEED, HELDOUT], force=rt.forced("seed"), job="prepare",
                           reads=[_source(rt.cfg.seed.path, cfg.dataset)])
    if not stage.runs:
        return stage.result()
    with stage.running():
        from ..data.seed import load_seed
        from ..evaluation.prompt_set import split_heldout

        result = load_seed(cfg, format_set_by=who_set(rt.cfg, "seed.format"), random_seed=rt.cfg.random_seed)
        rows = seed_rows(result.pairs)
        train, heldout = split_heldout(rows, cfg.heldout, where=cfg.path or cfg.dataset)
        rt.store.write_rows(SEED, train, schema=_seed_schema())
        rt.store.write_rows(HELDOUT, heldout, schema=_seed_schema())
        rt.result(f"seed: {len(rows)} pairs ({result.format} format) from {result.stats.get('records_read')} records; "
                  f"{len(heldout)} held out for evaluation")
        if result.stats.get("duplicates"):
            what = "kept, with numbered ids" if cfg.keep_duplicates else "kept once (seed.keep_duplicates keeps them)"
            rt.warn(f"seed: {result.stats['duplicates']} pairs repeat an earlier pair's instruction and output: "
                    f"{what}")
    return stage.finish({"format": result.format, **result.stats, "pairs": len(train), "heldout_pairs": len(heldout)})


def _seed_schema():
    import pyarrow as pa

    return pa.schema([("id", pa.string()), ("instruction", pa.string()), ("output", pa.string()),
                      ("source", pa.string())])


def segments_stage(rt: RunContext) -> StageResult:
    """Stream the corpus through sectioning and the paper's filters; save survivors with ids."""
    import pyarrow as pa

    cfg = rt.sources.corpus
    schema = pa.schema([("id", pa.string()), ("doc_id", pa.string()), ("header", pa.string()),
                        ("text", pa.string()), ("n_chars", pa.int32())])
    deps = {"corpus": to_dict(rt.cfg.corpus), "source": source_identity(cfg.path, cfg.dataset, full=False)}
    stage = rt.store.stage("segments", deps, [SEGMENTS, FUNNEL], inputs=[SEED, HELDOUT], force=rt.forced("segments"),
                           job="prepare", reads=[_source(rt.cfg.corpus.path, cfg.dataset)])
    if not stage.runs:
        return stage.result()
    with stage.running():
        from ..data.corpus import ReadLog, iter_documents
        from ..data.funnel import check_not_empty, describe_funnel
        from ..data.segment import Segmenter

        # Held-out answers count as seed: a segment that copies one would carry it into training.
        seed_outputs = [r["output"] for rel in (SEED, HELDOUT) for r in rt.store.read_rows(rel)]
        segmenter = Segmenter(cfg, seed_outputs)
        skipped: list = []
        read = ReadLog()
        documents = iter_documents(cfg, skipped if cfg.skip_invalid else None, read)
        with rt.bar(cfg.max_segments, "segments", "segments") as bar:
            rows = (
                {"id": s.id, "doc_id": s.doc_id, "header": s.header, "text": s.text, "n_chars": len(s.text)}
                for s in _counted(segmenter.segments(documents), bar)
            )
            write_table_stream(rt.store.path(SEGMENTS), rows, schema)
        funnel = {**read.funnel(), **segmenter.funnel}
        if skipped:
            funnel = {"skipped_records": len(skipped), **funnel}
            rt.warn(f"corpus: skipped {len(skipped)} invalid records (corpus.skip_invalid), first: "
                    f"{skipped[0][0]}: {skipped[0][1]}")
        write_json(rt.store.path(FUNNEL), funnel)
        details.info("segments funnel:\n%s", describe_funnel(funnel))
        check_not_empty(funnel, read.files)
        rt.result(f"segments: {funnel['documents']} documents -> {funnel['sections']} sections -> "
                  f"{funnel['kept']} kept")
        for name, value in funnel.items():
            rt.metric("segments", f"funnel/{name}", value)
    return stage.finish({"funnel": funnel, "skipped_examples": [list(x) for x in skipped[:5]]})


def seed_rows(pairs: list) -> list[dict]:
    """One row per pair with an id from its text; a pair kept although it repeats an earlier one
    (``seed.keep_duplicates``) gets ``<id>#2``, ``#3``, ...: ids are unique."""
    rows, seen = [], {}
    for p in pairs:
        pid = _pair_id(p.instruction, p.output)
        seen[pid] = seen.get(pid, 0) + 1
        rows.append({"id": pid if seen[pid] == 1 else f"{pid}#{seen[pid]}", "instruction": p.instruction,
                     "output": p.output, "source": p.source})
    return rows


def _pair_id(instruction: str, output: str) -> str:
    return hashlib.blake2b(f"{instruction}\0{output}".encode(), digest_size=8).hexdigest()


def _counted(items, bar):
    for item in items:
        yield item
        bar.update(1)


def _source(path, dataset) -> str:
    """The seed's or corpus's source as the recipe names it (``builtin:python-docs``, a path, a dataset)."""
    return str(path) if path else str(dataset)
