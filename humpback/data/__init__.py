"""Data: reading records, seed pairs, unlabelled documents, and documents -> segments."""

from .corpus import Document, ReadLog, iter_documents
from .records import expand_files, iter_hub_records, iter_records
from .seed import SeedPair, SeedResult, load_seed
from .funnel import check_not_empty, describe_funnel
from .segment import Segment, Segmenter

__all__ = [
    "Document", "ReadLog", "Segment", "Segmenter", "SeedPair", "SeedResult", "check_not_empty", "describe_funnel",
    "expand_files", "iter_documents", "iter_hub_records", "iter_records", "load_seed",
]
