"""Data stages: the seed pairs as used (less the held-out ones), and the unlabelled corpus cut into
clean segments."""

from __future__ import annotations

import hashlib

from ..config import to_dict
from ..layout import FUNNEL, HELDOUT, SEED, SEGMENTS
from ..run import RunContext
from ..store import StageResult, source_identity, write_json, write_table_stream


def seed_stage(rt: RunContext) -> StageResult:
    """Read the seed pairs in their source format and save them as (id, instruction, output, source):
    the held-out ones (``seed.heldout``) in HELDOUT, the rest, which every mixture trains on, in SEED."""
    cfg = rt.sources.seed

    def work() -> dict:
        from ..data.seed import load_seed
        from ..evaluation.prompt_set import split_heldout

        result = load_seed(cfg)
        rows = [
            {"id": _pair_id(p.instruction, p.output), "instruction": p.instruction, "output": p.output, "source": p.source}
            for p in result.pairs
        ]
        train, heldout = split_heldout(rows, cfg.heldout, where=cfg.path or cfg.dataset)
        rt.store.write_rows(SEED, train, schema=_seed_schema())
        rt.store.write_rows(HELDOUT, heldout, schema=_seed_schema())
        rt.log(f"  seed: {len(rows)} pairs ({result.format} format) from {result.stats.get('records_read')} records; "
               f"{len(heldout)} held out for evaluation")
        return {"format": result.format, **result.stats, "pairs": len(train), "heldout_pairs": len(heldout)}

    deps = {"seed": to_dict(rt.cfg.seed), "source": source_identity(cfg.path, cfg.dataset, full=True)}
    return rt.store.stage("seed", deps, [SEED, HELDOUT], work, force=rt.forced("seed"), job="prepare")


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

    def work() -> dict:
        from ..data.corpus import iter_documents
        from ..data.segment import Segmenter, check_not_empty, describe_funnel

        # Held-out answers count as seed: a segment that copies one would carry it into training.
        seed_outputs = [r["output"] for rel in (SEED, HELDOUT) for r in rt.store.read_rows(rel)]
        segmenter = Segmenter(cfg, seed_outputs)
        skipped: list = []
        rows = (
            {"id": s.id, "doc_id": s.doc_id, "header": s.header, "text": s.text, "n_chars": len(s.text)}
            for s in segmenter.segments(_progress(iter_documents(cfg, skipped if cfg.skip_invalid else None),
                                                  rt.progress, "segmenting"))
        )
        write_table_stream(rt.store.path(SEGMENTS), rows, schema)
        funnel = dict(segmenter.funnel)
        if skipped:
            funnel = {"skipped_records": len(skipped), **funnel}
        write_json(rt.store.path(FUNNEL), funnel)
        rt.log(describe_funnel(funnel))
        check_not_empty(funnel)
        for name, value in funnel.items():
            rt.metric("segments", f"funnel/{name}", value)
        return {"funnel": funnel, "skipped_examples": [list(x) for x in skipped[:5]]}

    deps = {"corpus": to_dict(rt.cfg.corpus), "source": source_identity(cfg.path, cfg.dataset, full=False)}
    return rt.store.stage("segments", deps, [SEGMENTS, FUNNEL], work, inputs=[SEED, HELDOUT], force=rt.forced("segments"),
                          job="prepare")


def _pair_id(instruction: str, output: str) -> str:
    return hashlib.blake2b(f"{instruction}\0{output}".encode(), digest_size=8).hexdigest()


def _progress(it, enabled: bool, desc: str):
    if not enabled:
        return it
    from tqdm.auto import tqdm

    return tqdm(it, desc=desc, unit="doc", mininterval=1.0)
