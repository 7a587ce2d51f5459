"""The run folder: atomic files and hashes (``files``), identities of models and sources (``identity``),
the manifest (``manifest``), the one stage lifecycle (``lifecycle``), sharded and round stages
(``shards``), the run folder's store (``folder``) and the worker split (``workers``)."""

from ..layout import shard_file
from .files import (atomic_path, count_rows, hash_file, hash_json, hash_path, package_versions, read_table,
                    write_json, write_table, write_table_stream, write_text)
from .folder import RunStore
from .identity import model_identity, source_identity
from .lifecycle import Stage, StageResult, Step
from .workers import Worker

__all__ = ["RunStore", "Stage", "StageResult", "Step", "Worker", "atomic_path", "count_rows", "hash_file", "hash_json",
           "hash_path", "model_identity", "package_versions", "read_table", "shard_file", "source_identity",
           "write_json", "write_table", "write_table_stream", "write_text"]
